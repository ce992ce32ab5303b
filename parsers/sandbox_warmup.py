"""Imported by the sandbox's forkserver only: read two built-in documents once, before any fork.

Every sandbox child is a fresh fork of the forkserver. What the readers set
up lazily on their first document (compiled regular expressions, pdfium's
font loading, pypdf's and pdfminer's first-use state, python-docx's XML
classes) was redone in every child, for every message: a fork of a server
that has never read a document read the one-page letter of the benchmarks
in about 60 ms of CPU, a warm process in about 15 ms (``bench.parse_dossier``
figures in ``bench/RESULTS.md``). Importing this module in the forkserver
(``parsers.sandbox.PRELOAD``) reads, through ``extract_document``, a PDF
and a DOCX of our own (never an applicant's byte): lines of text, a ruled
table, a drawn tick box, and on a second page a filled form field over too
little text for pdfium (so pdfminer's full reading runs too), so the
children inherit every reader warm.

The PDF is committed (``sandbox_warmup.pdf``, made by ``make_warmup_pdf``:
importing ReportLab in the forkserver cost a second on the development
machine; ``tests/test_documents_sandbox.py`` checks the file is what the
function makes). Nothing read is kept; a failure here is ignored (the
children then start cold, as before). The service itself never imports
this module.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
from pathlib import Path

from parsers.documents.extract import extract_document
from parsers.documents.model import DocumentLimits
from parsers.types import Attachment

_LINES = (
    "Intitulé du projet : jardin partagé du quartier",
    "Porteur du projet : association des habitants",
    "Date de réalisation ou date prévisionnelle : 15/03/2026",
    "Description : ateliers hebdomadaires, résultats partagés.",
)


WARMUP_PDF = Path(__file__).with_name("sandbox_warmup.pdf")


def make_warmup_pdf() -> bytes:
    """Page 1: lines of text, a ruled table, a ticked box drawn; page 2: a form field."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    # invariant: no date nor random id, so the committed file can be checked.
    canvas = Canvas(out, pagesize=A4, invariant=1)
    _, height = A4
    y = height - 72
    for line in _LINES:
        canvas.setFont("Helvetica", 11)
        canvas.drawString(72, y, line)
        y -= 18
    # A ruled table: label | value.
    top = y - 10
    for row in range(3):
        canvas.rect(72, top - 20 * (row + 1), 180, 20)
        canvas.rect(252, top - 20 * (row + 1), 240, 20)
        canvas.drawString(76, top - 20 * (row + 1) + 6, f"Libellé {row + 1}")
        canvas.drawString(256, top - 20 * (row + 1) + 6, f"Valeur {row + 1}")
    # A tick box, drawn and ticked, before its option.
    box_y = top - 100
    canvas.rect(72, box_y, 9, 9)
    canvas.setFillGray(0)
    canvas.rect(74, box_y + 2, 5, 5, fill=1)
    canvas.drawString(86, box_y + 1, "Initiative réalisée")
    canvas.showPage()
    # Page 2: a filled form field (page 1 must not be a form page: its table
    # search and tick boxes are what the warm-up is for).
    canvas.setFont("Helvetica", 11)
    canvas.drawString(72, height - 72, "Intitulé du projet")
    canvas.acroForm.textfield(
        name="intitule", value="Jardin partagé", x=200, y=height - 78, width=200, height=18
    )
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def _warmup_docx() -> bytes:
    import docx

    document = docx.Document()
    for line in _LINES:
        document.add_paragraph(line)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Intitulé du projet", "Jardin partagé"
    table.cell(1, 0).text, table.cell(1, 1).text = "Lieu", "Béthune"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def warm_readers() -> None:
    """Read the built-in documents once (OCR aside: no Tesseract is started)."""
    limits = DocumentLimits()
    for name, data in (("warmup.pdf", WARMUP_PDF.read_bytes()), ("warmup.docx", _warmup_docx())):
        attachment = Attachment(
            filename=name,
            content_type="application/octet-stream",
            data=data,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        extract_document(attachment, limits=limits, tesseract=None)
    # What the readings left behind goes before the fork, not in every child.
    gc.collect()


# A failure only means colder children: slower, not wrong.
with contextlib.suppress(Exception):
    warm_readers()
