"""File names and types of attachments, and zip archives read from memory.

Names are cleaned (controls, paths, length), types guessed from the name
when a webmail sends everything as octet-stream; zip central directories
are counted by us before ``zipfile`` lists them, members are streamed with a
byte budget.
"""

from __future__ import annotations

import re
import struct
import unicodedata
import zipfile
from collections.abc import Callable
from typing import TYPE_CHECKING

from parsers.mail import bounds
from parsers.mail.bounds import _MAX_FILENAME, _ZIP_RATIO_FLOOR, _ZIP_READ_CHUNK
from parsers.mail.charsets import _quoted
from parsers.text import nfc
from parsers.types import SpooledData, SpoolSink

if TYPE_CHECKING:
    from pathlib import Path

# --------------------------------------------------------------------------
# File names and types
# --------------------------------------------------------------------------

_EXTENSIONS = {
    "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/rtf": "rtf",
    "application/zip": "zip",
    "application/x-zip-compressed": "zip",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/tiff": "tif",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/svg+xml": "svg",
    "text/plain": "txt",
    "text/html": "html",
    "text/csv": "csv",
    "text/calendar": "ics",
    "message/rfc822": "eml",
}
_TYPES = {ext: ctype for ctype, ext in _EXTENSIONS.items()} | {
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
    "htm": "text/html",
    "zip": "application/zip",
}
# Types webmails give to any upload: the file name says more.
_GENERIC_TYPES = frozenset(
    {
        "application/octet-stream",
        "application/x-download",
        "application/force-download",
        "application/download",
        "application/unknown",
        "binary/octet-stream",
    }
)
_ZIP_TYPES = frozenset(
    {"application/zip", "application/x-zip-compressed", "application/x-zip", "multipart/x-zip"}
)
# Zip containers that are documents, never expanded.
_DOCUMENT_ZIPS = (".docx", ".docm", ".dotx", ".xlsx", ".xlsm", ".pptx", ".odt", ".ods", ".odp")
_NAME_JUNK_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_DRIVE = re.compile(r"[A-Za-z]:")


def _extension_for(ctype: str) -> str:
    return _EXTENSIONS.get(ctype, "bin")


def _type_for_name(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _TYPES.get(ext, "application/octet-stream")


def _clean_filename(name: str | None, notes: list[str], loud: list[str]) -> str | None:
    """A base name that is data only: no directory, no control character.

    Returns None when nothing usable is left. What changed goes to ``notes``
    (kept on the attachment) and, when it looks like an attack or breakage
    (``..``, absolute path, control characters), to ``loud`` (the message's
    warnings too); a plain sub-folder of a zip is ordinary.
    """
    if not name:
        return None
    original = nfc(name).strip()
    path = original.replace("\\", "/")
    base = path.rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch) not in _NAME_JUNK_CATEGORIES)
    cleaned = _shorten_name(cleaned.strip().rstrip(". "))
    if cleaned in ("", ".", ".."):
        loud.append(f"unusable name {_quoted(name)} replaced")
        return None
    if cleaned == original:
        return cleaned
    note = f"name {_quoted(name)} reduced to {_quoted(cleaned)}"
    suspicious = (
        cleaned != base.strip()
        or path.startswith("/")
        or _DRIVE.match(path) is not None
        or ".." in path.split("/")
    )
    (loud if suspicious else notes).append(note)
    return cleaned


def _shorten_name(name: str) -> str:
    if len(name) <= _MAX_FILENAME:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 10:
        return name[:_MAX_FILENAME]
    return f"{stem[: _MAX_FILENAME - len(ext) - 1]}.{ext}"


def _is_zip(filename: str, ctype: str, data: bytes) -> bool:
    if not data.startswith(b"PK"):
        return False
    lower = filename.lower()
    if lower.endswith(".zip"):
        return True
    return ctype in _ZIP_TYPES and not lower.endswith(_DOCUMENT_ZIPS)


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """Member name; utf-8 names written without the utf-8 flag are common."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
        return raw.decode("utf-8")
    except UnicodeError:
        return info.filename


def _zip_entry_count(data: bytes | SpooledData) -> int:
    """Entries in the central directory, counted without zipfile.

    zipfile builds a ZipInfo for every entry before we could refuse a
    directory of 500,000 entries; the end record may lie, so the entry
    signatures inside the directory are counted too. Only the end of the
    archive and its directory are read (an archive may be in a file).
    """
    size = len(data)
    tail_start = max(0, size - 22 - 65535)
    tail = data[tail_start:]
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or len(tail) < found + 22:
        return bytes(data[:]).count(b"PK\x01\x02")
    eocd = tail_start + found
    _, _, _, _, total, cd_size, _, _ = struct.unpack("<4s4H2LH", tail[found : found + 22])
    if total == 0xFFFF or cd_size == 0xFFFFFFFF:
        total, cd_size = _zip64_counts(bytes(data[:eocd]), eocd, total=total, cd_size=cd_size)
    start = max(0, eocd - cd_size)
    return max(total, data[start:eocd].count(b"PK\x01\x02"))


def _zip64_counts(data: bytes, eocd: int, *, total: int, cd_size: int) -> tuple[int, int]:
    record = data.rfind(b"PK\x06\x06", 0, eocd)
    if record < 0 or len(data) < record + 56:
        return total, len(data)
    fields = struct.unpack("<4sQ2H2L4Q", data[record : record + 56])
    return int(fields[7]), int(fields[8])


def _read_zip_member(
    archive_file: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    limit: int,
    max_ratio: float,
    spool: Callable[[], Path] | None = None,
) -> tuple[bytes | SpooledData, str | None]:
    """Inflate one member, stopping as soon as it passes ``limit`` bytes.

    Returns the data and None, or b"" and "over" / "ratio": the sizes in zip
    headers are whatever the sender wrote, so they are checked again here.
    ``spool``: a member that reaches ``SPOOL_DECODED_BYTES`` goes on into a
    new file of it (a ``SpooledData``) instead of memory.
    """
    chunks: list[bytes] = []
    total = 0
    sink: SpoolSink | None = None
    outcome: str | None = None
    try:
        with archive_file.open(info) as stream:
            while chunk := stream.read(_ZIP_READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    outcome = "over"
                    break
                if total > _ZIP_RATIO_FLOOR and total / max(info.compress_size, 1) > max_ratio:
                    outcome = "ratio"
                    break
                if sink is None and spool is not None and total >= bounds.SPOOL_DECODED_BYTES:
                    sink = SpoolSink(spool())
                    for kept in chunks:
                        sink.write(kept)
                    chunks.clear()
                if sink is None:
                    chunks.append(chunk)
                else:
                    sink.write(chunk)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    if outcome is not None:
        if sink is not None:
            sink.discard()
        return b"", outcome
    if sink is not None:
        return sink.done(), None
    return b"".join(chunks), None
