"""Unread ink in OCR'd text (``▒``): a value the OCR lost, told from an empty box.

The page reader marks ink that no OCR word covers (``parsers.documents.ink``).
Here: only a mark at the end of a line can be a lost value (after a label,
or alone on a value's line); marks between words are specks and go. A value
read as marks only is a doubt; marks are never part of a value.
"""

from __future__ import annotations

import re
from dataclasses import replace

from parsers.documents import DocumentText
from parsers.documents.ink import UNREAD_INK

# Marks followed, on the same line, by text: not a lost value.
_INSIDE = re.compile(rf"{UNREAD_INK}[ \t{UNREAD_INK}]*(?=[^\s{UNREAD_INK}])")
# Several marks at a line's end are one.
_RUN = re.compile(rf"{UNREAD_INK}(?:[ \t]*{UNREAD_INK})+")
# A line of marks only (with its line break), or marks ending a line.
_MARK_LINE = re.compile(rf"(?m)^[ \t]*{UNREAD_INK}[ \t{UNREAD_INK}]*(?:\n|$)")
_MARK_END = re.compile(rf"[ \t]*{UNREAD_INK}[ \t{UNREAD_INK}]*$", re.MULTILINE)


def _at_line_ends(text: str) -> str:
    return _RUN.sub(UNREAD_INK, _INSIDE.sub("", text))


def ink_at_line_ends(doc: DocumentText) -> DocumentText:
    """``doc`` with the unread-ink marks kept only where a lost value may be."""
    if not doc.ocr_pages or not any(UNREAD_INK in page for page in doc.pages):
        return doc
    return replace(
        doc,
        pages=tuple(_at_line_ends(p) for p in doc.pages),
        columns=tuple(_at_line_ends(c) for c in doc.columns),
        column_rows=tuple(
            tuple(tuple(_at_line_ends(cell) for cell in row) for row in rows)
            for rows in doc.column_rows
        ),
    )


def without_ink(raw: str) -> tuple[str, bool]:
    """``raw`` without its unread-ink marks, and whether it had any."""
    if UNREAD_INK not in raw:
        return raw, False
    text = _MARK_LINE.sub("", raw)
    text = _MARK_END.sub("", text).replace(UNREAD_INK, "")
    return text.strip("\n"), True


def only_ink(text: str) -> bool:
    """A value (or line) that is unread ink alone."""
    return UNREAD_INK in text and not text.replace(UNREAD_INK, "").strip()
