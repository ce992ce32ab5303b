"""Document extraction: kinds, PDF text/tables/forms, DOCX, images and OCR."""

from __future__ import annotations

import io
import os
import shutil

import pytest
from docx import Document
from PIL import Image
from pypdf import PdfReader, PdfWriter

from mailbot.config import LimitsSettings, load_config
from mailbot.forms import blank_form_pdf
from parsers.documents import (
    DocumentLimits,
    Word,
    detect_kind,
    extract_document,
    extract_documents,
    layout_page,
)
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import POTAGER, attachment

# OCR tests are skipped without Tesseract, except on CI where it must be there.
HAS_TESSERACT = shutil.which("tesseract") is not None or bool(os.environ.get("CI"))
needs_tesseract = pytest.mark.skipif(not HAS_TESSERACT, reason="tesseract is not installed")
LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=60)


@pytest.fixture(scope="module")
def rules():
    return load_config(SHIPPED_CONFIG).rules


def read(name: str, data: bytes, **kwargs):
    return extract_document(attachment(name, data), limits=LIMITS, **kwargs)


# --------------------------------------------------------------------------
# Kinds


@pytest.mark.parametrize(
    ("data", "kind", "detected"),
    [
        (b"%PDF-1.7\n...", "pdf", "pdf"),
        (b"garbage first\n%PDF-1.4\n", "pdf", "pdf"),
        (b"\xff\xd8\xff\xe0rest", "image", "jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image", "png"),
        (b"II*\x00rest", "image", "tiff"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "other", "ole"),
        (b"{\\rtf1 hello}", "other", "rtf"),
        ("Intitulé : Potager\n".encode(), "text", "text"),
        (b"", "other", "empty"),
        (bytes(range(256)) * 4, "other", "binary"),
    ],
)
def test_detect_kind_by_content(data, kind, detected):
    assert detect_kind(data) == (kind, detected)


def test_docx_is_recognised_inside_the_zip():
    assert detect_kind(corpus.letter_docx(POTAGER)) == ("docx", "docx")


def test_a_pdf_named_docx_is_read_as_pdf_with_a_warning():
    doc = read("dossier.docx", corpus.letter_pdf(POTAGER))
    assert doc.kind == "pdf"
    assert "Monsieur le Maire" in doc.text
    assert any("named .docx but the content is pdf" in w for w in doc.warnings)
    assert doc.needs_review


def test_warnings_never_carry_control_characters():
    doc = read("evil\r\nX-Header: 1\x00.pdf", b"")
    assert all("\r" not in w and "\n" not in w and "\x00" not in w for w in doc.warnings)


# --------------------------------------------------------------------------
# PDF


def test_text_pdf_lines_keep_cells_apart(rules):
    data = corpus.text_table_pdf(rules, POTAGER, labels=corpus.printed_labels(rules), style="glyph")
    doc = read("dossier.pdf", data)
    assert doc.kind == "pdf" and not doc.needs_review and not doc.ocr_used
    assert "Courriel\tMarie.Lefebvre@jardins-perroy.fr" in doc.pages[0]
    rows = [row for table in doc.tables[0] for row in table]
    assert ("Nom et prénom du référent", "Marie Lefebvre") in rows


def test_two_column_page_is_also_read_column_by_column(rules):
    data = corpus.two_column_flow_pdf(rules, POTAGER, labels=corpus.printed_labels(rules))
    doc = read("dossier.pdf", data)
    columns = doc.columns[0].split("\n")
    starts = [line.split(" :")[0] for line in columns]
    # The left column comes whole before the right one.
    assert starts.index("Partenaires") < starts.index("Budget estimé (€)")
    assert starts.index("Budget estimé (€)") < starts.index("Adresse postale")


def test_layout_tabs_and_gutter():
    words = []
    for row in range(6):
        top = 100 + row * 20
        words += [Word(50, 120, top, top + 10, f"label{row}"), Word(320, 400, top, top + 10, "v")]
    layout = layout_page(words, 595)
    assert layout.lines[0] == "label0\tv"
    assert layout.column_rows and layout.column_rows[0] == ("label0", "v")


