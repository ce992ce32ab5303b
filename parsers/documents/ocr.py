"""OCR with Tesseract under a shared time budget.

Images are converted to PNG at a known resolution, read as TSV words (so the
layout code sees positions), and turned upright when the confidence is low
and the words run sideways.
"""

from __future__ import annotations

import io
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
    """Grey PNG for Tesseract, scaled down if huge; (png, dpi, width)."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    image = image.convert("L")
    pixels = image.width * image.height
    if pixels > OCR_MAX_PIXELS:
        scale = (OCR_MAX_PIXELS / pixels) ** 0.5
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        dpi = int(dpi * scale) if dpi else None
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), dpi, float(image.width)


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
            png, dpi, width = _png_for_ocr(turned, dpi)
            upright, better = _ocr_words(png, budget, page_key=page_key, dpi=dpi)
            if better >= confidence or _sideways(words):
                words = upright
    if words:
        # Tick boxes told ticked or empty by the ink inside them.
        from PIL import Image

        words = ink_boxes(Image.open(io.BytesIO(png)).convert("L"), words)
    return layout_page(words, width)
