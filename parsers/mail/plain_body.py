"""The body of a plain single-part text message, read without the MIME parser.

Two thirds of an ordinary mailbox is one text/plain part: a colleague's
note, a reply. The general path parses the whole message again with the
standard library's feed parser (``structure``), asks the parsed tree for its
Content-* parameters and walks it (``walker``), to decode one payload:
``parse_message`` of a 1-2 KB note after ``read_head`` took 0.16-0.21 ms of
CPU, 0.04 ms without all that.

``read_plain_body`` reads such a message from the header fields already
scanned (``headers._Head``) and the bytes after the separator line, and
answers False for anything else: then the general path reads it. The shape
it reads is the one where the stdlib's answers can be written down exactly:

* a header block of plain fields (``Name: value`` lines and their
  continuation lines, LF or CRLF ends, no lone CR, no mbox ``From `` line),
  not cut by the header limits, followed by a blank line;
* at most one Content-Type, Content-Transfer-Encoding and
  Content-Disposition field, ASCII, none over the MIME header bound;
* Content-Type absent or ``text/plain`` with only ``charset``, ``format``,
  ``delsp`` or ``reply-type`` parameters (plain tokens, optionally
  quoted), the charset absent or one of utf-8, us-ascii, iso-8859-1,
  iso-8859-15 or windows-1252 (under any alias Python knows);
* Content-Disposition absent or a bare ``inline``;
* any transfer encoding but uuencode (read as the stdlib reads it: its
  value is compared unstripped, so ``base64 `` is no base64);
* a message shorter than the base64-run elision threshold
  (``structure._ELIDE_MIN_BYTES``), so no part of it is elided and no text
  budget can be reached.

For what it reads, the ``ParsedMail`` is the general path's, warnings
included; ``tests/test_plain_body.py`` checks this on generated messages and
on the golden, hostile, seed, mutated and bench corpora.
"""

from __future__ import annotations

import functools
import quopri
import re
from email._encoded_words import decode_b
from typing import TYPE_CHECKING

from parsers.mail.body import _detect_forward
from parsers.mail.bounds import _MAX_MIME_HEADER
from parsers.mail.charsets import _clean_text, _codec_for, _decode_bytes
from parsers.mail.headers import _Field, _Head
from parsers.mail.report import _Draft, _Report
from parsers.mail.structure import _ELIDE_MIN_BYTES
from parsers.mail.walker import _defect_text

if TYPE_CHECKING:
    from parsers.rules import ParseLimits

# Turned off by the tests to compare with the general path.
PLAIN_BODY = True

# Header lines the stdlib feed parser reads as this module does: a field name
# right before its colon (so no mbox ``From `` line: a name has no space),
# then continuation lines; every line ends in LF or CRLF (the stdlib also
# splits on a lone CR).
_PLAIN_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]++:[^\r\n]*+\r?\n(?:[ \t][^\r\n]*+\r?\n)*+)*+")
# Where the stdlib strips white space (``str.strip``), the only white space a
# plain block can hold there.
_WS = r"[ \t\r\n]*"
_WORD = r"[A-Za-z0-9._+-]+"
_PLAIN_PARAM = (
    rf";{_WS}(?P<name>charset|format|delsp|reply-type){_WS}={_WS}"
    rf"(?P<value>{_WORD}|\"{_WORD}\"){_WS}"
)
_PLAIN_TYPE = re.compile(
    rf"{_WS}text/plain{_WS}(?P<params>(?:{_PLAIN_PARAM})*)(?:;{_WS})?", re.I | re.ASCII
)
_PARAM = re.compile(_PLAIN_PARAM, re.I | re.ASCII)
_INLINE = re.compile(rf"{_WS}inline{_WS}", re.I | re.ASCII)
# Python codec names (``charsets._codec_for``) of the charsets read here.
_PLAIN_CODECS = frozenset({"utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252"})
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_MIME_KEYS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})