def test_filled_form_fields_names_types_values_tooltips(rules):
    doc = read("dossier.pdf", corpus.form_pdf(rules, POTAGER))
    fields = doc.form_fields
    assert fields["intitule"].type == "text"
    assert fields["intitule"].value == "Potager solidaire du quartier du Perroy"
    assert fields["intitule"].tooltip == "Intitulé de l'action ou du projet"
    assert fields["criteres_collaborative"].type == "checkbox"
    assert fields["criteres_collaborative"].checked
    assert not fields["criteres_innovante"].checked
    assert fields["categorie_label"].type == "radio"
    assert fields["categorie_label"].value == "realisee"
    assert set(fields["categorie_label"].options) == {"realisee", "projet"}
    assert fields["thematique"].type == "choice"
    assert fields["thematique"].value == "Habitat – Environnement"
    assert "Santé – Bien-être" in fields["thematique"].options
    assert fields["description"].value.count("\n") == 2
    # The printed label next to each widget is known too.
    assert fields["contact_nom"].widgets[0].label_left.startswith("Nom et prénom du référent")


def test_form_without_appearance_streams_still_gives_values(rules):
    data = corpus.form_pdf(rules, POTAGER, appearances=False)
    reader = PdfReader(io.BytesIO(data))
    annots = [a.get_object() for p in reader.pages for a in p.get("/Annots") or []]
    assert annots and all("/AP" not in a for a in annots)
    doc = read("dossier.pdf", data)
    assert doc.form_fields["categorie_label"].value == "realisee"
    assert doc.form_fields["criteres_durable"].checked
    assert doc.form_fields["budget"].value == "12 500 €"
    # The values are not in the page text: only the labels are printed.
    assert "Potager solidaire" not in doc.text


def test_pdf_cut_at_max_pages():
    writer = PdfWriter()
    for _ in range(25):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    doc = read("annexes.pdf", out.getvalue())
    assert doc.page_count == 25 and len(doc.pages) == LIMITS.max_pdf_pages
    assert any("only the first 10" in w for w in doc.warnings)
    assert doc.needs_review


def test_pdf_with_empty_user_password_is_read():
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(corpus.letter_pdf(POTAGER))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    doc = read("courrier.pdf", out.getvalue())
    assert "Monsieur le Maire" in doc.text
    assert not doc.needs_review


def test_encrypted_pdf_is_named_and_reviewed(rules):
    doc = read("protege.pdf", corpus.encrypted_pdf(rules))
    assert doc.needs_review and not doc.pages
    assert any("encrypted" in w for w in doc.warnings)


