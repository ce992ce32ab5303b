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
from parsers.documents.page_image import (
    PAGE_HEIGHT_INCHES,
    PAGE_WIDTH_INCHES,
    TARGET_DPI,
    deskew_angle,
    erase_rules,
    even_light,
    find_page,
    flatten_page,
)
from parsers.sandbox import extend_deadline
from parsers.sandbox_env import reader_environment
from parsers.text import nfc

# --------------------------------------------------------------------------
# OCR


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
    words: list[Word] = []
    confidences: list[float] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        line_id = (page_key, cols[2], cols[3], cols[4])
        words.append(Word(left, left + width, top, top + height, nfc(cols[11]), line_id))
        confidences.append(float(cols[10]))
    return words, (sum(confidences) / len(confidences) if confidences else 0.0)


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
        # Tick boxes told ticked or empty by the ink inside them.
        from PIL import Image

        words = ink_boxes(Image.open(io.BytesIO(png)).convert("L"), words)
    return layout_page(words, width)
