"""Ink on scans and photos: an empty box told from a lost value, and tick boxes the OCR garbled.

On real pages of the reading corpus (``tests/reading_corpus``), read by
Tesseract: a required field left empty on a scanned table is a missing
field only when no ink lies where its value goes (``parsers.documents.ink``);
ink the OCR did not read there is a doubt (the dossier goes to review, no
missing-pieces notice). And the tick boxes that OCR garbles on these pages
("[Associatif", a box read as "5" on its own line, a box at a line's end
whose option wrapped, the "e" of "1er" that is no box) are measured right.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader

from mailbot.config import load_config
from parsers.checks import missing_pieces
from parsers.documents import DocumentLimits, DocumentText, extract_document
from parsers.documents.ink import UNREAD_INK, unread_ink
from parsers.documents.layout import Word
from parsers.dossier import DossierReading, read_dossier
from parsers.types import Attachment
from tests.fixtures.config import SHIPPED_CONFIG

CORPUS = Path(__file__).parent / "reading_corpus"
RULES = load_config(SHIPPED_CONFIG).rules
LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=120)
LOST = "ink where the value is"


def truth(number: str) -> dict:
    return json.loads((CORPUS / "truth" / f"{number}.json").read_text(encoding="utf-8"))


def attachment(name: str, data: bytes) -> Attachment:
    kind = "application/pdf" if name.endswith(".pdf") else "image/jpeg"
    return Attachment(name, kind, data, hashlib.sha256(data).hexdigest(), len(data))


@functools.cache
def read_file(number: str, name: str) -> DocumentText:
    data = (CORPUS / "files" / number / name).read_bytes()
    return extract_document(attachment(name, data), limits=LIMITS)


def read_pages(number: str, *names: str) -> DossierReading:
    return read_dossier([read_file(number, name) for name in names], rules=RULES)


def missing(reading: DossierReading) -> tuple[str, ...]:
    # What a missing-pieces notice would name: the fields not read, less
    # those read with doubt (the service sends such a dossier to review).
    fields = dict(reading.fields)
    listed = missing_pieces(fields=fields, dossier_present=True, letter_present=True, rules=RULES)
    return tuple(m for m in listed if m.removeprefix("field:") not in reading.uncertain)


# --------------------------------------------------------------------------
# An empty box, or a value lost: the ink on the page decides


def scanned_page_two(*, blot: bool) -> DocumentText:
    """Page 2 of dossier 066 as scanned (its "Lieu" cell left empty), or with a blot there."""
    pdf = PdfReader(CORPUS / "files" / "066" / "scan_dossier.pdf")
    page = pdf.pages[1].images[0].image.copy()
    if blot:
        # Ink no OCR reads (a value blotted out), inside the "Lieu" value cell.
        ImageDraw.Draw(page).ellipse((665, 318, 760, 348), fill=20)
    buffer = io.BytesIO()
    page.save(buffer, "PDF", resolution=150)
    return extract_document(attachment("scan.pdf", buffer.getvalue()), limits=LIMITS)


def test_an_empty_required_box_on_a_scan_is_missing_only_when_no_ink_is_there():
    assert "lieu" not in truth("066")["expected"]  # the applicant left it empty
    empty = read_dossier([scanned_page_two(blot=False)], rules=RULES)
    assert "lieu" not in empty.fields
    assert "lieu" not in empty.uncertain
    assert "field:lieu" in missing(empty)
    # The same page with ink in that box that the OCR cannot read: a doubt.
    blotted = read_dossier([scanned_page_two(blot=True)], rules=RULES)
    assert "lieu" not in blotted.fields
    assert "lieu" in blotted.uncertain_required
    assert LOST in (blotted.evidence["lieu"].doubt or "")
    assert "field:lieu" not in missing(blotted)
    # Nothing else on the page changed its reading.
    assert blotted.fields == empty.fields


def test_a_scanned_table_with_an_empty_required_field_is_read_whole():
    expected = truth("066")["expected"]
    reading = read_pages("066", "scan_dossier.pdf")
    # Lieu is missing (its cell has no ink); nothing read is in doubt.
    assert missing(reading) == ("field:lieu",)
    assert reading.uncertain == ()
    for key in ("categorie_label", "criteres", "thematique", "porteur_nature", "contact_email"):
        assert reading.fields.get(key) == expected[key], key


def as_first_read(document: DocumentText, read: str, first: str) -> DocumentText:
    """``document`` with the first OCR pass's text (``first``) where it now reads ``read``.

    The second reading (``parsers.documents.ocr_rescue``) recovers the
    values these tests are about; the rules below are for what it cannot
    recover, so they are tried on the first pass's text of the same page.
    """
    assert any(read in page for page in document.pages), read
    pages = tuple(page.replace(read, first) for page in document.pages)
    return replace(document, pages=pages)


def test_a_value_the_ocr_lost_on_a_photo_is_a_doubt_not_a_missing_field():
    # Photo 089: the first OCR pass reads nothing of the e-mail, but its ink is there.
    expected = truth("089")["expected"]["contact_email"]
    assert expected == "helene.caron@gmail.com"
    page_one, page_two = (
        read_file("089", "IMG_20251109_1.jpg"),
        read_file("089", "IMG_20251109_2.jpg"),
    )
    # Now read again from the ink the first pass left: the address comes back whole.
    assert read_dossier([page_one, page_two], rules=RULES).fields["contact_email"] == expected
    lost = as_first_read(page_two, f"\n{expected}\n", f"\n{UNREAD_INK}\n")
    reading = read_dossier([page_one, lost], rules=RULES)
    assert "contact_email" not in reading.fields
    assert "contact_email" in reading.uncertain_required
    assert LOST in (reading.evidence["contact_email"].doubt or "")
    assert "field:contact_email" not in missing(reading)


def test_a_photo_whose_required_field_is_empty_gets_its_notice():
    # Photo 081: the applicant left the e-mail out; no ink where it goes.
    assert "contact_email" not in truth("081")["expected"]
    reading = read_pages("081", "IMG_20251101_1.jpg", "IMG_20251101_2.jpg")
    assert "contact_email" not in reading.fields
    assert reading.uncertain_required == ()
    assert missing(reading) == ("field:contact_email",)


def test_a_photo_with_an_empty_description_gets_a_notice_naming_only_it():
    # Photo 084: the description is left empty; the e-mail, below specks the
    # OCR read beside its label ("Courriel Le"), is read.
    expected = truth("084")["expected"]
    assert "description" not in expected
    reading = read_pages("084", "IMG_20251104_1.jpg", "IMG_20251104_2.jpg")
    assert reading.fields.get("contact_email") == expected["contact_email"]
    assert reading.uncertain_required == ()
    assert missing(reading) == ("field:description",)


def test_specks_and_noise_are_not_unread_ink():
    page = Image.new("L", (1200, 400), 255)
    draw = ImageDraw.Draw(page)
    words = [Word(100, 300, 100, 136, "Courriel", line=1)]
    draw.rectangle((100, 100, 300, 136), fill=0)  # the word itself, read
    for x, y in ((500, 110), (620, 200), (700, 120), (900, 300)):
        draw.point((x, y), fill=0)  # scanner noise
    draw.text((800, 110), "*", fill=0)  # an asterisk: too small to be a value
    assert unread_ink(page, words) == []
    draw.rectangle((500, 104, 700, 134), fill=30)  # a value's worth of ink
    (mark,) = unread_ink(page, words)
    assert mark.text == UNREAD_INK and mark.line == 1
    assert 495 <= mark.x0 <= 505 and 695 <= mark.x1 <= 705


# --------------------------------------------------------------------------
# Tick boxes the OCR garbles


@pytest.mark.parametrize(
    ("number", "keys"),
    [
        # "[Associatif", "Privé" read over its box; a box at the line's end
        # whose option ("Innovante") wrapped, read "©".
        ("066", ("criteres", "porteur_nature", "thematique")),
        # A ticked box the OCR skipped between two options; a "☒" read "5" on
        # a line of its own.
        ("062", ("criteres", "porteur_nature", "categorie_label")),
        # A box whose search caught a descender of the line above ("O 1 -
        # Initiative"); "OPrivé".
        ("069", ("categorie_label", "porteur_nature", "criteres")),
        # A ticked box read as the letters "EX".
        ("061", ("categorie_label", "porteur_nature", "criteres")),
    ],
)
def test_choices_of_a_scanned_table_are_read_sure(number, keys):
    expected = truth(number)["expected"]
    name = "scan_candidature.pdf" if truth(number)["letter"] == "first_page" else "scan_dossier.pdf"
    reading = read_pages(number, name)
    for key in keys:
        assert reading.fields.get(key) == expected[key], key
        assert key not in reading.uncertain, reading.evidence[key].doubt


def test_a_letter_e_is_not_a_box():
    # "1er septembre 2026" on a scanned form: the "e" of "1er" is a closed
    # shape, but a word's letter, not a tick box before "septembre".
    reading = read_pages("078", "scan_dossier.pdf")
    assert reading.fields.get("date_realisation") == truth("078")["expected"]["date_realisation"]
    assert "☒" not in reading.evidence["date_realisation"].raw


def test_a_description_goes_on_past_a_line_starting_with_a_label_word():
    # Scan 061: the description wraps "… évaluées avec les" / "partenaires.",
    # the label "Partenaires" in lower case inside a sentence, and runs on to
    # the next page.
    reading = read_pages("061", "scan_candidature.pdf")
    value = " ".join(reading.fields["description"].split())
    assert "évaluées avec les partenaires. Une première phase" in value
    assert value.endswith("supprimées au bout de douze mois.")


def test_an_address_the_ocr_split_at_a_dot_is_a_doubt():
    # Photo 085: the first pass read "jean-pierre.delattre@laposte.net" with a
    # space for its first dot; "delattre@laposte.net" is an address, but not
    # the applicant's.
    expected = truth("085")["expected"]["contact_email"]
    assert expected == "jean-pierre.delattre@laposte.net"
    page = read_file("085", "IMG_20251105_2.jpg")
    # The second reading confirms the whole address from its crop.
    assert read_dossier([page], rules=RULES).fields["contact_email"] == expected
    split = as_first_read(page, expected, "jean-pierre delattre@laposte.net")
    reading = read_dossier([split], rules=RULES)
    assert "contact_email" in reading.uncertain_required
    assert "space inside the e-mail" in (reading.evidence["contact_email"].doubt or "")
