"""The reader of image attachments (scans and photos), through OCR.

Pillow opens the image under ``max_image_pixels``; small images (logos,
signatures) are skipped; what Tesseract reads is laid out as a page.
"""

from __future__ import annotations

import io
import subprocess
import time
import warnings
from dataclasses import replace
from typing import Any

from parsers.documents.kinds import _safe_name
from parsers.documents.layout import PageLayout
from parsers.documents.model import MIN_OCR_PIXELS, DocumentLimits, DocumentText, _describe, _warn
from parsers.documents.ocr import _image_dpi, _ocr_image, _OcrBudget

# --------------------------------------------------------------------------
# Images


def _open_image(data: bytes) -> Any:
    """A lazily opened image (header read, pixels not decoded), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        # Sizes are checked against our own limit before any decoding.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError):
        return None


def _read_image(doc: DocumentText, data: bytes, *, limits: DocumentLimits, tess: str | None):
    """JPEG, PNG, TIFF (each frame a page)…: OCR, unless tiny (a logo) or huge."""
    name = _safe_name(doc.filename)
    image = _open_image(data)
    if image is None:
        return _warn(doc, f"{name}: unreadable image")
    with image:
        pixels = image.width * image.height
        if pixels > limits.max_image_pixels:
            return _warn(
                doc,
                f"{name}: image of {pixels:,} pixels exceeds the limit of "
                f"{limits.max_image_pixels:,}; not read",
            )
        if pixels < MIN_OCR_PIXELS:
            return replace(doc, page_count=1)
        frames = max(1, min(getattr(image, "n_frames", 1), limits.max_pdf_pages))
        budget = _OcrBudget(time.monotonic() + limits.ocr_timeout_seconds, tess)
        pages: list[str] = []
        for index in range(frames):
            image.seek(index)
            try:
                layout = _ocr_image(image.copy(), budget, page_key=index, dpi=_image_dpi(image))
            except (FileNotFoundError, TimeoutError, subprocess.TimeoutExpired, RuntimeError) as e:
                return _ocr_failed(doc, e, pages)
            pages.append("\n".join(layout.lines))
            doc = _add_layout(doc, layout)
        return replace(
            doc,
            pages=tuple(pages),
            page_count=frames,
            ocr_used=True,
            ocr_pages=tuple(range(1, frames + 1)),
        )


def _add_layout(doc: DocumentText, layout: PageLayout) -> DocumentText:
    return replace(
        doc,
        columns=(*doc.columns, layout.columns),
        column_rows=(*doc.column_rows, layout.column_rows),
        tables=(*doc.tables, ()),
    )


def _ocr_failed(doc: DocumentText, err: BaseException, pages: list[str]) -> DocumentText:
    name = _safe_name(doc.filename)
    if isinstance(err, FileNotFoundError):
        message = f"{name}: OCR unavailable: tesseract not found"
    elif isinstance(err, TimeoutError | subprocess.TimeoutExpired):
        message = f"{name}: OCR stopped at the time limit after {len(pages)} page(s)"
    else:
        message = f"{name}: OCR failed ({_describe(err)})"
    doc = replace(doc, pages=tuple(pages), ocr_used=bool(pages))
    return _warn(doc, message)
