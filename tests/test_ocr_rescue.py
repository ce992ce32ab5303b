"""The second reading of a phone photo (``parsers.documents.ocr_rescue``).

On the reading corpus's phone photos (``tests/reading_corpus``, committed
JPEGs), Tesseract's first reading dropped a whole column of labels (083),
lost the dots of e-mail addresses ("jean-pierre delattre@gmail.com", 087),
and the category's tick boxes were not found on the blurred warp (085).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from mailbot.config import load_config
from parsers.documents import DocumentLimits, extract_document
from parsers.documents.ocr import _ocr_words, _OcrBudget, _png_for_ocr, prepare_page
from parsers.documents.ocr_rescue import (
    address_clusters,
    confirmed_address,
    joined_address,
    letters,
    unread_regions,
)
from parsers.dossier import read_dossier
from parsers.types import Attachment
from tests.fixtures.config import SHIPPED_CONFIG

CORPUS = Path(__file__).parent / "reading_corpus"
RULES = load_config(SHIPPED_CONFIG).rules
LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=120)


def read_photos(dossier: str):
    documents = []
    for path in sorted((CORPUS / "files" / dossier).glob("IMG_*.jpg")):
        data = path.read_bytes()
        attachment = Attachment(
            path.name, "image/jpeg", data, hashlib.sha256(data).hexdigest(), len(data)
        )
        documents.append(extract_document(attachment, limits=LIMITS))
    return read_dossier(documents, rules=RULES)


def expected(dossier: str) -> dict:
    truth = json.loads((CORPUS / "truth" / f"{dossier}.json").read_text(encoding="utf-8"))
    return truth["expected"]


def first_reading(path: Path):
    """The page as prepared and Tesseract's first reading of it (no second reading)."""
    image = Image.open(path)
    grey, _ = prepare_page(image, None)
    png, dpi, _ = _png_for_ocr(image, None)
    budget = _OcrBudget(time.monotonic() + 120, "tesseract")
    words, _ = _ocr_words(png, budget, page_key=0, dpi=dpi)
    return grey, words


@pytest.mark.parametrize(
    ("dossier", "keys"),
    [
        # The referent's labels, dropped by the first reading, read as a block.
        ("083", ("contact_nom", "contact_fonction", "contact_email", "adresse")),
        # The category's boxes found on the sharpened photo (read "realisee"
        # before, the ticked box read as "Æ"); the address's dot read again.
        ("085", ("categorie_label", "contact_email", "criteres", "sous_thematique")),
        # "jean-pierre delattre@gmail.com" read again as one address.
        ("087", ("contact_email", "thematique", "sous_thematique")),
        # The radio button of the category measured ("&)" before).
        ("086", ("categorie_label",)),
    ],
)
def test_a_phone_photo_is_read_right_where_the_first_reading_failed(dossier, keys):
    reading = read_photos(dossier)
    truth = expected(dossier)
    for key in keys:
        assert reading.fields.get(key) == truth[key], key


def test_the_label_column_tesseract_dropped_is_found_as_unread_ink():
    path = CORPUS / "files" / "083" / "IMG_20251103_2.jpg"
    grey, words = first_reading(path)
    texts = {w.text for w in words}
    assert "Courriel" not in texts  # the first reading lost the labels
    regions = unread_regions(grey, words)
    # The referent's labels: left column, below the "3. Le référent" heading,
    # one block from "Nom et prénom" to "Adresse postale".
    heading = next(w for w in words if w.text == "référent")
    values = [w for w in words if w.text in ("Sophie", "Délivrance,")]
    label_column = [
        box
        for box in regions
        if box[2] < min(w.x0 for w in values)
        and box[1] <= values[0].bottom
        and box[3] >= values[1].top
        and box[1] > heading.top
    ]
    assert label_column, regions
    # Read words are not read again: no region covers the values' column.
    assert all(box[0] > max(w.x1 for w in values) or box[2] < values[0].x0 for box in regions)


def test_an_address_split_at_its_lost_dot_is_one_cluster_to_read_again():
    path = CORPUS / "files" / "087" / "IMG_20251107_2.jpg"
    _, words = first_reading(path)
    clusters = [[w.text for w in c] for c in address_clusters(words)]
    # Read in two words ("jean-pierre" or "jean-pierre." + "delattre@gmail.com").
    assert any(len(c) == 2 and letters(c) == "jean-pierredelattre@gmailcom" for c in clusters), (
        clusters
    )
    # A radio button read "@)" is no address.
    assert not any(c == ["@)"] for c in clusters)


def test_an_address_is_kept_only_when_a_second_reading_confirms_its_letters():
    first = ["jean-pierre", "delattre@laposte.net"]
    # Seen whole once, its letters seen again: kept, with its dot.
    assert confirmed_address([first, ["jean-pierre.delattre@laposte.net"]]) == (
        "jean-pierre.delattre@laposte.net"
    )
    # Whole but with other letters than any other reading: not kept.
    assert confirmed_address([first, ["jean-pierre.delattre@lapaste.net"]]) is None
    # Read whole by one reading only, nothing to confirm it: not kept.
    assert confirmed_address([["sophie.lefebvre-dumont@laposte.net"]]) is None
    # Two readings, one split after its dot ("sophie." + "lefebvre-dumont@"),
    # the other with the same letters: the joined one is kept.
    readings = [
        ["sopluc_lefebvre-dumont", "@", "Laposte", "net"],
        ["sophie.", "lefebvre-dumont@", "laposte.net"],
        ["sophie", "lefebvre-dumont", "@", "laposte", "net"],
    ]
    assert confirmed_address(readings) == "sophie.lefebvre-dumont@laposte.net"
    # No reading whole: nothing.
    assert confirmed_address([first, ["claire", "vandenbussche@laposte", "net"]]) is None


def test_words_are_joined_only_across_a_separator_the_ink_shows():
    assert joined_address(["jean-pierre.", "delattre@gmail.com"]) == (
        "jean-pierre.delattre@gmail.com"
    )
    assert joined_address(["jean-pierre", "delattre@gmail.com"]) is None
    # A box's edge read "{" or "|" before the address is not part of it.
    assert joined_address(["{sophie.lefebvre-dumont@laposte.net"]) is None
    assert joined_address(["claire.vandenbussche@laposte"]) is None
