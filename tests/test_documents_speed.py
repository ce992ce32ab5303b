"""The quick PDF reading (pdfium words, table search only where lines are drawn,
none on filled form pages) gives exactly what the full pdfplumber reading gives."""

from __future__ import annotations

import dataclasses
import io

import pdfplumber
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from mailbot.config import load_config
from mailbot.forms import blank_form_pdf
from parsers.documents import DocumentLimits, Word, extract_document, pdfium
from parsers.documents import pdf as documents_pdf
from parsers.dossier import read_dossier
from parsers.letter import find_letter
from parsers.text import nfc
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import POTAGER, attachment
from tests.fixtures.hostile_mail import no_tounicode_pdf

LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=60)
RULES = load_config(SHIPPED_CONFIG, environ={}).rules


@pytest.fixture(scope="module")
def rules():
    return RULES


def _read(data: bytes, tesseract: str | None = "tesseract"):
    return extract_document(attachment("dossier.pdf", data), limits=LIMITS, tesseract=tesseract)


def _read_full_way(data: bytes, monkeypatch, tesseract: str | None = "tesseract"):
    """The reading with every page through pdfplumber (words and table search)."""
    with monkeypatch.context() as patch:
        patch.setattr(documents_pdf, "_pdfium_pages", lambda data, wanted: {})
        return _read(data, tesseract)


def _assert_same(quick, full) -> None:
    for f in dataclasses.fields(full):
        if f.name != "form_pages":
            assert getattr(quick, f.name) == getattr(full, f.name), f.name


def _text_pdfs() -> dict[str, bytes]:
    labels = corpus.printed_labels(RULES)
    pdfs: dict[str, bytes] = {}
    for project in corpus.PROJECTS:
        slug = project.slug
        for style in ("glyph", "brackets", "paren", "check"):
            pdfs[f"table-{style}-{slug}"] = corpus.text_table_pdf(
                RULES, project, labels=labels, style=style
            )
            pdfs[f"colon-{style}-{slug}"] = corpus.text_colon_pdf(
                RULES, project, labels=labels, style=style
            )
        pdfs[f"next-line-{slug}"] = corpus.text_next_line_pdf(RULES, project, labels=labels)
        pdfs[f"two-column-pairs-{slug}"] = corpus.two_column_pairs_pdf(
            RULES, project, labels=labels
        )
        pdfs[f"two-column-flow-{slug}"] = corpus.two_column_flow_pdf(RULES, project, labels=labels)
        pdfs[f"leaders-{slug}"] = corpus.text_leaders_pdf(RULES, project)
        pdfs[f"letter-{slug}"] = corpus.letter_pdf(project)
        pdfs[f"remade-form-{slug}"] = corpus.remade_form_pdf(RULES, project, tooltips=False)
    pdfs["variant-labels"] = corpus.text_colon_pdf(
        RULES, corpus.BIODECHETS, labels=corpus.VARIANT_LABELS, style="brackets"
    )
    pdfs["letter-then-text"] = corpus.combined_pdf(
        corpus.letter_pdf(POTAGER), pdfs["colon-paren-potager"]
    )
    pdfs["table-then-letter"] = corpus.combined_pdf(
        pdfs["table-glyph-potager"], corpus.letter_pdf(POTAGER)
    )
    pdfs["blank-form"] = blank_form_pdf(RULES)
    return pdfs


