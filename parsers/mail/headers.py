"""The header block, found and cut at byte level before any parser sees it.

One regex pass finds where the headers end (as the stdlib feed parser
would); the block is cut to ``max_header_bytes`` and ``max_header_count``
while the MIME fields the body needs are rescued.

Callers that only need a few headers of a message they do not analyse
(intake's ledger rows for old mail, the digest's list of unknown server
messages) use ``header_block`` (the block, cheaply), ``read_headers`` (the
fields as the standard library reads them) and ``header_text`` (a value with
its RFC 2047 words decoded).
"""

from __future__ import annotations

import email.parser
import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from typing import TYPE_CHECKING

from parsers.mail.bounds import _MAX_MIME_HEADER, _MAX_RAW_HEADER_VALUE
from parsers.mail.charsets import _decode_words, _quoted
from parsers.mail.report import _Report
from parsers.text import header_safe

if TYPE_CHECKING:
    from parsers.rules import ParseLimits


def header_block(raw: bytes) -> bytes:
    """The header block of ``raw`` (the lines before the body), for callers needing headers only.

    ``email``'s header-only parsers still read the whole message (decoded to
    str, split into lines: 7 times its size, 266 MB for a 36 MB message);
    given this block they find the same header fields.
    """
    return raw[: _head_end(raw)]


def head_ends_within(prefix: bytes | bytearray) -> bool:
    """Whether ``header_block`` finds the same block in ``prefix`` as in any message that
    starts with ``prefix``: its end is the first line feed not followed by a
    header line, a test that looks no further than the next line, so the end
    is decided once a whole line follows it.
    """
    found = _END_OF_HEAD.search(prefix)
    return found is not None and prefix.find(b"\n", found.start() + 1) >= 0


def read_headers(data: bytes) -> Message:
    """The header fields of ``data`` as the standard library reads them.

    ``email``'s header parser under ``compat32``: values are plain strings
    (``Header`` objects for 8-bit bytes), RFC 2047 words are left encoded
    (see ``header_text``) and malformations become defects, never errors.
    ``data`` is a whole message or its ``header_block``; on a big message
    give the block, the parser splits every line of what it is given.
    """
    return email.parser.BytesHeaderParser(policy=compat32).parsebytes(data)


def header_text(value: object) -> str:
    """A header value of ``read_headers`` as text, its RFC 2047 words decoded.

    "" when the header is absent (None); the value as it stands when its
    encoded words cannot be decoded (unknown charset, bad base64 or bytes).
    """
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError, HeaderParseError):
        return str(value)


# --------------------------------------------------------------------------
# Header block: found and cut at byte level, before any parser sees it
# --------------------------------------------------------------------------

# What the stdlib feed parser accepts as a header line (email.feedparser).
_HEADER_LINE = rb"(?:From |[\x21-\x39\x3b-\x7e]*:|[\t ])"
_HEADER_LINE_RE = re.compile(_HEADER_LINE)
_END_OF_HEAD = re.compile(rb"\n(?!" + _HEADER_LINE + rb")")
_FIELD_END = re.compile(rb"\n(?![ \t])")
_MIME_FIELD_RE = re.compile(
    rb"^(?:content-type|content-transfer-encoding|mime-version)[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*\n?",
    re.I | re.M,
)
_MIME_FIELDS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})


@dataclass(frozen=True)
class _Field:
    """One header field: its name as written and its raw, folded value."""

    name: str
    value: bytes
    line: bytes = b""
    # The name in lower case: looked up for every field read (``_first``).
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.name.lower())


_NEW = object.__new__


@dataclass(frozen=True)
class _Head:
    fields: tuple[_Field, ...]
    # Offset where the header block ends (the separator line starts here).
    end: int
    # The header block to parse instead of data[:end] when it was cut.
    trimmed: bytes | None


def _scan_head(data: bytes, limits: ParseLimits, report: _Report) -> _Head:
    """Find the header block and keep what fits the header limits."""
    end = _head_end(data)
    block = data[:end]
    total = _count_fields(block)
    too_big = len(block) > limits.max_header_bytes
    too_many = total > limits.max_header_count
    if not (too_big or too_many):
        return _Head(_all_fields(block), end, None)
    if too_big:
        report.over(
            f"header block is {len(block)} bytes, over the limit of {limits.max_header_bytes}; "
            "long fields were cut and the rest ignored"
        )
    if too_many:
        report.over(
            f"{total} header fields, over the limit of {limits.max_header_count}; "
            f"kept the first {limits.max_header_count}"
        )
    kept = _fields_within(block, limits, report)
    rescued = _rescue_mime_fields(kept, block)
    trimmed = b"".join(f.line for f in (*kept, *rescued))
    return _Head(tuple(kept), end, trimmed)


def _head_end(data: bytes) -> int:
    """Offset just after the last header line (0 when there are no headers)."""
    # A first line that starts with a blank is a header line to the standard
    # library too (a continuation with nothing to continue: dropped as a
    # defect), and the fields after it are read: so are they here.
    if not _HEADER_LINE_RE.match(data):
        return 0
    found = _END_OF_HEAD.search(data)
    return found.start() + 1 if found else len(data)


