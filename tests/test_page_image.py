"""A scan or a photo made fit for Tesseract (``parsers.documents.page_image``), on real images.

The phone photos and scans of the reading corpus (``tests/reading_corpus``)
and small drawn pages: a photographed page found and warped flat, uneven
light evened, a skewed scan turned level, ruled lines erased while letters
stay, and a photographed dossier read whole.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, ImageDraw, ImageFont

from mailbot.config import load_config
from parsers.documents import DocumentLimits, extract_document
from parsers.documents.ocr import prepare_page
from parsers.documents.page_image import (
    TARGET_DPI,
    deskew_angle,
    erase_rules,
    even_light,
    find_page,
)
from parsers.dossier import read_dossier
from parsers.types import Attachment
from tests.fixtures.config import SHIPPED_CONFIG

CORPUS = Path(__file__).parent / "reading_corpus"
PHOTO = CORPUS / "files" / "081" / "IMG_20251101_1.jpg"
SCAN = CORPUS / "files" / "071" / "scan_candidature.pdf"
RULES = load_config(SHIPPED_CONFIG).rules
LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=120)


def text_page(*, size=(1200, 900), lines=8) -> Image.Image:
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=36)
    for row in range(lines):
        draw.text((80, 80 + 90 * row), "Lieu de réalisation du projet", fill=0, font=font)
    return page


def dark_share(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    region = image.crop(box)
    histogram = region.histogram()
    return sum(histogram[:128]) / (region.width * region.height)


def test_a_photographed_page_is_found_and_warped_level_at_300_dpi():
    photo = Image.open(PHOTO).convert("L")
    quad = find_page(photo)
    assert quad is not None
    # The page lies inside the picture, its corners near the picture's.
    for (x, y), (cx, cy) in zip(
        quad, [(0, 0), (photo.width, 0), photo.size, (0, photo.height)], strict=True
    ):
        assert 0 <= x <= photo.width and 0 <= y <= photo.height
        assert abs(x - cx) < 0.15 * photo.width and abs(y - cy) < 0.15 * photo.height
    page, dpi = prepare_page(Image.open(PHOTO), 119)
    assert dpi == TARGET_DPI
    assert abs(page.width - round(8.27 * TARGET_DPI)) <= 1
    # Warped flat: the lines of text run level.
    assert deskew_angle(page) == 0.0
    # Evened light: the paper is white in all four corners of the page.
    margin = page.width // 20
    for x, y in [(margin, margin), (page.width - 2 * margin, page.height - 2 * margin)]:
        corner = page.crop((x, y, x + margin, y + margin))
        assert sum(corner.histogram()[200:]) > 0.95 * corner.width * corner.height


def test_a_scanned_page_fills_its_picture_and_has_no_page_to_find():
    pdf = pdfium.PdfDocument(SCAN.read_bytes())
    try:
        page = pdf[1]
        image = page.render(scale=100 / 72, grayscale=True).to_pil().copy()
        page.close()
    finally:
        pdf.close()
    assert find_page(image) is None


def test_a_skewed_scan_is_turned_level():
    page = text_page()
    turned = page.rotate(1.5, resample=Image.Resampling.BICUBIC, fillcolor=255)
    assert abs(deskew_angle(turned) + 1.5) <= 0.25
    assert deskew_angle(page) == 0.0


def test_uneven_light_is_evened_to_white_paper_and_dark_ink():
    page = text_page()
    shade = Image.linear_gradient("L").resize(page.size).rotate(90).point(lambda v: 90 + v // 2)
    # Light multiplied in: from 35 % on the left to 85 % on the right.
    lit = Image.composite(page, Image.new("L", page.size, 0), shade)
    even = even_light(lit)
    for x in (20, page.width - 60):
        assert even.crop((x, 20, x + 40, 60)).getextrema()[0] > 220
    assert dark_share(even, (80, 80, 700, 130)) > 0.5 * dark_share(page, (80, 80, 700, 130))


def test_ruled_lines_are_erased_and_letters_kept():
    page = text_page(lines=1)
    draw = ImageDraw.Draw(page)
    # A one-line field's box (20 pt high at 300 dpi) around the text, and a
    # table rule below it.
    draw.rectangle((60, 60, 1100, 60 + 84), outline=0, width=4)
    draw.line((40, 400, 1150, 400), fill=0, width=3)
    text_box = (80, 80, 700, 125)
    before = dark_share(page, text_box)
    erased = erase_rules(page, dpi=TARGET_DPI)
    assert dark_share(erased, (60, 58, 1100, 66)) < 0.01  # the box's top
    assert dark_share(erased, (56, 60, 66, 144)) < 0.01  # its left edge
    assert dark_share(erased, (40, 396, 1150, 404)) < 0.01  # the table rule
    assert dark_share(erased, text_box) > 0.9 * before


def test_a_photographed_dossier_is_read_whole():
    truth = json.loads((CORPUS / "truth" / "081.json").read_text(encoding="utf-8"))
    documents = []
    for path in sorted(PHOTO.parent.glob("IMG_*.jpg")):
        data = path.read_bytes()
        attachment = Attachment(
            path.name, "image/jpeg", data, hashlib.sha256(data).hexdigest(), len(data)
        )
        documents.append(extract_document(attachment, limits=LIMITS))
    reading = read_dossier(documents, rules=RULES)
    keys = ("intitule", "categorie_label", "thematique", "criteres", "lieu", "budget")
    for key in (*keys, "porteur_nature", "porteur_structure", "date_realisation"):
        assert reading.fields.get(key) == truth["expected"][key], key
    # This applicant left the e-mail out: nothing is made up for it.
    assert "contact_email" not in truth["expected"]
    assert "contact_email" not in reading.fields
