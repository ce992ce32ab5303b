"""The readers of plain-text attachments and of kinds we do not read."""

from __future__ import annotations

import re
from dataclasses import replace

from parsers.documents.kinds import _safe_name
from parsers.documents.model import MAX_PAGE_CHARS, DocumentLimits, DocumentText, _warn
from parsers.text import nfc

# --------------------------------------------------------------------------
# Plain text and others


def _read_text(doc: DocumentText, data: bytes, *, limits: DocumentLimits, tess: str | None):
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if re.search(r"<(html|body|p|div|table)\b", text[:5000], re.I):
        text = re.sub(r"<(br|/p|/div|/tr|/h\d)\b[^>]*>", "\n", text, flags=re.I)
        text = re.sub(r"<(td|th)\b[^>]*>", "\t", text, flags=re.I)
        text = re.sub(r"<[^>]+>", "", text)
    text = nfc(text.replace("\r\n", "\n").replace("\r", "\n"))[:MAX_PAGE_CHARS]
    return replace(doc, pages=(text,), page_count=1, tables=((),))


def _read_other(doc: DocumentText, data: bytes, *, limits: DocumentLimits, tess: str | None):
    name = _safe_name(doc.filename)
    reasons = {
        "empty": "empty file (0 bytes)",
        "ole": "Word/Excel 97-2003 format is not read; please send PDF or DOCX",
        "rtf": "RTF is not read; please send PDF or DOCX",
        "odf": "OpenDocument format is not read; please send PDF or DOCX",
        "xlsx": "spreadsheet not read",
        "zip": "archive not read here (unpacked with the message)",
    }
    return _warn(doc, f"{name}: {reasons.get(doc.detected, 'unknown file type, not read')}")
