"""The fast page reader gives pdfplumber's words, word for word, on the reading corpus.

PDF pages are read from pdfium's characters (``parsers.documents.pdfium``)
for speed; pdfplumber's ``extract_words(x_tolerance=2, y_tolerance=2)`` is
the reference. On every page the fast reader takes, per producer of
``tests/reading_corpus/`` (LibreOffice and Word exports with justified text,
subset fonts, pdftk, qpdf, Ghostscript…), the words must be the same, in the
same order, at the same places across the line (within a point and a half;
their height may differ by a point or two: pdfium measures glyphs by the
font size). The pages it declines go the pdfplumber way.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pdfplumber
import pytest

from bench import accuracy
from parsers.documents.pdfium import _pdfium_pages

CORPUS = accuracy.CORPUS
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
BY_PRODUCER: dict[str, list] = defaultdict(list)
for _number, _entry in sorted(MANIFEST.items()):
    BY_PRODUCER[_entry["producer"]].extend(sorted((CORPUS / "files" / _number).glob("*.pdf")))
PDF_PRODUCERS = sorted(p for p, files in BY_PRODUCER.items() if files)


@pytest.mark.parametrize("producer", PDF_PRODUCERS)
def test_fast_words_are_pdfplumber_words(producer):
    compared = 0
    for path in BY_PRODUCER[producer]:
        data = path.read_bytes()
        fast = _pdfium_pages(data, 10)
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            for number, page in enumerate(pdf.pages[:10], start=1):
                if number not in fast:
                    continue  # read the pdfplumber way: the reference itself
                expected = page.extract_words(x_tolerance=2, y_tolerance=2)
                got = fast[number].words
                where = f"{path.parent.name}/{path.name} page {number}"
                assert [w.text for w in got] == [w["text"] for w in expected], where
                for word, reference in zip(got, expected, strict=True):
                    assert abs(word.x0 - reference["x0"]) <= 1.5, (where, word)
                    if (
                        reference["x1"] > reference["x0"]
                    ):  # pdfminer: "€" of a font without its width
                        assert abs(word.x1 - reference["x1"]) <= 1.5, (where, word)
                compared += 1
    # Scans have no text layer for the fast reader; every text producer does.
    if producer not in accuracy.OCR_PRODUCERS:
        assert compared > 0


def test_words_of_justified_table_cells_are_whole():
    """LibreOffice tables with justified text: no word split at a glyph gap."""
    split = ("électri ques", "rechar gés", "p révisionnelle")
    for producer in ("writer_docx_pdf", "writer_odt_pdf"):
        for path in BY_PRODUCER[producer]:
            fast = _pdfium_pages(path.read_bytes(), 10)
            text = " ".join(w.text for page in fast.values() for w in page.words)
            assert not any(s in text for s in split), path
