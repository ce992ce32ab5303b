"""OCR with Tesseract under a shared time budget.

Images are converted to PNG at a known resolution, read as TSV words (so the
layout code sees positions), and turned upright when the confidence is low
and the words run sideways.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parsers.documents.layout import PageLayout, Word, layout_page
from parsers.documents.marks import ink_boxes
from parsers.documents.model import LOW_OCR_CONFIDENCE, OCR_MAX_PIXELS
from parsers.documents.ocr_rescue import (
    address_clusters,
    beside_read_word,
    confirmed_address,
    unread_regions,
)
from parsers.documents.page_image import (
    PAGE_HEIGHT_INCHES,
    PAGE_WIDTH_INCHES,
    TARGET_DPI,
    deskew_angle,
    erase_rules,
    even_light,
    find_page,
    flatten_page,
    sharpen_photo,
)
from parsers.sandbox import extend_deadline
from parsers.sandbox_env import reader_environment
from parsers.text import nfc

# --------------------------------------------------------------------------
# OCR

# White margin around a crop read on its own (pixels at 300 dpi).
_CROP_MARGIN = 16
# A word read again from unread ink is kept from this confidence (0-100).
_RESCUED_WORD = 40.0
# At most this many e-mail addresses read again on a page (time).
_MAX_ADDRESSES = 3
# How an address's crop is read again, in turn: (scale, unsharp radius, percent).
# Measured on the corpus's photos: the sharpened crop at twice the size sees
# the dots the page's reading lost ("claire vandenbussche@laposte net").
_ADDRESS_READINGS = ((2, 2, 150), (2, 1, 100), (1, 1, 100), (1, 2, 150))


@dataclass
class _OcrBudget:
    """Tesseract time left for one document."""

    deadline: float
    command: str | None
    extended: bool = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _tesseract_path(command: str | None) -> str | None:
    if not command:
        return None
    return shutil.which(command)


def _tesseract(png: bytes, budget: _OcrBudget, args: list[str]) -> str:
    """Run Tesseract on a PNG (stdin to stdout) within the OCR time left."""
    path = _tesseract_path(budget.command)
    if path is None:
        raise FileNotFoundError("tesseract not found")
    remaining = budget.remaining()
    if remaining <= 1:
        raise TimeoutError("OCR time limit reached")
    # A short explicit environment (no secret of the worker's; one OpenMP
    # thread, as threads multiply the address space under RLIMIT_AS).
    env = reader_environment()
    proc = subprocess.run(
        [path, "-", "-", *args],
        input=png,
        capture_output=True,
        timeout=remaining,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"tesseract failed: {message[-1] if message else proc.returncode}")
    return proc.stdout.decode("utf-8", "replace")


def _ocr_words(
    png: bytes, budget: _OcrBudget, *, page_key: Any, dpi: int | None
) -> tuple[list[Word], float]:
    """Tesseract TSV words of one image and their mean confidence (0-100)."""
    resolution = ["--dpi", str(dpi)] if dpi else []
    tsv = _tesseract(png, budget, ["-l", "fra", *resolution, "--psm", "3", "tsv"])
    return _parse_tsv(tsv, page_key)


def _parse_tsv(tsv: str, page_key: Any) -> tuple[list[Word], float]:
    scored = _scored_words(tsv, page_key)
    confidences = [confidence for _, confidence in scored]
    mean = sum(confidences) / len(confidences) if confidences else 0.0
    return [word for word, _ in scored], mean


def _scored_words(
    tsv: str, page_key: Any, *, offset: tuple[int, int] = (0, 0)
) -> list[tuple[Word, float]]:
    """Tesseract TSV words with their confidence, moved by ``offset`` (a crop's corner)."""
    dx, dy = offset
    scored: list[tuple[Word, float]] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        left, top = left + dx, top + dy
        line_id = (page_key, cols[2], cols[3], cols[4])
        word = Word(left, left + width, top, top + height, nfc(cols[11]), line_id)
        scored.append((word, float(cols[10])))
    return scored


def _read_crop(
    image: Any, box: tuple[int, int, int, int], budget: _OcrBudget, *, psm: str, key: Any
) -> list[tuple[Word, float]]:
    """Words of one region of the page read on its own, in page coordinates.

    The crop gets a white margin: Tesseract reads nothing of a line whose ink
    touches the image's edge (measured: an address cropped tight read as no
    word; with 16 px of white around it, read whole).
    """
    from PIL import ImageOps

    crop = ImageOps.expand(image.crop(box), border=_CROP_MARGIN, fill=255)
    buffer = io.BytesIO()
    crop.save(buffer, "PNG", compress_level=1)
    tsv = _tesseract(
        buffer.getvalue(), budget, ["-l", "fra", "--dpi", str(TARGET_DPI), "--psm", psm, "tsv"]
    )
    return _scored_words(tsv, key, offset=(box[0] - _CROP_MARGIN, box[1] - _CROP_MARGIN))


def _reread_address(image: Any, cluster: list[Word], budget: _OcrBudget) -> str | None:
    """An address the first reading split, read again from its crop until two
    readings agree on its letters and one gives it whole (``confirmed_address``)."""
    from PIL import Image, ImageFilter, ImageOps

    height = max(w.height for w in cluster)
    # Tight above and below: the next line's ink in the crop made Tesseract
    # read nothing at all.
    box = (
        int(max(0, cluster[0].x0 - 0.3 * height)),
        int(max(0, min(w.top for w in cluster) - 2)),
        int(min(image.width, cluster[-1].x1 + 0.3 * height)),
        int(min(image.height, max(w.bottom for w in cluster) + 2)),
    )
    crop = image.crop(box)
    readings = [[w.text for w in cluster]]
    for scale, radius, percent in _ADDRESS_READINGS:
        turned = crop
        if scale != 1:
            size = (crop.width * scale, crop.height * scale)
            turned = crop.resize(size, Image.Resampling.BICUBIC)
        turned = turned.filter(ImageFilter.UnsharpMask(radius * scale, percent, 2))
        turned = ImageOps.expand(turned, border=_CROP_MARGIN * scale, fill=255)
        buffer = io.BytesIO()
        turned.save(buffer, "PNG", compress_level=1)
        args = ["-l", "fra", "--dpi", str(TARGET_DPI * scale), "--psm", "7", "tsv"]
        tsv = _tesseract(buffer.getvalue(), budget, args)
        readings.append([w.text for w, _ in _scored_words(tsv, None)])
        address = confirmed_address(readings)
        if address is not None:
            return address
    return None


def second_reading(
    image: Any, words: list[Word], budget: _OcrBudget, *, page_key: Any
) -> list[Word]:
    """The page's words with what the first reading missed read again on its own.

    Blocks of ink no word covers (a column Tesseract's layout dropped) are
    read as blocks; an e-mail address the first reading split or left
    invalid ("jean-pierre delattre@laposte.net") is read again from its
    crop and kept only when the new reading validates (``reread_address``).
    """
    words = list(words)
    first = list(words)
    for index, box in enumerate(unread_regions(image, words)):
        scored = _read_crop(image, box, budget, psm="6", key=(page_key, "unread", index))
        confidences = [confidence for _, confidence in scored]
        if not confidences or sum(confidences) / len(confidences) < LOW_OCR_CONFIDENCE:
            continue  # specks, a stamp, a drawing: not text
        words += [
            word
            for word, confidence in scored
            if confidence >= _RESCUED_WORD and not beside_read_word(word, first)
        ]
    for cluster in address_clusters(words)[:_MAX_ADDRESSES]:
        address = _reread_address(image, cluster, budget)
        if address is None:
            continue
        gone = {id(w) for w in cluster}
        words = [w for w in words if id(w) not in gone]
        first, last = cluster[0], cluster[-1]
        top = min(w.top for w in cluster)
        bottom = max(w.bottom for w in cluster)
        words.append(Word(first.x0, last.x1, top, bottom, address, first.line))
    return words


def _sideways(words: Sequence[Word]) -> bool:
    """Most long words taller than wide: the text runs vertically."""
    long_words = [w for w in words if len(w.text) >= 4]
    if not long_words:
        return False
    tall = sum(1 for w in long_words if (w.bottom - w.top) > (w.x1 - w.x0))
    return tall > len(long_words) / 2


def _orientation(png: bytes, budget: _OcrBudget) -> int:
    """Degrees to turn a page upright, by Tesseract's orientation detection."""
    try:
        report = _tesseract(png, budget, ["--psm", "0"])
    except RuntimeError:  # too little text to tell
        return 0
    rotate = re.search(r"Rotate:\s*(\d+)", report)
    confidence = re.search(r"Orientation confidence:\s*([\d.]+)", report)
    if rotate and confidence and float(confidence.group(1)) >= 2.0:
        return int(rotate.group(1)) % 360
    return 0


def _png_for_ocr(image: Any, dpi: int | None) -> tuple[bytes, int | None, float]:
    """The page made fit for Tesseract (``page_image``) as a grey PNG; (png, dpi, width)."""
    image, dpi = prepare_page(image, dpi)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), dpi, float(image.width)