def read_plain_body(
    data: bytes, head: _Head, *, limits: ParseLimits, report: _Report, draft: _Draft
) -> bool:
    """Fill ``draft`` with the body of a plain single-part text message; False if not one.

    ``data`` is the whole message and ``head`` its scanned header block.
    Nothing is written when the answer is False.
    """
    if not PLAIN_BODY:
        return False
    read = _plain_text(data, head)
    if read is None:
        return False
    text, warnings = read
    for warning in warnings:
        report.warn(warning)
    # What ``body._read_body`` does with the one text part of ``walker``.
    outer_text = text.strip("\n") if text.strip() else ""
    draft.attachments = []
    _detect_forward(outer_text, [], limits=limits, report=report, draft=draft)
    draft.content_types = ("text/plain",)
    # At most 64 KB of bytes make at most 6 characters each (NFC triples a
    # character at most, U+2029 becomes two): far below MAX_TEXT_CHARS.
    draft.text = outer_text
    return True


def _plain_text(data: bytes, head: _Head) -> tuple[str, list[str]] | None:
    """The decoded text of the one part and the walker's warnings, or None if not plain."""
    if head.trimmed is not None or len(data) >= _ELIDE_MIN_BYTES:
        return None
    # The Content-* fields first: they turn most other mail away cheaply.
    values = _mime_values(head.fields)
    if values is None:
        return None
    plain, declared = _plain_charset(values.get("content-type"))
    if not plain:
        return None
    disposition = values.get("content-disposition")
    if disposition is not None and _INLINE.fullmatch(disposition) is None:
        return None
    # ``Message.get_payload(decode=True)``: the value as written, lower-cased.
    cte = values.get("content-transfer-encoding", "").lower()
    if cte in _UUENCODE:
        return None
    end = head.end
    if data.startswith(b"\r\n", end):
        start = end + 2
    elif data.startswith(b"\n", end):
        start = end + 1
    else:
        return None  # no blank line after the headers (or none at all)
    if _PLAIN_BLOCK.fullmatch(data, 0, end) is None:
        return None
    payload = data[start:]
    defects: list[object] = []
    if cte == "quoted-printable":
        payload = quopri.decodestring(payload)
    elif cte == "base64":
        payload, defects = decode_b(b"".join(payload.splitlines()))
    warnings: list[str] = []
    text, problem, used = _decode_bytes(payload, declared)
    if problem and payload:
        warnings.append(f"{problem} in part 1; decoded as {used}")
    warnings.extend(f"part 1 (text/plain): {_defect_text(d)}" for d in defects[:5])
    return _clean_text(text), warnings


def _mime_values(fields: tuple[_Field, ...]) -> dict[str, str] | None:
    """Content-Type, -Transfer-Encoding and -Disposition as the stdlib stores them.

    None when one is repeated or not ASCII, or when any Content-* field is
    long enough for the MIME parser's budget to cut it.
    """
    values: dict[str, str] = {}
    for item in fields:
        key = item.key
        if not key.startswith("content-"):
            continue
        if len(item.line) > _MAX_MIME_HEADER:
            return None
        if key not in _MIME_KEYS:
            continue
        if key in values or not item.line.isascii():
            return None
        # ``policy.header_source_parse``: blanks after the colon and the
        # last line end dropped, continuation lines kept as they are.
        raw = item.line.partition(b":")[2]
        values[key] = raw.lstrip(b" \t").rstrip(b"\r\n").decode("ascii")
    return values


@functools.lru_cache(maxsize=64)
def _plain_charset(content_type: str | None) -> tuple[bool, str | None]:
    """(plain, ``get_content_charset()``) of a part with this Content-Type value.

    ``plain`` is False when the value is not a plain text/plain one. Cached:
    a mailbox's mail carries a handful of distinct values.
    """
    if content_type is None:
        return True, None  # text/plain by default, no charset
    found = _PLAIN_TYPE.fullmatch(content_type)
    if found is None:
        return False, None
    params = [(m["name"].lower(), m["value"]) for m in _PARAM.finditer(found["params"])]
    names = [name for name, _ in params]
    if len(set(names)) != len(names):
        return False, None  # the stdlib takes the first: not worth a rule of ours
    charset = dict(params).get("charset")
    if charset is None:
        return True, None
    charset = charset.strip('"').lower()
    return _codec_for(charset) in _PLAIN_CODECS, charset