def test_truncated_pdf_is_not_fatal():
    data = corpus.letter_pdf(POTAGER)
    doc = read("casse.pdf", data[: len(data) // 2])
    assert doc.kind == "pdf"
    assert doc.needs_review or doc.pages


# --------------------------------------------------------------------------
# DOCX


def test_docx_table_and_checkbox_glyphs(rules):
    data = corpus.docx_table(rules, POTAGER, labels=corpus.printed_labels(rules), style="glyph")
    doc = read("dossier.docx", data)
    assert doc.kind == "docx"
    rows = doc.tables[0][0]
    criteria = dict(rows)["Critère(s) Smart City"]
    assert "☒ Collaborative" in criteria and "☐ Innovante" in criteria


def test_docx_content_controls_use_the_checked_state(rules):
    doc = read("formulaire.docx", corpus.docx_content_controls(rules, POTAGER))
    rows = dict(doc.tables[0][0])
    # The corpus writes a stale ☐ glyph inside checked controls: the state wins.
    assert rows["Critère(s) Smart City"].startswith("☒ Collaborative")
    assert "☐ Innovante" in rows["Critère(s) Smart City"]
    assert rows["Intitulé de l'action ou du projet"] == "Potager solidaire du quartier du Perroy"
    # A control still showing its placeholder is an empty answer.
    assert rows["État d'avancement (projets uniquement)"] == ""


def test_docx_legacy_checkbox_field():
    document = Document()
    paragraph = document.add_paragraph("Critères : ")
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    for checked in (True, False):
        run = parse_xml(
            f"<w:r {nsdecls('w')}><w:fldChar w:fldCharType='begin'><w:ffData>"
            f"<w:checkBox><w:sizeAuto/><w:default w:val='{int(checked)}'/></w:checkBox>"
            "</w:ffData></w:fldChar></w:r>"
        )
        paragraph._p.append(run)
        paragraph.add_run(" Durable " if checked else " Innovante")
    out = io.BytesIO()
    document.save(out)
    doc = read("d.docx", out.getvalue())
    assert "☒ Durable" in doc.text and "☐ Innovante" in doc.text


def test_garbage_docx_is_a_warning():
    doc = read("dossier.docx", b"PK\x03\x04" + bytes(200))
    assert doc.kind == "other" and doc.needs_review and doc.warnings


def test_docx_zip_bomb_is_refused():
    out = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"<" + b" " * (50 * 2**20))
    limits = DocumentLimits(max_zip_expanded_bytes=10 * 2**20)
    doc = extract_document(attachment("bomb.docx", out.getvalue()), limits=limits)
    assert doc.needs_review and any("over the limit" in w for w in doc.warnings)


# --------------------------------------------------------------------------
# Images and OCR


def test_small_images_are_not_read():
    doc = read("logo.png", corpus.logo())
    assert doc.kind == "image" and not doc.pages and not doc.needs_review


def test_huge_image_is_refused_without_decoding():
    doc = read("plan.png", corpus.huge_image_png(100))
    assert doc.needs_review and any("exceeds the limit" in w for w in doc.warnings)


def test_ocr_unavailable_is_a_warning(rules):
    image = corpus.jpeg(corpus.render_page(corpus.letter_pdf(POTAGER)))
    doc = read("scan.jpg", image, tesseract="no-such-tesseract")
    assert doc.needs_review
    assert any("OCR unavailable: tesseract not found" in w for w in doc.warnings)


@needs_tesseract
def test_jpeg_scan_is_read_by_ocr():
    image = corpus.degrade(corpus.render_page(corpus.letter_pdf(POTAGER)), seed=1)
    doc = read("courrier.jpg", corpus.jpeg(image))
    assert doc.ocr_used and doc.ocr_pages == (1,)
    assert "Monsieur le Maire" in doc.text


@needs_tesseract
def test_image_only_pdf_pages_are_read_by_ocr(rules):
    # Page 1 has text, page 2 is a scan: only page 2 goes through OCR.
    scan = corpus.image_pdf([corpus.render_page(corpus.letter_pdf(POTAGER))])
    data = corpus.combined_pdf(corpus.letter_pdf(POTAGER), scan)
    doc = read("mixte.pdf", data)
    assert doc.ocr_pages == (2,)
    assert "Olivier Gacquerre" in doc.pages[1]


@needs_tesseract
def test_ocr_time_limit():
    image = corpus.render_page(corpus.letter_pdf(POTAGER))
    pdf = corpus.image_pdf([image, image, image])
    limits = DocumentLimits(ocr_timeout_seconds=0.5)
    doc = extract_document(attachment("scan.pdf", pdf), limits=limits)
    assert doc.needs_review
    assert any("OCR stopped at the time limit" in w for w in doc.warnings)


def test_image_too_large_to_render_for_ocr_is_scaled(rules):
    # A huge page renders below the pixel limit instead of failing.
    big = Image.new("L", (200, 200), 255)
    out = io.BytesIO()
    big.save(out, "PDF", resolution=2)  # 100 x 100 inches
    doc = read("poster.pdf", out.getvalue(), tesseract=None)
    assert doc.kind == "pdf"


# --------------------------------------------------------------------------
# Through the sandbox


def test_extract_documents_runs_a_message_in_one_child(rules):
    atts = [
        attachment("dossier.pdf", blank_form_pdf(rules)),
        attachment("courrier.docx", corpus.letter_docx(POTAGER)),
        attachment("vide.pdf", b""),
    ]
    docs = extract_documents(atts, limits=LimitsSettings())
    assert [d.kind for d in docs] == ["pdf", "docx", "other"]
    assert docs[0].form_fields and "Monsieur le Maire" in docs[1].text
    assert docs[2].needs_review
    assert [d.sha256 for d in docs] == [a.sha256 for a in atts]