def prepare_page(image: Any, dpi: int | None) -> tuple[Any, int | None]:
    """A grey, upright, flat, evenly lit page near 300 dpi with its rules erased; and its dpi.

    A photo (a page lighter than what surrounds it) is warped flat to an A4
    width at ``TARGET_DPI``; a scan is turned level and, when its declared
    resolution is low, scaled up to ``TARGET_DPI``. Never above
    ``OCR_MAX_PIXELS``.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    grey = image.convert("L")
    quad = find_page(grey)
    if quad is not None:
        # The page's long side across: a photo taken sideways, turned later.
        across = math.dist(quad[0], quad[1]) > math.dist(quad[0], quad[3])
        inches = PAGE_HEIGHT_INCHES if across else PAGE_WIDTH_INCHES
        width = round(inches * TARGET_DPI)
        grey = flatten_page(grey, quad, width=width)
        dpi = TARGET_DPI
        grey = even_light(grey)
        grey = sharpen_photo(grey)
    else:
        angle = deskew_angle(grey)
        if angle:
            grey = grey.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
        if dpi and dpi < 0.8 * TARGET_DPI:
            scale = TARGET_DPI / dpi
            size = (round(grey.width * scale), round(grey.height * scale))
            grey = grey.resize(size, Image.Resampling.LANCZOS)
            dpi = TARGET_DPI
    pixels = grey.width * grey.height
    if pixels > OCR_MAX_PIXELS:
        scale = (OCR_MAX_PIXELS / pixels) ** 0.5
        size = (max(1, int(grey.width * scale)), max(1, int(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.LANCZOS)
        dpi = int(dpi * scale) if dpi else None
    grey = erase_rules(grey, dpi=dpi or TARGET_DPI)
    return grey, dpi


def _image_dpi(image: Any) -> int | None:
    """The resolution a scan declares, when plausible (phone photos say 72)."""
    value = image.info.get("dpi")
    try:
        dpi = round(float(value[0])) if value else 0
    except (TypeError, ValueError, IndexError):
        return None
    return dpi if 100 <= dpi <= 1200 else None


def _ocr_image(image: Any, budget: _OcrBudget, *, page_key: Any, dpi: int | None) -> PageLayout:
    if not budget.extended:
        # OCR has its own time limit: tell the parent not to kill us for it.
        extend_deadline(max(0.0, budget.remaining()))
        budget.extended = True
    png, dpi, width = _png_for_ocr(image, dpi)
    words, confidence = _ocr_words(png, budget, page_key=page_key, dpi=dpi)
    if words and (confidence < LOW_OCR_CONFIDENCE or _sideways(words)):
        # A page scanned sideways or upside down reads poorly, or reads as
        # columns of vertical words: turn it upright and read it again.
        rotate = _orientation(png, budget)
        if rotate:
            from PIL import Image

            turned = Image.open(io.BytesIO(png)).rotate(-rotate, expand=True)
            buffer = io.BytesIO()
            turned.save(buffer, "PNG", compress_level=1)
            png, width = buffer.getvalue(), float(turned.width)
            upright, better = _ocr_words(png, budget, page_key=page_key, dpi=dpi)
            if better >= confidence or _sideways(words):
                words = upright
    if words:
        from PIL import Image

        grey = Image.open(io.BytesIO(png)).convert("L")
        words = second_reading(grey, words, budget, page_key=page_key)
        # Tick boxes told ticked or empty by the ink inside them.
        words = ink_boxes(grey, words)
    return layout_page(words, width)
