"""What a document is, by its bytes, whatever its name says.

Magic numbers for PDF and images, zip content for DOCX, a text heuristic;
a name whose extension disagrees with the content gets a warning.
"""

from __future__ import annotations

import io
import re
import zipfile

# --------------------------------------------------------------------------
# Kind detection


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
)
_EXTENSIONS = {
    "pdf": {"pdf"},
    "docx": {"docx", "docm", "dotx"},
    "image": {"jpg", "jpeg", "png", "gif", "tif", "tiff", "bmp", "webp"},
    "text": {"txt", "text", "csv", "md", "eml", "htm", "html"},
}


def detect_kind(data: bytes) -> tuple[str, str]:
    """(kind, format) from the content, never the name: ("image", "jpeg")."""
    if not data:
        return "other", "empty"
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf", "pdf"
    for magic, name in _IMAGE_MAGIC:
        if data.startswith(magic):
            return "image", name
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image", "webp"
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "other", "ole"  # Word 97-2003 .doc, .xls, .msg
    if data.startswith(b"{\\rtf"):
        return "other", "rtf"
    if _looks_like_text(data[:65536]):
        return "text", "text"
    return "other", "binary"


def _zip_kind(data: bytes) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "other", "zip"
    if "word/document.xml" in names:
        return "docx", "docx"
    if "content.xml" in names and "mimetype" in names:
        return "other", "odf"
    if "xl/workbook.xml" in names:
        return "other", "xlsx"
    return "other", "zip"


def _looks_like_text(sample: bytes) -> bool:
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as err:
        # A multi-byte character cut by the sample boundary is still text.
        if err.start >= len(sample) - 4:
            return True
    printable = sum(1 for b in sample if b >= 32 or b in (9, 10, 13))
    return printable / max(1, len(sample)) > 0.95


def _safe_name(name: str) -> str:
    """A file name fit for a warning: no control characters, bounded length."""
    cleaned = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", name or "").strip()
    return (cleaned[:80] + "…") if len(cleaned) > 80 else (cleaned or "(no name)")


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _mismatch_warning(name: str, kind: str, detected: str) -> str | None:
    ext = _extension(name)
    if not ext:
        return None
    claimed = next((k for k, exts in _EXTENSIONS.items() if ext in exts), None)
    if claimed is None or claimed == kind:
        return None
    what = {"empty": "empty", "binary": "not a known document type"}.get(detected, detected)
    return f"{_safe_name(name)}: named .{ext} but the content is {what}"