def _hard_pdf(*, fake_bold: bool = False, turned: bool = False) -> bytes:
    """Text that tests the word rules: gaps near the 2 pt tolerance, glyphs that
    overhang their advance, ligatures, characters drawn out of order, mixed sizes."""
    regular, bold, _ = corpus.fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    y = 800.0
    for font in (regular, "Helvetica", "Times-Roman"):
        canvas.setFont(font, 10)
        x = 50.0
        for word, gap in (("Demande", 1.6), ("de", 2.4), ("label", 1.9), ("Smart", 2.1)):
            canvas.drawString(x, y, word)
            x += canvas.stringWidth(word, font, 10) + gap
        y -= 16
    for font in ("Times-Italic", "Helvetica-Oblique", "Courier-Oblique", "Times-BoldItalic"):
        canvas.setFont(font, 11)
        canvas.drawString(50, y, "Projet fleuri : affiches, jardin fruitier ; f) f] fj")
        y -= 16
        x = 50.0
        for word in ("Chef", "de", "projet", "actif", "Jardin", "fief"):
            canvas.drawString(x, y, word)
            x += canvas.stringWidth(word, font, 11) + 2.2
        y -= 16
    canvas.setFont(regular, 10)
    canvas.drawString(50, y, "Ligatures : \ufb01che, \ufb02eurs, e\ufb00et, o\ufb03ce, bou\ufb04e.")
    y -= 16
    text, x = "Association du quartier", 50.0
    placed = []
    for char in text:
        placed.append((x, char))
        x += canvas.stringWidth(char, regular, 10)
    for x, char in reversed(placed):  # drawn right to left
        canvas.drawString(x, y, char)
    y -= 20
    canvas.setFont(regular, 12)
    canvas.drawString(50, y, "Budget")
    canvas.setFont(regular, 7)
    canvas.drawString(92, y + 4, "1")
    canvas.setFont(regular, 9)
    canvas.drawString(100, y, "total : 12 500 €")
    canvas.setFont(bold, 14)
    canvas.drawString(200, y - 1, "Titre")
    y -= 20
    canvas.setFont(regular, 8)
    for x, dy, word in ((50, 0, "haut"), (80, 1.5, "bas"), (110, 2.5, "plus bas")):
        canvas.drawString(x, y - dy, word)
    y -= 20
    x = 50.0
    for dy, part in ((0, "Sur"), (1.5, "fa"), (3.0, "ce")):  # one word, each part lower
        canvas.drawString(x, y - dy, part)
        x += canvas.stringWidth(part, regular, 8)
    y -= 20
    if fake_bold:  # the same text twice, 0.4 pt apart
        canvas.drawString(50, y, "Porteur du projet")
        canvas.drawString(50.4, y, "Porteur du projet")
    if turned:
        canvas.saveState()
        canvas.translate(300, 300)
        canvas.rotate(90)
        canvas.drawString(0, 0, "Texte vertical")
        canvas.restoreState()
    canvas.save()
    return buffer.getvalue()


def _plumber_words(data: bytes) -> list[list[Word]]:
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        return [
            [
                Word(w["x0"], w["x1"], w["top"], w["bottom"], nfc(w["text"]))
                for w in page.extract_words(x_tolerance=2, y_tolerance=2, keep_blank_chars=False)
            ]
            for page in pdf.pages
        ]


def _assert_same_words(data: bytes) -> None:
    """pdfium's words are pdfplumber's: same texts, boxes within a point (pdfium
    rounds glyph widths to 1/1000 em, which adds up along a line; for the
    standard fonts not embedded it uses its stand-in fonts' descent, pdfminer
    the Adobe metrics: up to 0.6 pt lower for Courier)."""
    fast = pdfium._pdfium_pages(data, 10)
    expected = _plumber_words(data)
    assert sorted(fast) == list(range(1, len(expected) + 1))
    for number, words in enumerate(expected, start=1):
        got = fast[number].words
        assert [w.text for w in got] == [w.text for w in words]
        for a, b in zip(got, words, strict=True):
            assert abs(a.x0 - b.x0) < 1 and abs(a.x1 - b.x1) < 1, (a, b)
            assert abs(a.top - b.top) < 1 and abs(a.bottom - b.bottom) < 1, (a, b)


TEXT_PDFS = _text_pdfs()
TEXT_PDFS["hard-cases"] = _hard_pdf()


@pytest.mark.parametrize("name", sorted(TEXT_PDFS))
def test_text_pdfs_read_the_quick_way_read_as_the_full_way(name, monkeypatch):
    data = TEXT_PDFS[name]
    _assert_same(_read(data), _read_full_way(data, monkeypatch))


@pytest.mark.parametrize("name", sorted(TEXT_PDFS))
def test_pdfium_words_are_pdfplumber_words(name):
    _assert_same_words(TEXT_PDFS[name])


def test_fake_bold_reads_once_through_pdfium():
    # pdfium drops a text drawn twice over itself (bold simulation); pdfplumber
    # interleaves the two copies ("PPoorrtteeuurr"). The one difference known,
    # and pdfium's reading is the one a reader wants.
    data = _hard_pdf(fake_bold=True)
    words = [w.text for w in pdfium._pdfium_pages(data, 1)[1].words]
    assert words[-3:] == ["Porteur", "du", "projet"]
    doubled = [w.text for w in _plumber_words(data)[0]][-3:]
    assert doubled == ["PPoorrtteeuurr", "dduu", "pprroojjeett"]