def _count_fields(block: bytes) -> int:
    """Number of header fields, counted without splitting the block."""
    lines = block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)
    return lines - block.count(b"\n ") - block.count(b"\n\t")


def _field_spans(block: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each field, continuation lines included."""
    pos = 0
    if block.startswith(b"From "):  # mbox envelope line, not a header
        pos = block.find(b"\n") + 1 or len(block)
    # One scan of the block for all the field ends (not one search a field).
    for found in _FIELD_END.finditer(block, pos):
        stop = found.end()
        yield pos, stop
        pos = stop
    if pos < len(block):
        yield pos, len(block)


def _all_fields(block: bytes) -> tuple[_Field, ...]:
    """``_make_field`` of each span of ``_field_spans``: every field of the block.

    Most blocks are one field a line (no continuation, no mbox line, the
    last line ended): split at once, each line's field built by
    ``_split_field`` (or kept from an earlier block, ``_line_field``).
    """
    if (
        b"\n " in block
        or b"\n\t" in block
        or block.startswith((b"From ", b" ", b"\t"))
        or not block.endswith(b"\n")
    ):
        fields = [_make_field(block[start:stop]) for start, stop in _field_spans(block)]
        return tuple([f for f in fields if f is not None])
    lines = block.split(b"\n")
    lines.pop()  # what follows the last line end: nothing
    fields = [
        _line_field(line) if len(line) <= _SHORT_LINE else _split_field(line) for line in lines
    ]
    return tuple([item for item in fields if item is not None])


def _split_field(line: bytes) -> _Field | None:
    """The field of one line (without its line end) of a block without continuations.

    ``_make_field`` of the line ended, its value's end stripped without the
    line end (``_make_field`` strips spaces and tabs from a value that
    still ends with it, so only from its start).
    """
    name, colon, value = line.partition(b":")
    name = name.strip()
    if not (colon and name):
        return None
    item = _NEW(_Field)
    attributes = item.__dict__  # as in _new_field
    attributes["name"] = text = name.decode("ascii", "replace")
    attributes["value"] = value.lstrip(b" \t").rstrip(b"\r\n")
    attributes["line"] = line + b"\n"
    attributes["key"] = text.lower()
    return item


# Most lines of a header block come back message after message (To, From,
# MIME-Version, Content-Type of plain text, List-Id, Precedence): a field is
# frozen, of strings and bytes, so one serves every block holding its line.
# Only short lines are kept; ``tests/test_head_speed2.py`` compares.
_SHORT_LINE = 1024
_line_field = functools.lru_cache(maxsize=1024)(_split_field)


def _fields_within(block: bytes, limits: ParseLimits, report: _Report) -> list[_Field]:
    """The first fields that fit the count and byte limits.

    A long field is cut to an eighth of the byte limit rather than allowed to
    push out the small fields after it (From, Subject) that we need.
    """
    cap = max(1024, limits.max_header_bytes // 8)
    kept: list[_Field] = []
    used = 0
    for seen, (start, stop) in enumerate(_field_spans(block)):
        if len(kept) >= limits.max_header_count or seen > 4 * limits.max_header_count:
            break
        item = _make_field(block[start : min(stop, start + cap)])
        if item is None:
            continue
        if stop - start > cap:
            item = _cut_partial_field(item)
            name = _quoted(item.name, 40)
            report.warn(f"header field {name} of {stop - start} bytes cut to {cap}")
        if used + len(item.line) > limits.max_header_bytes:
            continue
        kept.append(item)
        used += len(item.line)
    return kept


def _make_field(line: bytes) -> _Field | None:
    name, colon, value = line.partition(b":")
    name = name.strip()
    if not colon or not name or line[:1] in (b" ", b"\t"):
        return None
    return _new_field(
        name.decode("ascii", "replace"),
        value.strip(b" \t").rstrip(b"\r\n"),
        line if line[-1:] == b"\n" else line + b"\n",
    )


def _new_field(name: str, value: bytes, line: bytes) -> _Field:
    """``_Field(name, value, line)``, built at a third of the cost.

    A frozen dataclass sets each attribute through ``object.__setattr__``
    and ``__post_init__`` once more for ``key``; every header field of every
    message is built here, so the instance dict is filled directly (the
    attributes, and so equality, hash and repr, are the same).
    """
    item = _NEW(_Field)
    attributes = item.__dict__
    attributes["name"] = name
    attributes["value"] = value
    attributes["line"] = line
    attributes["key"] = name.lower()
    return item


def _cut_partial_field(item: _Field) -> _Field:
    """A field cut by the byte limit: end address lists on a whole address."""
    value = item.value
    if item.key in _ADDRESS_FIELDS and b"," in value:
        value = value[: value.rfind(b",")]
    line = item.name.encode("ascii", "replace") + b": " + value + b"\n"
    return _Field(item.name, value, line)


def _rescue_mime_fields(kept: list[_Field], block: bytes) -> list[_Field]:
    """Content-Type and friends found among the ignored headers.

    Without them a multipart message would be read as one text part, and the
    attachments lost, only because some other header was huge.
    """
    have = {f.key for f in kept}
    rescued: list[_Field] = []
    if have.issuperset(_MIME_FIELDS):
        return rescued
    for match in _MIME_FIELD_RE.finditer(block):
        item = _make_field(match.group(0))
        if item and item.key not in have and len(item.line) <= _MAX_MIME_HEADER:
            rescued.append(item)
            have.add(item.key)
    return rescued


_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def _unfold(value: bytes) -> bytes:
    """RFC 5322 unfolding; any other line break becomes a space."""
    if b"\n" not in value and b"\r" not in value:
        return value  # one line: most values
    value = _FOLD.sub(b"", value)
    return value.replace(b"\r", b" ").replace(b"\n", b" ")


def _header_text(value: bytes) -> tuple[str, str | None]:
    """Raw header bytes as text: utf-8, else cp1252, else latin-1 (named)."""
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        return value.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return value.decode("latin-1"), "latin-1"


def _field_text(item: _Field, report: _Report | None = None, label: str = "") -> str:
    """A header value as decoded text (unfolded, RFC 2047 words decoded)."""
    value = _unfold(item.value[:_MAX_RAW_HEADER_VALUE])
    text, fallback = _header_text(value)
    if fallback and report is not None:
        report.warn(f"8-bit bytes in {label} are not utf-8; decoded as {fallback}")
    return _decode_words(text, report, label)


def _safe_text(text: str, max_length: int) -> str:
    """``header_safe(text, max_length=max_length)``, without its two substitutions when idle.

    ``header_safe`` replaces unsafe characters and runs of white space with
    one space, strips and cuts. In a printable string the only white space
    is the ASCII space and no unsafe character is left (``str.isprintable``
    refuses every other separator and control character): without two
    spaces in a row or one at either end there is nothing to replace.
    """
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text[:max_length]
    return header_safe(text, max_length=max_length)


def _plain_texts(fields: tuple[_Field, ...]) -> list[str] | None:
    """``_plain_text`` of every field when all of them are plain and in NFC, else None.

    Checked once on the values joined by spaces: utf-8 (a space cannot be
    part of a multi-byte character: the whole decodes only if each value
    does), printable (so no line break: unfolding changes nothing), no
    encoded word (a space cannot be part of one) and no two spaces in a
    row nor one at either end (so none inside a value or at its ends, and
    no empty value). Each value's text is then the decoded value, cut.
    """
    values = [item.value for item in fields]
    joined = b" ".join(values)
    if len(joined) > _MAX_RAW_HEADER_VALUE:
        return None
    try:
        text = joined.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.isprintable() or "  " in text or "=?" in text or text.strip() != text:
        return None
    texts = [value.decode("utf-8") for value in values]
    if not text.isascii():
        for text in texts:
            if not text.isascii() and not unicodedata.is_normalized("NFC", text):
                return None
    return texts


def _plain_text(value: bytes, max_length: int) -> str | None:
    """``_safe_text(nfc(_field_text(item)), max_length)`` of a plain value, else None.

    Plain: one line of utf-8 within ``_MAX_RAW_HEADER_VALUE`` bytes, no
    encoded word; its text is the decoded value (NFC unless ASCII), which
    ``_field_text`` leaves as it is and no problem of which it reports.
    """
    if len(value) > _MAX_RAW_HEADER_VALUE:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "=?" in text:
        return None
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if text.isprintable() and "  " not in text and text.strip() == text:
        return text[:max_length]  # as _safe_text
    if "\n" in text or "\r" in text:
        return None  # to unfold first
    return header_safe(text, max_length=max_length)


def _first(fields: tuple[_Field, ...] | list[_Field], key: str) -> _Field | None:
    return next((f for f in fields if f.key == key), None)


def _declared_content_type(fields: tuple[_Field, ...]) -> str:
    for item in fields:  # the first Content-Type (``_first``, without its generator)
        if item.key == "content-type":
            value = item.value
            if len(value) <= _SHORT_LINE:
                return _declared_type_short(value)
            return _declared_type(value)
    return "text/plain"


def _declared_type(value: bytes) -> str:
    text = _header_text(_unfold(value[:_MAX_MIME_HEADER]))[0]
    return _clean_content_type(text.split(";", 1)[0])


# String methods and patterns alone: the types of short values are kept (a
# plain text part's Content-Type comes back message after message).
_declared_type_short = functools.lru_cache(maxsize=256)(_declared_type)


_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "reply-to"})
_CONTENT_TYPE_OK = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


def _clean_content_type(ctype: object) -> str:
    text = str(ctype).strip().lower()[:100]
    return text if _CONTENT_TYPE_OK.fullmatch(text) else "application/octet-stream"