def test_rotated_text_sends_its_page_the_full_way(monkeypatch):
    data = _hard_pdf(turned=True)
    assert pdfium._pdfium_pages(data, 1) == {}
    _assert_same(_read(data), _read_full_way(data, monkeypatch))


def test_ruled_tables_are_still_found_the_quick_way(rules):
    data = TEXT_PDFS["table-glyph-potager"]
    words = pdfium._pdfium_pages(data, 1)
    assert words[1].ruled
    assert not pdfium._pdfium_pages(TEXT_PDFS["letter-potager"], 1)[1].ruled
    doc = _read(data)
    assert doc.tables[0] and doc.form_pages == ()
    assert read_dossier([doc], rules=rules).fields["intitule"] == POTAGER.expected["intitule"]


def test_filled_form_pages_skip_the_table_search_and_read_the_same(rules, monkeypatch):
    data = corpus.form_pdf(rules, POTAGER, appearances=False)
    quick = _read(data)
    assert quick.form_pages == tuple(range(1, len(quick.pages) + 1))
    full = _read_full_way(data, monkeypatch)
    assert full.form_pages == ()
    assert quick.pages == full.pages
    assert quick.columns == full.columns
    assert quick.column_rows == full.column_rows
    for name, ff in full.form_fields.items():
        assert quick.form_fields[name] == ff


def test_only_the_form_pages_skip_the_table_search_in_a_form_plus_annex(rules):
    data = corpus.combined_pdf(corpus.form_pdf(rules, POTAGER), corpus.letter_pdf(POTAGER))
    doc = _read(data)
    assert doc.form_pages and len(doc.pages) not in doc.form_pages
    assert "Monsieur le Maire" in doc.pages[-1]
    dossier = read_dossier([doc], rules=rules)
    assert dossier.fields["intitule"] == POTAGER.expected["intitule"]
    letter = find_letter([doc], rules=rules, dossier_sha256=dossier.dossier_sha256)
    assert letter.letter_sha256 == doc.sha256
    assert letter.page == len(doc.pages)


def test_a_blank_form_is_not_read_as_a_filled_one(rules):
    assert _read(blank_form_pdf(rules)).form_pages == ()


def _rewritten(data: bytes, change) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    change(writer.pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pages_pdfium_would_place_differently_are_read_the_full_way(monkeypatch):
    letter = corpus.letter_pdf(POTAGER)
    rotated = _rewritten(letter, lambda page: page.rotate(90))
    cropped = _rewritten(letter, lambda page: setattr(page.cropbox, "lower_left", (20, 20)))
    for data in (rotated, cropped):
        assert pdfium._pdfium_pages(data, 1) == {}
        _assert_same(_read(data), _read_full_way(data, monkeypatch))


def test_characters_without_unicode_send_their_page_the_full_way(monkeypatch):
    # pdfminer shows them as "(cid:N)" and the page goes to OCR; pdfium would
    # make up letters from the character codes.
    data = no_tounicode_pdf()
    assert pdfium._pdfium_pages(data, 1) == {}
    quick, full = _read(data, None), _read_full_way(data, monkeypatch, None)
    _assert_same(quick, full)
    assert "(cid:" in quick.pages[0]


def test_a_scanned_page_goes_the_full_way_to_ocr(monkeypatch):
    letter = corpus.letter_pdf(POTAGER)
    scan = corpus.image_pdf([corpus.render_page(letter)])
    data = corpus.combined_pdf(letter, scan)
    assert sorted(pdfium._pdfium_pages(data, 2)) == [1]
    quick, full = _read(data, None), _read_full_way(data, monkeypatch, None)
    _assert_same(quick, full)
    assert any("OCR unavailable" in w for w in quick.warnings)


def test_a_page_pdfium_cannot_read_falls_back_to_pdfplumber(monkeypatch):
    data = TEXT_PDFS["table-glyph-potager"]
    full = _read_full_way(data, monkeypatch)

    def broken(page):
        raise RuntimeError("pdfium failed")

    monkeypatch.setattr(pdfium, "_pdfium_page", broken)
    _assert_same(_read(data), full)


def test_a_page_whose_graphics_pass_fails_is_read_the_full_way(monkeypatch):
    data = TEXT_PDFS["table-glyph-potager"]
    full = _read_full_way(data, monkeypatch)

    def broken(page):
        raise ValueError("bad content stream")

    monkeypatch.setattr(documents_pdf, "_graphics_layout", broken)
    _assert_same(_read(data), full)
