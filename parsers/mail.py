"""Read one raw e-mail into a ``ParsedMail``, whatever arrives.

Everything that reaches the Smart City mailboxes is untrusted. The contract
(``docs/reliability.md``, "Untrusted input") is that reading a message
never raises on bad input, never hangs and uses bounded memory: each
malformation becomes a short English warning and each exceeded limit also
sets ``over_limits`` so the message goes to staff review. The limits come
from ``ParseLimits`` and are checked before the work they protect.

Who does what, and why
----------------------
* Our own byte-level code runs first. It measures the raw message, finds the
  header block with one regex pass, cuts it to ``max_header_bytes`` and
  ``max_header_count``, and decides whether the body is read at all
  (``max_message_bytes``, and a line count: the stdlib parser costs about
  60 bytes of memory per line).
* mail-parser (``MailParser._reset``, see ``_HeaderView``) reads the address headers
  (From, To, Cc, Reply-To: RFC 2047 display names, recovery of broken address
  lists, defect reports) and the Date header (strict RFC 5322 reading with
  diagnostics). It is only given a small header block we built: on a whole
  message it walks every part without a limit, re-encodes every attachment
  in base64 (2.3 times the memory), names nameless attachments at random,
  and decodes 8-bit headers and bodies silently (``Candidature B\\xe9thune``
  came out as ``Candidature Bthune``, cp1252 bodies as replacement
  characters). Its logging is silenced during our calls only.
* The stdlib ``email`` package with ``policy.compat32`` parses the MIME
  structure. compat32 keeps header values as plain strings (``policy.default``
  runs its header parser on every access, slow on hostile input) and records
  malformations as defects instead of raising. The data is fed in chunks
  through a message factory that counts parts and nesting depth and stops the
  parser at the limit: 100,000 parts or 2,000 nested multiparts would
  otherwise exhaust memory or the recursion limit. MIME header values are cut
  to 8 KB because its parameter parser is quadratic (64 KB of quoted ``;``
  takes 2 s). Long runs of base64 lines are not fed to it: a placeholder
  line stands in their place and the attachment is decoded from the raw
  bytes window by window (``_Elided``), so a 30 MB attachment costs its
  decoded size instead of 5.5 times the message.
* Our own code decodes text (declared charset, then utf-8, cp1252, latin-1),
  RFC 2047 words in the subject and file names, so that every fallback is
  named in a warning.
* ``html.parser`` turns HTML into text, but is only fed complete tags and text
  cut by a linear regex: on Python 3.11.7 it is quadratic on unterminated
  markup (``"<a" * 500_000`` did not finish in five minutes).
* ``zipfile`` lists archives from memory after we counted the central
  directory ourselves, and members are streamed with a byte budget.

Nothing here touches the disk or the network: file names are data only.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import contextvars
import functools
import hashlib
import io
import logging
import re
import secrets
import struct
import threading
import unicodedata
import warnings
import zipfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import compat32
from html.parser import HTMLParser
from types import MappingProxyType
from typing import TYPE_CHECKING

import mailparser
from mailparser.utils import get_addresses

from parsers.errors import MailParseError
from parsers.text import fold, header_safe, nfc
from parsers.types import Attachment, ParsedMail

if TYPE_CHECKING:
    from parsers.rules import ParseLimits

__all__ = ["MAX_TEXT_CHARS", "header_block", "parse_message"]

# Longest plain text we hand on (characters): detection and field reading
# need the first pages of a letter, not a novel.
MAX_TEXT_CHARS = 1_000_000
# Bytes of one text part we decode: enough for MAX_TEXT_CHARS of any charset.
_MAX_TEXT_BYTES = 4 * MAX_TEXT_CHARS
# HTML characters converted per message; linear but pure Python (~1 s/MB
# for hostile markup).
_MAX_HTML_CHARS = 1_000_000
_MAX_WARNINGS = 100
# Characters kept per header value in ParsedMail.headers.
_MAX_HEADER_VALUE = 2000
# Raw bytes of one header value we decode: RFC 2047 words are longer than
# their text, and the decoders are not linear on pathological input.
_MAX_RAW_HEADER_VALUE = 16 * 1024
# Content-* values are parsed by the stdlib's quadratic parameter parser.
_MAX_MIME_HEADER = 8 * 1024
_MAX_FILENAME = 200
_MAX_REFERENCES = 100
# The stdlib parser recurses once per nested part; stay far from the
# interpreter's recursion limit whatever max_nesting_depth says.
_MAX_STRUCTURE_DEPTH = 200
_FEED_CHUNK = 8192
# Small files compress well legitimately: the ratio test starts above this.
_ZIP_RATIO_FLOOR = 1 << 20
_ZIP_READ_CHUNK = 64 * 1024
# A forwarding note longer than this is a message of its own, not a forward.
_SHORT_FORWARD_NOTE = 2000

_QUIET = contextvars.ContextVar("parsers_mail_quiet", default=False)
# warnings.catch_warnings swaps process-wide state: two threads doing it at
# once can leave the filters broken for good, so our calls take turns.
_WARNINGS_LOCK = threading.Lock()


class _QuietFilter(logging.Filter):
    """Drop mail-parser's records while one of our calls is running."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _QUIET.get()


for _logger_name in ("mailparser", "mailparser.core", "mailparser.utils"):
    logging.getLogger(_logger_name).addFilter(_QuietFilter())


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def parse_message(raw: bytes, *, limits: ParseLimits) -> ParsedMail:
    """Read ``raw`` (one RFC 5322 message) into a ``ParsedMail``.

    Never raises on malformed or hostile content: problems are listed in
    ``warnings`` and an exceeded limit also sets ``over_limits``:

    * ``max_message_bytes``: only the headers are read (no text, no
      attachments); ``content_types`` holds the declared top-level type.
    * ``max_header_bytes`` / ``max_header_count``: fields longer than an
      eighth of the byte limit are cut, then the first fields that fit are
      kept; Content-Type found further down is still used for the body.
    * ``max_recipients``: the first N addresses of To then Cc are kept.
    * ``max_mime_parts``: parsing stops at the N-th part; what came before
      is used.
    * ``max_nesting_depth``: attached messages deeper than N are not read.
    * ``max_attachments``: the first N attachments (zip members included).
    * ``max_attachment_bytes``: ``data`` is b"" (``sha256`` is that of
      ``data``), ``size`` the real size, a warning on the attachment.
    * ``max_zip_members`` / ``max_zip_expanded_bytes`` / ``max_zip_ratio``:
      the archive is kept but not expanded (all or nothing); the byte budget
      is shared by all archives of the message.

    Raises ``MailParseError`` only for an empty input, and ``TypeError``
    when ``raw`` is not bytes (a programming error, not bad mail).
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"raw must be bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    if not raw:
        raise MailParseError("empty message: there is nothing to parse")
    report = _Report()
    draft = _Draft(sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    with _quiet_libraries(report):
        try:
            _read_message(raw, limits, report, draft)
        except Exception as exc:  # last resort: keep what was read so far
            report.over(
                f"internal error while reading the message ({type(exc).__name__}); "
                "parts of it were not read"
            )
    return draft.build(report)


def header_block(raw: bytes) -> bytes:
    """The header block of ``raw`` (the lines before the body), for callers needing headers only.

    ``email``'s header-only parsers still read the whole message (decoded to
    str, split into lines: 7 times its size, 266 MB for a 36 MB message);
    given this block they find the same header fields.
    """
    return raw[: _head_end(raw)]


@contextlib.contextmanager
def _quiet_libraries(report: _Report) -> Iterator[None]:
    """Silence mail-parser's logging and turn Python warnings into ours."""
    token = _QUIET.set(True)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        _QUIET.reset(token)
    for item in caught[:10]:
        report.warn(f"library warning: {item.category.__name__}: {item.message}")


# --------------------------------------------------------------------------
# Results being built
# --------------------------------------------------------------------------


class _Report:
    """Warnings (deduplicated, capped) and the over-limits flag."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.over_limits = False
        self._seen: set[str] = set()
        self._hidden = 0

    def warn(self, text: str) -> None:
        text = header_safe(text, max_length=300)
        if text in self._seen:
            return
        if len(self.items) >= _MAX_WARNINGS:
            self._hidden += 1
            return
        self._seen.add(text)
        self.items.append(text)

    def over(self, text: str) -> None:
        self.over_limits = True
        self.warn(text)

    def result(self) -> tuple[str, ...]:
        if self._hidden:
            return (*self.items, f"{self._hidden} more warnings not shown")
        return tuple(self.items)


@dataclass
class _Draft:
    """The fields of the ParsedMail, filled in stage by stage."""

    sha256: str
    size: int
    message_id: str | None = None
    subject: str = ""
    sender: str = ""
    sender_name: str = ""
    from_address: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: str | None = None
    return_path: str | None = None
    date: datetime | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    content_types: tuple[str, ...] = ()
    forwarded: bool = False

    def build(self, report: _Report) -> ParsedMail:
        return ParsedMail(
            sha256=self.sha256,
            size=self.size,
            message_id=self.message_id,
            subject=self.subject,
            sender=self.sender,
            sender_name=self.sender_name,
            from_address=self.from_address,
            to=self.to,
            cc=self.cc,
            reply_to=self.reply_to,
            return_path=self.return_path,
            date=self.date,
            in_reply_to=self.in_reply_to,
            references=self.references,
            headers=MappingProxyType(dict(self.headers)),
            text=self.text,
            attachments=tuple(self.attachments),
            content_types=self.content_types,
            forwarded=self.forwarded,
            warnings=report.result(),
            over_limits=report.over_limits,
        )


def _read_message(raw: bytes, limits: ParseLimits, report: _Report, draft: _Draft) -> None:
    """All the stages, in the order that keeps the cheap checks first."""
    data = raw
    if b"\n" not in data and b"\r" in data:
        # Old Mac line ends: our byte scans split on LF only.
        data = data.replace(b"\r", b"\n")
    head = _scan_head(data, limits, report)
    _read_envelope(head.fields, limits, report, draft)
    if not _body_within_limits(data, limits, report):
        draft.content_types = (_declared_content_type(head.fields),)
        return
    budget = _Budget(limits)
    if head.trimmed is None:
        root = _parse_structure(data, budget)
    else:
        # The cut header block, then the body read in place (no copy of it).
        root = _parse_structure(data, budget, prefix=head.trimmed, start=head.end)
    _report_budget(budget, limits, report)
    if root is None:
        report.warn("no MIME structure could be read")
        return
    _read_body(root, budget, limits, report, draft)


def _body_within_limits(data: bytes, limits: ParseLimits, report: _Report) -> bool:
    """Size checks made before any MIME parsing."""
    if len(data) > limits.max_message_bytes:
        report.over(
            f"message is {len(data)} bytes, over the limit of {limits.max_message_bytes}; "
            "only the headers were read"
        )
        return False
    lines = data.count(b"\n")
    line_budget = max(1_000_000, limits.max_message_bytes // 32)
    if lines > line_budget:
        report.over(
            f"message has {lines} lines, over the limit of {line_budget}; "
            "only the headers were read"
        )
        return False
    return True


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

    @property
    def key(self) -> str:
        return self.name.lower()


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
        fields = (_make_field(block[start:stop]) for start, stop in _field_spans(block))
        return _Head(tuple(f for f in fields if f is not None), end, None)
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
    if not _HEADER_LINE_RE.match(data) or data[:1] in (b" ", b"\t"):
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
    while pos < len(block):
        found = _FIELD_END.search(block, pos)
        stop = found.end() if found else len(block)
        yield pos, stop
        pos = stop


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
            report.warn(f"header field {_q(item.name, 40)} of {stop - start} bytes cut to {cap}")
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
    return _Field(
        name=name.decode("ascii", "replace"),
        value=value.strip(b" \t").rstrip(b"\r\n"),
        line=_ensure_newline(line),
    )


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


def _ensure_newline(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def _unfold(value: bytes) -> bytes:
    """RFC 5322 unfolding; any other line break becomes a space."""
    value = re.sub(rb"\r?\n(?=[ \t])", b"", value)
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


def _first(fields: tuple[_Field, ...] | list[_Field], key: str) -> _Field | None:
    return next((f for f in fields if f.key == key), None)


def _declared_content_type(fields: tuple[_Field, ...]) -> str:
    item = _first(fields, "content-type")
    if item is None:
        return "text/plain"
    text = _header_text(_unfold(item.value[:_MAX_MIME_HEADER]))[0]
    return _clean_content_type(text.split(";", 1)[0])


# --------------------------------------------------------------------------
# RFC 2047 encoded words and charsets
# --------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([qQbB])\?([^?\s]*)\?=")
# Names mail software uses that Python does not know, or knows differently.
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "windows-874": "cp874",
    "x-user-defined": "latin-1",
    "unknown-8bit": "",
    "x-unknown": "",
}
_CHARSET_NAME = re.compile(r"[a-z0-9][a-z0-9._:+-]{0,39}")
# Real codecs that are no charset: they interpret escapes or always fail.
_REFUSED_CODECS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined", "mbcs", "oem"}
)


def _decode_words(text: str, report: _Report | None, label: str) -> str:
    """Decode RFC 2047 words; white space between two words is dropped."""
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0
    previous_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        if not (previous_was_word and not between.strip()):
            out.append(between)
        out.append(_decode_word(match, report, label))
        pos = match.end()
        previous_was_word = True
    out.append(text[pos:])
    return "".join(out)


def _decode_word(match: re.Match[str], report: _Report | None, label: str) -> str:
    charset = match.group(1).split("*", 1)[0]
    payload = match.group(3).encode("utf-8", "replace")
    try:
        if match.group(2) in "bB":
            data = _lenient_b64decode(payload)
        else:
            data = binascii.a2b_qp(payload, header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    text, problem, used = _decode_bytes(data, charset)
    if problem and report is not None:
        report.warn(f"{problem} in {label}; decoded as {used}")
    return text


def _lenient_b64decode(payload: bytes) -> bytes:
    """Base64 the way mail clients read it: bad characters and padding ignored."""
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", payload)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))


def _codec_for(declared: str) -> str | None:
    """Python codec name for a MIME charset, or None when unknown or refused."""
    name = declared.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not _CHARSET_NAME.fullmatch(name):
        return None  # codecs.lookup raises ValueError on a NUL, for one
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def _decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None, str]:
    """Decode text bytes; returns (text, problem or None, what was used).

    Declared charset first; then utf-8; then utf-8 with replacement when the
    bytes are mostly valid utf-8; then cp1252; then latin-1, which never
    fails.
    """
    if not declared:
        codec, problem = "utf-8", "8-bit text without a declared charset"
    else:
        codec = _codec_for(declared)
        problem = f"unknown charset {_q(declared, 40)}"
        if codec is not None:
            problem = f"bytes not valid in the declared charset {_q(declared, 40)}"
    if codec is not None:
        try:
            return data.decode(codec), None, codec
        except (UnicodeError, LookupError, ValueError):
            pass
    text, used = _fallback_decode(data)
    return text, problem, used


def _fallback_decode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    replaced = data.decode("utf-8", "replace")
    bad = replaced.count("\ufffd")
    good = len(replaced) - len(replaced.encode("ascii", "ignore")) - bad
    if good > bad:
        return replaced, "utf-8 with replacement characters"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _q(text: str, limit: int = 80) -> str:
    """Quote untrusted text for a warning: one line, bounded."""
    return "'" + header_safe(text, max_length=limit) + "'"


# Characters never kept in body text: C0/C1 controls but tab and newline,
# and lone surrogates left by lax codecs.
_TEXT_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    return nfc(_TEXT_JUNK.sub("", text))


# --------------------------------------------------------------------------
# Envelope: addresses, subject, identifiers, date
# --------------------------------------------------------------------------

_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "reply-to"})
_MAILPARSER_FIELDS = _ADDRESS_FIELDS | {"date"}
_MESSAGE_ID = re.compile(r"<[^<>]+>")
_ADDRESS_OK = re.compile(r"[^\s\x00-\x1f\x7f@<>()\[\],;:\"]+@[^\s\x00-\x1f\x7f@<>()\[\],;:\"]+")
_BRACKETED = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>")


def _read_envelope(
    fields: tuple[_Field, ...], limits: ParseLimits, report: _Report, draft: _Draft
) -> None:
    """Everything ParsedMail takes from the outer headers."""
    draft.headers = _header_map(fields)
    subject = _first(fields, "subject")
    if subject is not None:
        text = _field_text(subject, report, "the Subject header")
        draft.subject = header_safe(nfc(text), max_length=998)
    draft.message_id = _message_id(fields, report)
    draft.in_reply_to = _first_id(fields, "in-reply-to")
    draft.references = _references(fields)
    draft.return_path = _return_path(fields)
    view = _mail_parser_view(fields, limits, report, "")
    draft.date = _date(view, fields, report)
    draft.sender, draft.sender_name = _pick_sender(view, fields, report, "")
    draft.from_address = draft.sender
    draft.to, draft.cc = _recipients(view, fields, limits, report)
    reply_to = _addresses(getattr(view, "reply_to", None) if view else None)
    draft.reply_to = reply_to[0] if reply_to else None


def _header_map(fields: tuple[_Field, ...]) -> dict[str, tuple[str, ...]]:
    values: dict[str, list[str]] = {}
    for item in fields:
        text = header_safe(nfc(_field_text(item)), max_length=_MAX_HEADER_VALUE)
        values.setdefault(item.key, []).append(text)
    return {name: tuple(found) for name, found in values.items()}


def _message_id(fields: tuple[_Field, ...], report: _Report) -> str | None:
    item = _first(fields, "message-id")
    if item is None:
        report.warn("no Message-ID header")
        return None
    compact = re.sub(r"\s+", "", _header_text(_unfold(item.value[:2048]))[0])
    found = _MESSAGE_ID.search(compact)
    if found:
        return header_safe(found.group(0), max_length=998)
    bare = compact.strip("<>")
    if not bare:
        report.warn("empty Message-ID header")
        return None
    report.warn("Message-ID without angle brackets")
    return header_safe(f"<{bare}>", max_length=998)


def _ids(fields: tuple[_Field, ...], key: str) -> list[str]:
    item = _first(fields, key)
    if item is None:
        return []
    compact = re.sub(r"\s+", "", _header_text(_unfold(item.value[:_MAX_RAW_HEADER_VALUE]))[0])
    return [header_safe(found, max_length=998) for found in _MESSAGE_ID.findall(compact)]


def _first_id(fields: tuple[_Field, ...], key: str) -> str | None:
    found = _ids(fields, key)
    return found[0] if found else None


def _references(fields: tuple[_Field, ...]) -> tuple[str, ...]:
    found = _ids(fields, "references")
    if len(found) > _MAX_REFERENCES:
        # Keep the thread root and the most recent ancestors (RFC 5322 3.6.4).
        found = [found[0], *found[-(_MAX_REFERENCES - 1) :]]
    return tuple(found)


def _return_path(fields: tuple[_Field, ...]) -> str | None:
    """The Return-Path address; the empty string for the null path ``<>``."""
    item = _first(fields, "return-path")
    if item is None:
        return None
    text = _header_text(_unfold(item.value[:1024]))[0].strip()
    inner = text.strip("<> \t")
    return header_safe(inner.lower(), max_length=320) if inner else ""


class _HeaderView(mailparser.MailParser):
    """mail-parser's reading of the address and Date headers, without the rest.

    ``MailParser._reset`` reads every address header (with its defects) and the
    Date header; ``parse`` then walks the parts and builds two dicts of every
    header, which we never read (a third of its cost on our header blocks).
    ``tests/test_header_view.py`` checks that the values we read, and every
    ``ParsedMail``, are those of the full ``MailParser``.
    """

    def parse(self) -> _HeaderView:
        self._reset()
        return self


def _mail_parser_view(
    fields: tuple[_Field, ...] | list[_Field], limits: ParseLimits, report: _Report, label: str
) -> mailparser.MailParser | None:
    """mail-parser's reading of a small header block we built."""
    lines = [_mail_parser_line(f, limits) for f in fields if f.key in _MAILPARSER_FIELDS]
    try:
        view = _HeaderView.from_bytes(b"".join(lines) + b"\n")
    except Exception as exc:
        report.warn(f"{label}address headers could not be read ({type(exc).__name__})")
        return None
    for defect in view.address_header_defects[:5]:
        header = str(defect.get("header", "address")).capitalize()
        report.warn(f"{label}{header} header: {defect.get('reason', 'unreadable')}")
    return view


def _mail_parser_line(item: _Field, limits: ParseLimits) -> bytes:
    value = _unfold(item.value)
    if item.key == "date":
        value = value[:1024]
    else:
        # Cutting at a comma keeps whole addresses; twice the limit leaves
        # room for commas inside quoted names.
        value = _cut_after_commas(value, 2 * limits.max_recipients)[: 64 * limits.max_recipients]
    text = _header_text(value)[0]
    return item.name.encode("ascii", "replace") + b": " + text.encode("utf-8") + b"\n"


def _cut_after_commas(value: bytes, commas: int) -> bytes:
    pos = -1
    for _ in range(commas):
        pos = value.find(b",", pos + 1)
        if pos < 0:
            return value
    return value[:pos]


def _clean_address(address: object) -> str | None:
    if not isinstance(address, str):
        return None
    address = address.strip().strip("<>").lower()
    address = address.encode("utf-8", "replace").decode("utf-8")
    if len(address) > 320 or not _ADDRESS_OK.fullmatch(address):
        return None
    return nfc(address)


def _clean_name(name: object) -> str:
    if not isinstance(name, str):
        return ""
    name = name.encode("utf-8", "replace").decode("utf-8")
    # mail-parser leaves words it finds suspicious encoded; we show them
    # decoded, header_safe removes what made them suspicious.
    name = _decode_words(name, None, "")
    return header_safe(nfc(name), max_length=200).strip("\"' ")


def _addresses(pairs: object) -> list[str]:
    """Lower-cased, valid, distinct addresses from mail-parser's pairs."""
    found: list[str] = []
    if not isinstance(pairs, list):
        return found
    for pair in pairs:
        address = _clean_address(pair[1]) if isinstance(pair, tuple) and len(pair) == 2 else None
        if address and address not in found:
            found.append(address)
    return found


def _pick_sender(
    view: mailparser.MailParser | None,
    fields: tuple[_Field, ...] | list[_Field],
    report: _Report,
    label: str,
) -> tuple[str, str]:
    """(address, display name) from From, else Sender, else Return-Path."""
    pairs = getattr(view, "from_", None) if view else None
    for pair in pairs if isinstance(pairs, list) else []:
        address = _clean_address(pair[1]) if isinstance(pair, tuple) and len(pair) == 2 else None
        if address:
            return address, _clean_name(pair[0])
    from_item = _first(fields, "from")
    found = _bracketed_address(from_item) if from_item is not None else None
    if found:
        report.warn(f"{label}From header is malformed; used the address in angle brackets")
        return found
    reason = "no From header" if from_item is None else "no usable From address"
    for key, title in (("sender", "Sender"), ("return-path", "Return-Path")):
        item = _first(fields, key)
        found = _address_in(_field_text(item)) if item is not None else None
        if found:
            report.warn(f"{label}{reason}; used the {title} address")
            return found
    report.warn(f"{label}{reason}, and no Sender or Return-Path to fall back on")
    return "", ""


def _bracketed_address(item: _Field) -> tuple[str, str] | None:
    """The last <address> of a raw field, read before decoding any word.

    Decoding first would let an encoded word inject a second address.
    """
    text = _header_text(_unfold(item.value[:_MAX_RAW_HEADER_VALUE]))[0]
    matches = list(_BRACKETED.finditer(text))
    if not matches:
        return None
    found = matches[-1]
    address = _clean_address(found.group(1))
    if address is None:
        return None
    return address, _clean_name(text[: found.start()])


def _address_in(text: str) -> tuple[str, str] | None:
    """First usable (address, name) in a free-form address string."""
    text = text[:_MAX_RAW_HEADER_VALUE]
    with contextlib.suppress(Exception):
        for name, address in get_addresses(text, decode_names=True):
            clean = _clean_address(address)
            if clean:
                return clean, _clean_name(name)
    found = _ADDRESS_OK.search(text)
    if found:
        clean = _clean_address(found.group(0))
        if clean:
            return clean, _clean_name(text[: found.start()].strip(" <[\"'"))
    return None


def _recipients(
    view: mailparser.MailParser | None,
    fields: tuple[_Field, ...],
    limits: ParseLimits,
    report: _Report,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    to = _addresses(getattr(view, "to", None) if view else None)
    cc = [a for a in _addresses(getattr(view, "cc", None) if view else None) if a not in to]
    limit = limits.max_recipients
    listed = sum(f.value.count(b",") + 1 for f in (_first(fields, "to"), _first(fields, "cc")) if f)
    total = max(len(to) + len(cc), listed if listed > 2 * limit else 0)
    if total > limit:
        about = "about " if total > len(to) + len(cc) else ""
        report.over(
            f"{about}{total} recipients in To and Cc, over the limit of {limit}; "
            f"kept the first {limit}"
        )
        to = to[:limit]
        cc = cc[: max(0, limit - len(to))]
    return tuple(to), tuple(cc)


def _date(
    view: mailparser.MailParser | None, fields: tuple[_Field, ...], report: _Report
) -> datetime | None:
    item = _first(fields, "date")
    if item is None:
        report.warn("no Date header")
        return None
    value = view.date if view is not None else None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    report.warn(f"unreadable Date header {_q(_field_text(item), 60)}")
    return None


# --------------------------------------------------------------------------
# MIME structure: the stdlib parser, fed in chunks, stopped at the limits
# --------------------------------------------------------------------------


class _Abort(Exception):
    """Stops the stdlib parser when a limit is reached (never leaves this module)."""


class _Budget:
    """What the stdlib parser may build for one message."""

    def __init__(self, limits: ParseLimits, max_parts: int | None = None) -> None:
        self.max_parts = limits.max_mime_parts if max_parts is None else max_parts
        self.max_depth = min(_MAX_STRUCTURE_DEPTH, max(50, 4 * limits.max_nesting_depth))
        self.max_headers = limits.max_header_count
        self.max_header_value = limits.max_header_bytes
        self.parts = 0
        self.root: _Part | None = None
        self.stop: str | None = None
        self.dropped_headers = 0
        self.cut_headers = 0
        self.elided: _Elided | None = None


class _Part(Message):
    """A compat32 message that enforces the budget while it is being parsed."""

    def __init__(self, policy: object = compat32) -> None:
        super().__init__(policy)
        self.mb_depth = 0
        self.mb_budget: _Budget | None = None

    def attach(self, payload: Message) -> None:
        budget = self.mb_budget
        if budget is not None and isinstance(payload, _Part):
            payload.mb_depth = self.mb_depth + 1
            if payload.mb_depth > budget.max_depth:
                budget.stop = "depth"
                raise _Abort
        super().attach(payload)

    def get_param(
        self, param: str, failobj: object = None, header: str = "content-type", unquote: bool = True
    ) -> object:
        # RFC 2231 continuations such as ``name*=a; name*x=b`` make the
        # stdlib raise TypeError, even from inside its own parser
        # (get_boundary); a parameter we cannot read is an absent one.
        try:
            return super().get_param(param, failobj, header, unquote)
        except (TypeError, ValueError, LookupError, IndexError, AttributeError):
            return failobj

    def get_params(
        self, failobj: object = None, header: str = "content-type", unquote: bool = True
    ) -> object:
        try:
            return super().get_params(failobj, header, unquote)
        except (TypeError, ValueError, LookupError, IndexError, AttributeError):
            return failobj

    def set_raw(self, name: str, value: str) -> None:
        budget = self.mb_budget
        if budget is not None:
            if len(self) >= budget.max_headers:
                budget.dropped_headers += 1
                return
            is_mime = name.lower().startswith("content-")
            limit = _MAX_MIME_HEADER if is_mime else budget.max_header_value
            if len(value) > limit:
                value = value[:limit]
                budget.cut_headers += 1
        super().set_raw(name, value)


def _parse_structure(
    data: bytes, budget: _Budget, *, prefix: bytes = b"", start: int = 0
) -> _Part | None:
    """Parse ``prefix + data[start:]`` with the stdlib; on a limit, keep the tree built so far.

    Long runs of base64-looking lines are not fed to the parser (see ``_Elided``).
    """

    def factory(policy: object = compat32) -> _Part:
        if budget.parts >= budget.max_parts:
            budget.stop = "parts"
            raise _Abort
        budget.parts += 1
        part = _Part(policy)
        part.mb_budget = budget
        if budget.root is None:
            budget.root = part
        return part

    parser = BytesFeedParser(_factory=factory, policy=compat32)
    # The constructor calls the factory once to probe its signature.
    budget.parts, budget.root = 0, None
    elided = budget.elided = _Elided(data)
    try:
        _feed(parser, prefix, 0, len(prefix))
        pos = start
        for run_start, run_end in _elidable_runs(data, start):
            _feed(parser, data, pos, run_start)
            parser.feed(elided.add(run_start, run_end))
            pos = run_end
        _feed(parser, data, pos, len(data))
        return parser.close()
    except _Abort:
        return budget.root
    except RecursionError:
        budget.stop = "depth"
        return budget.root
    except Exception:
        budget.stop = "error"
        return budget.root


def _feed(parser: BytesFeedParser, data: bytes, start: int, end: int) -> None:
    for pos in range(start, end, _FEED_CHUNK):
        parser.feed(data[pos : min(pos + _FEED_CHUNK, end)])


# A line of base64 characters only, and maximal runs of such lines
# (possessive: no backtracking state kept for a 500,000-line run).
_BASE64_RUN = re.compile(rb"(?:^[A-Za-z0-9+/=]++\r?\n)++", re.M)
# Runs shorter than this are fed to the parser as they are.
_ELIDE_MIN_BYTES = 64 * 1024
_ELIDE_WINDOW = 1 << 20
_BASE64_CLEAN = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def _elidable_runs(data: bytes, start: int) -> Iterator[tuple[int, int]]:
    """(start, end) of long runs of base64-looking lines, each without its last line end.

    Such lines can be neither a header (no colon), nor a boundary (no dash),
    nor blank, so the stdlib parser would only append them to the payload of
    whatever part (or preamble) they are in: a placeholder line in their
    place gives the same MIME structure.
    """
    for match in _BASE64_RUN.finditer(data, start):
        run_start, run_end = match.span()
        if run_end - run_start < _ELIDE_MIN_BYTES:
            continue
        run_end -= 2 if data[run_end - 2 : run_end] == b"\r\n" else 1
        yield run_start, run_end


class _Elided:
    """The runs of one parse left out of the stdlib tree, and their placeholders.

    The stdlib parser keeps a body as one str line per 76 bytes (2.7 times its
    size with the list) and then as one str, and ``get_payload(decode=True)``
    copies it twice more. Long base64 runs stay in the raw bytes instead,
    replaced in the parser's input by a placeholder carrying a random nonce
    (mail cannot forge it); ``_payload_bytes`` decodes them from the raw
    bytes window by window, or puts the text back and lets the stdlib decode
    it whenever the result could differ (padding or character defects, a
    part that is not base64).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.runs: list[tuple[int, int]] = []
        self.marker = f"#mailbot-elided-{secrets.token_hex(8)}-"

    @functools.cached_property
    def _pattern(self) -> re.Pattern[str]:
        # Compiled only for a message that has runs: most have none, and a
        # pattern per message (its nonce) would miss the re module's cache.
        return re.compile(re.escape(self.marker) + r"(\d+)#")

    def add(self, start: int, end: int) -> bytes:
        self.runs.append((start, end))
        return f"{self.marker}{len(self.runs) - 1}#".encode("ascii")

    def holds(self, payload: object) -> bool:
        return isinstance(payload, str) and self.marker in payload

    def _pieces(self, payload: str) -> Iterator[bytes | tuple[int, int]]:
        """The payload as text bytes and (start, end) runs of ``data``, in order."""
        pos = 0
        for match in self._pattern.finditer(payload):
            yield payload[pos : match.start()].encode("ascii", "surrogateescape")
            yield self.runs[int(match.group(1))]
            pos = match.end()
        yield payload[pos:].encode("ascii", "surrogateescape")

    def restore(self, payload: str) -> str:
        """The payload exactly as the stdlib parser would have built it."""
        out: list[str] = []
        for piece in self._pieces(payload):
            if isinstance(piece, tuple):
                out.append(self.data[piece[0] : piece[1]].decode("ascii"))
            else:
                out.append(piece.decode("ascii", "surrogateescape"))
        return "".join(out)

    def decode_base64(self, payload: str) -> bytes | None:
        """What ``get_payload(decode=True)`` returns for base64 without defects, else None."""
        out = io.BytesIO()
        carry = b""
        padded = False
        for chunk in self._windows(payload):
            chunk = chunk.translate(None, b"\r\n")
            if not chunk:
                continue
            if padded or not _BASE64_CLEAN.fullmatch(chunk):
                return None  # padding in the middle, or other characters
            padded = chunk.endswith(b"=")
            chunk = carry + chunk
            cut = len(chunk) - len(chunk) % 4
            carry = chunk[cut:]
            try:
                out.write(binascii.a2b_base64(chunk[:cut], strict_mode=True))
            except binascii.Error:
                return None
        if carry:
            return None  # bad length: the stdlib adds padding and a defect
        return out.getvalue()

    def _windows(self, payload: str) -> Iterator[bytes]:
        for piece in self._pieces(payload):
            if isinstance(piece, bytes):
                yield piece
                continue
            for pos in range(piece[0], piece[1], _ELIDE_WINDOW):
                yield self.data[pos : min(pos + _ELIDE_WINDOW, piece[1])]


def _report_budget(budget: _Budget, limits: ParseLimits, report: _Report) -> None:
    if budget.stop == "parts":
        report.over(
            f"more than {limits.max_mime_parts} MIME parts; the rest of the message was not read"
        )
    elif budget.stop == "depth":
        report.over(
            f"MIME structure nested deeper than {budget.max_depth} levels; "
            "the rest of the message was not read"
        )
    elif budget.stop == "error":
        report.over("the MIME parser stopped on malformed input; the rest was not read")
    if budget.dropped_headers:
        report.over(
            f"{budget.dropped_headers} header fields of MIME parts ignored "
            f"(more than {limits.max_header_count} in one part)"
        )
    if budget.cut_headers:
        report.warn(f"{budget.cut_headers} over-long header values in MIME parts were cut")


# --------------------------------------------------------------------------
# Walking the structure: body text, attachments, attached messages
# --------------------------------------------------------------------------

_INNER_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
# Parts of reports: visible in content_types, neither body nor attachment.
_REPORT_PART_TYPES = frozenset({"text/rfc822-headers"})
_BOUNDARY_LINE = re.compile(rb"^--([0-9A-Za-z'()+_,./:=?-]{1,70}?)(?:--)?[ \t]*\r?$", re.M)
_CONTENT_TYPE_OK = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


@dataclass
class _Content:
    """What one message (outer or attached) carries."""

    depth: int
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    inner: list[tuple[Message, int]] = field(default_factory=list)

    def text(self) -> str:
        if any(p.strip() for p in self.plain):
            pieces = self.plain
        else:
            pieces = [_html_to_text(h) for h in self.html]
        return "\n\n".join(p.strip("\n") for p in pieces if p.strip())


class _Walker:
    """Walks MIME trees without recursion, numbering parts for warnings."""

    def __init__(self, limits: ParseLimits, report: _Report, budget: _Budget) -> None:
        self.limits = limits
        self.report = report
        self.budget = budget
        self.part_no = 0
        self.content_types: dict[str, None] = {}
        self.slots = limits.max_attachments
        self.seen_attachments = 0
        self.salvaged = False
        # Budgets for the whole message, not per part: 200 parts of hostile
        # HTML or 50 archives must not multiply the cost.
        self.text_left = MAX_TEXT_CHARS
        self.html_left = _MAX_HTML_CHARS
        self.zip_left = limits.max_zip_expanded_bytes

    def walk(self, root: Message, depth: int, *, collect: bool = True) -> _Content:
        content = _Content(depth)
        stack: list[Message] = [root]
        while stack:
            part = stack.pop()
            self.part_no += 1
            number = self.part_no
            ctype = _clean_content_type(part.get_content_type())
            self.content_types.setdefault(ctype)
            try:
                children = self._visit(part, number, ctype, content, collect)
            except Exception as exc:  # one broken part must not lose the others
                self.report.warn(
                    f"part {number} ({ctype}) could not be read ({type(exc).__name__})"
                )
                children = []
            stack.extend(reversed(children))
            self._note_defects(part, number, ctype)
        return content

    def _visit(
        self, part: Message, number: int, ctype: str, content: _Content, collect: bool
    ) -> list[Message]:
        """Handle one part; return the children still to walk."""
        if ctype in _INNER_MESSAGE_TYPES:
            self._inner_message(part, number, content)
            return []
        if ctype.startswith("message/") or ctype in _REPORT_PART_TYPES:
            return []  # delivery-status and the like: the type is what matters
        if part.is_multipart():
            return [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype.startswith("multipart/"):
            salvaged = self._salvage(part, number, ctype)
            if salvaged is not None:
                return salvaged
            ctype = "text/plain"
        if collect:
            self._leaf(part, number, ctype, content)
        return []

    def _inner_message(self, part: Message, number: int, content: _Content) -> None:
        payload = part.get_payload() if part.is_multipart() else None
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            self.report.warn(f"part {number}: attached message could not be read")
            return
        depth = content.depth + 1
        if depth > self.limits.max_nesting_depth:
            self.report.over(
                f"part {number}: attached message nested {depth} levels deep, over the limit "
                f"of {self.limits.max_nesting_depth}; not read"
            )
            return
        content.inner.append((inner, depth))

    def _salvage(self, part: Message, number: int, ctype: str) -> list[Message] | None:
        """Re-read a multipart whose boundary is missing or wrong.

        The boundary is guessed from the first delimiter-looking line; done
        once per message so a hostile message cannot make us loop.
        """
        if self.salvaged:
            return None
        payload = _payload_bytes(part)
        found = _BOUNDARY_LINE.search(payload)
        if not found:
            self.report.warn(f"part {number} ({ctype}) has no usable boundary; read as text")
            return None
        self.salvaged = True
        boundary = found.group(1).decode("ascii")
        data = b'Content-Type: multipart/mixed; boundary="%s"\n\n%s' % (found.group(1), payload)
        budget = _Budget(self.limits, max_parts=max(1, self.budget.max_parts - self.budget.parts))
        root = _parse_structure(data, budget)
        if root is None or not root.is_multipart():
            return None
        self.report.warn(
            f"part {number} ({ctype}): boundary missing or wrong; used {_q(boundary, 70)} "
            "found in the body"
        )
        return [c for c in root.get_payload() if isinstance(c, Message)]

    def _leaf(self, part: Message, number: int, ctype: str, content: _Content) -> None:
        view = _mime_view(part)
        disposition = view.get_content_disposition()
        name = self._filename(view, number)
        if ctype in ("text/plain", "text/html") and name is None and disposition != "attachment":
            text = self._part_text(part, view, number, ctype)
            (content.plain if ctype == "text/plain" else content.html).append(text)
            return
        if content.depth > 0:
            source = f"forwarded:{content.depth}"
        elif disposition == "inline" or (disposition is None and part.get("content-id")):
            source = "inline"
        else:
            source = "attachment"
        self._attachment(part, number, ctype, name, source, content)

    def _filename(self, view: Message, number: int) -> str | None:
        try:
            name = view.get_filename()
        except Exception:
            return None
        if not isinstance(name, str) or not name.strip():
            return None
        name = _fix_surrogates(name)
        return _decode_words(name, self.report, f"the file name of part {number}")

    def _part_text(self, part: Message, view: Message, number: int, ctype: str) -> str:
        """Decoded text of a body part, within the message's text budgets."""
        is_html = ctype == "text/html"
        left = self.html_left if is_html else self.text_left
        if left <= 0:
            self.report.warn(f"part {number}: not read, the message already has enough text")
            return ""
        data = _payload_bytes(part)
        cut = len(data) > 4 * left
        data = data[: 4 * left]  # enough bytes for ``left`` characters in any charset
        try:
            declared = view.get_content_charset()
        except Exception:
            declared = "x-unreadable"
        text, problem, used = _decode_bytes(data, declared)
        if problem and data:
            self.report.warn(f"{problem} in part {number}; decoded as {used}")
        text = _clean_text(text)
        if cut or len(text) > left:
            self.report.warn(f"part {number}: text cut to {left} characters")
            text = text[:left]
        if is_html:
            self.html_left -= len(text)
        else:
            self.text_left -= len(text)
        return text

    def _attachment(
        self,
        part: Message,
        number: int,
        ctype: str,
        name: str | None,
        source: str,
        content: _Content,
    ) -> None:
        self.seen_attachments += 1
        if self.slots <= 0:
            return  # counted; reported once at the end
        self.slots -= 1
        notes: list[str] = []
        loud: list[str] = []
        filename = _clean_filename(name, notes, loud) or f"piece-{number}.{_extension_for(ctype)}"
        if ctype in _GENERIC_TYPES:
            ctype = _type_for_name(filename)
        data = _payload_bytes(part)
        attachment = self._make_attachment(filename, ctype, data, source, notes, loud)
        content.attachments.append(attachment)
        if _is_zip(filename, ctype, attachment.data):
            content.attachments.extend(self._expand_zip(attachment))

    def _make_attachment(
        self,
        filename: str,
        ctype: str,
        data: bytes,
        source: str,
        notes: list[str],
        loud: list[str],
    ) -> Attachment:
        """``notes`` stay on the attachment, ``loud`` go to the message too."""
        size = len(data)
        if size > self.limits.max_attachment_bytes:
            loud.append(
                f"{size} bytes, over the limit of {self.limits.max_attachment_bytes}; data dropped"
            )
            self.report.over_limits = True
            data = b""
        for note in loud:
            self.report.warn(f"attachment {_q(filename)}: {note}")
        notes = [*loud, *notes]
        return Attachment(
            filename=filename,
            content_type=ctype,
            data=data,
            sha256=hashlib.sha256(data).hexdigest(),
            size=size,
            source=source,
            warnings=tuple(header_safe(n, max_length=300) for n in notes),
        )

    def _note_defects(self, part: Message, number: int, ctype: str) -> None:
        for defect in list(getattr(part, "defects", []))[:5]:
            self.report.warn(f"part {number} ({ctype}): {_defect_text(defect)}")

    def report_dropped_attachments(self) -> None:
        if self.seen_attachments > self.limits.max_attachments:
            self.report.over(
                f"{self.seen_attachments} attachments, over the limit of "
                f"{self.limits.max_attachments}; kept the first {self.limits.max_attachments}"
            )

    # -- zip archives -------------------------------------------------------

    def _expand_zip(self, archive: Attachment) -> list[Attachment]:
        """Members of a zip attachment, or nothing if the archive is refused."""
        label = f"attachment {_q(archive.filename)}"
        if not archive.data:
            return []
        count = _zip_entry_count(archive.data)
        if count > self.limits.max_zip_members:
            self.report.over(
                f"{label}: {count} zip members, over the limit of {self.limits.max_zip_members}; "
                "archive not expanded"
            )
            return []
        try:
            archive_file = zipfile.ZipFile(io.BytesIO(archive.data))
        except Exception as exc:
            self.report.warn(f"{label}: unreadable zip archive ({type(exc).__name__})")
            return []
        with archive_file:
            infos = [info for info in archive_file.infolist() if not info.is_dir()]
            if not self._zip_declared_ok(infos, label):
                return []
            return self._zip_members(archive_file, infos, archive.filename, label)

    def _zip_declared_ok(self, infos: list[zipfile.ZipInfo], label: str) -> bool:
        """Refuse on what the central directory declares, before inflating."""
        limits = self.limits
        if len(infos) > limits.max_zip_members:
            self.report.over(f"{label}: {len(infos)} zip members, over the limit; not expanded")
            return False
        declared = sum(info.file_size for info in infos)
        packed = sum(info.compress_size for info in infos)
        ratio = declared / max(packed, 1)
        if declared > _ZIP_RATIO_FLOOR and ratio > limits.max_zip_ratio:
            self.report.over(
                f"{label}: zip bomb refused (ratio {ratio:.0f} > {limits.max_zip_ratio:g})"
            )
            return False
        if declared > limits.max_zip_expanded_bytes:
            self.report.over(
                f"{label}: zip bomb refused (expands to {declared} bytes > "
                f"{limits.max_zip_expanded_bytes})"
            )
            return False
        if declared > self.zip_left:
            self.report.over(
                f"{label}: not expanded, the message's archives would expand to more than "
                f"{limits.max_zip_expanded_bytes} bytes"
            )
            return False
        return True

    def _zip_members(
        self,
        archive_file: zipfile.ZipFile,
        infos: list[zipfile.ZipInfo],
        archive_name: str,
        label: str,
    ) -> list[Attachment]:
        members: list[Attachment] = []
        budget = self.zip_left
        slots, seen = self.slots, self.seen_attachments
        for index, info in enumerate(infos, 1):
            member = self._zip_member(archive_file, info, index, archive_name, budget, label)
            if member is _REFUSED:
                # All or nothing: give back what the dropped members took.
                self.slots, self.seen_attachments = slots, seen
                return []
            if isinstance(member, Attachment):
                members.append(member)
                budget -= len(member.data)
        self.zip_left = budget
        return members

    def _zip_member(
        self,
        archive_file: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        index: int,
        archive_name: str,
        budget: int,
        label: str,
    ) -> Attachment | object | None:
        notes: list[str] = []
        loud: list[str] = []
        filename = _clean_filename(_zip_member_name(info), notes, loud) or f"piece-{index}.bin"
        shown = f"{label}: member {_q(filename)}"
        for note in loud:
            self.report.warn(f"{label}: member {note}")
        if info.flag_bits & 0x1:
            self.report.warn(f"{shown} is encrypted; skipped")
            return None
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self.report.warn(f"{shown} uses compression method {info.compress_type}; skipped")
            return None
        self.seen_attachments += 1
        if self.slots <= 0:
            return None
        self.slots -= 1
        limit = min(budget, self.limits.max_attachment_bytes)
        try:
            data, outcome = _read_zip_member(archive_file, info, limit, self.limits.max_zip_ratio)
        except Exception as exc:
            self.report.warn(f"{shown} unreadable ({type(exc).__name__}); skipped")
            return None
        if outcome == "ratio" or (outcome == "over" and limit == budget):
            self.report.over(f"{label}: zip bomb refused (member {_q(filename)} inflates too far)")
            return _REFUSED
        notes = [*loud, *notes]
        if outcome == "over":
            return self._oversized_member(filename, info, limit, archive_name, notes)
        if _is_zip(filename, _type_for_name(filename), data):
            self.report.warn(f"{label}: nested archive {_q(filename)} not expanded")
            notes.append("nested archive, not expanded")
        return self._make_attachment(
            filename, _type_for_name(filename), data, f"zip:{archive_name}", notes, []
        )

    def _oversized_member(
        self, filename: str, info: zipfile.ZipInfo, limit: int, archive_name: str, notes: list[str]
    ) -> Attachment:
        size = max(info.file_size, limit + 1)
        notes.append(f"over {limit} bytes once inflated; data dropped")
        self.report.over(
            f"zip member {_q(filename)}: over {limit} bytes once inflated; data dropped"
        )
        return Attachment(
            filename=filename,
            content_type=_type_for_name(filename),
            data=b"",
            sha256=hashlib.sha256(b"").hexdigest(),
            size=size,
            source=f"zip:{archive_name}",
            warnings=tuple(header_safe(n, max_length=300) for n in notes),
        )


_REFUSED = object()


def _mime_view(part: Message) -> Message:
    """The part's Content-* headers with raw 8-bit bytes decoded.

    compat32 turns 8-bit header bytes into U+FFFD when asked for a parameter
    (``B\\xc3\\xa9thune.pdf`` came out as ``B\\ufffd\\ufffdthune.pdf``).
    """
    view = _Part()
    view.set_default_type(part.get_default_type())
    for name, value in part.raw_items():
        if name.lower() in ("content-type", "content-disposition"):
            view[name] = _fix_surrogates(str(value))
    return view


def _fix_surrogates(text: str) -> str:
    """Text holding raw bytes as surrogates (stdlib style), properly decoded."""
    if not re.search(r"[\udc80-\udcff]", text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    return _header_text(data)[0]


def _payload_bytes(part: Message) -> bytes:
    """The decoded payload; b"" when there is none or it cannot be decoded."""
    budget = getattr(part, "mb_budget", None)
    elided = budget.elided if budget is not None else None
    if elided is not None and not part.is_multipart() and elided.holds(part._payload):
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte == "base64":
            data = elided.decode_base64(part._payload)
            if data is not None:
                return data
        part.set_payload(elided.restore(part._payload))
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    return data if isinstance(data, bytes) else b""


def _clean_content_type(ctype: object) -> str:
    text = str(ctype).strip().lower()[:100]
    return text if _CONTENT_TYPE_OK.fullmatch(text) else "application/octet-stream"


def _defect_text(defect: object) -> str:
    """``InvalidBase64PaddingDefect`` -> ``invalid base64 padding``."""
    name = type(defect).__name__.removesuffix("Defect")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


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
        loud.append(f"unusable name {_q(name)} replaced")
        return None
    if cleaned == original:
        return cleaned
    note = f"name {_q(name)} reduced to {_q(cleaned)}"
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


def _zip_entry_count(data: bytes) -> int:
    """Entries in the central directory, counted without zipfile.

    zipfile builds a ZipInfo for every entry before we could refuse a
    directory of 500,000 entries; the end record may lie, so the entry
    signatures inside the directory are counted too.
    """
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if eocd < 0 or len(data) < eocd + 22:
        return data.count(b"PK\x01\x02")
    _, _, _, _, total, cd_size, _, _ = struct.unpack("<4s4H2LH", data[eocd : eocd + 22])
    if total == 0xFFFF or cd_size == 0xFFFFFFFF:
        total, cd_size = _zip64_counts(data, eocd, total, cd_size)
    start = max(0, eocd - cd_size)
    return max(total, data.count(b"PK\x01\x02", start, eocd))


def _zip64_counts(data: bytes, eocd: int, total: int, cd_size: int) -> tuple[int, int]:
    record = data.rfind(b"PK\x06\x06", 0, eocd)
    if record < 0 or len(data) < record + 56:
        return total, len(data)
    fields = struct.unpack("<4sQ2H2L4Q", data[record : record + 56])
    return int(fields[7]), int(fields[8])


def _read_zip_member(
    archive_file: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, max_ratio: float
) -> tuple[bytes, str | None]:
    """Inflate one member, stopping as soon as it passes ``limit`` bytes.

    Returns the data and None, or b"" and "over" / "ratio": the sizes in zip
    headers are whatever the sender wrote, so they are checked again here.
    """
    chunks: list[bytes] = []
    total = 0
    with archive_file.open(info) as stream:
        while chunk := stream.read(_ZIP_READ_CHUNK):
            total += len(chunk)
            if total > limit:
                return b"", "over"
            if total > _ZIP_RATIO_FLOOR and total / max(info.compress_size, 1) > max_ratio:
                return b"", "ratio"
            chunks.append(chunk)
    return b"".join(chunks), None


# --------------------------------------------------------------------------
# HTML to text
# --------------------------------------------------------------------------

_HTML_TOKEN = re.compile(
    r"(?P<comment><!--.*?(?:-->|\Z))"
    r"|(?P<decl><[!?][^<>]*>?)"
    r"|(?P<tag></?(?P<name>[A-Za-z][A-Za-z0-9:-]*)(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*>?)"
    # Text runs on through a '<' that starts no markup ("3 < 4", "</ ").
    r"|(?P<text>(?:[^<]|<(?![A-Za-z!?]|/[A-Za-z]))+)"
    r"|(?P<lt><)",
    re.S,
)
_SKIPPED_ELEMENTS = ("script", "style", "title", "template")
_SKIP_UNTIL = {name: re.compile(rf"</{name}\s*>", re.I) for name in _SKIPPED_ELEMENTS}
_BLOCK_TAGS = frozenset(
    {
        *("br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre"),
        *("table", "caption", "thead", "tbody", "tfoot", "ul", "ol", "dl", "dt", "dd"),
        *("blockquote", "section", "article", "header", "footer", "address", "center"),
        *("form", "fieldset", "figure", "figcaption", "nav", "main", "aside"),
    }
)
_CELL_TAGS = frozenset({"td", "th"})
_HTML_SPACE = re.compile(r"[ \t\n\r\f\xa0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _HtmlText(HTMLParser):
    """Collects text and line breaks; fed only what _simplify_html produced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._out.append("\n")
        elif tag in _CELL_TAGS:
            self._out.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self._out.append("\n")

    def handle_data(self, data: str) -> None:
        self._out.append(_HTML_SPACE.sub(" ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self._out).split("\n"))
        return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(_simplify_html(html))
    parser.close()
    return _clean_text(parser.text())


def _simplify_html(html: str) -> str:
    """Markup reduced to complete bare tags and text, in one linear pass.

    Only the tags that make line breaks are kept; comments, declarations,
    attributes and script/style/title content go, and a '<' that starts no
    markup becomes '&lt;'. html.parser then never meets an unterminated
    construct, the case where it rescans its buffer.
    """
    pieces: list[str] = []
    pos, end = 0, len(html)
    while pos < end:
        token = _HTML_TOKEN.match(html, pos)
        if token is None:  # cannot happen: '<' alone always matches
            break
        pos = token.end()
        if token["tag"]:
            name = token["name"].lower()
            closing = token["tag"].startswith("</")
            if not closing and name in _SKIP_UNTIL:
                found = _SKIP_UNTIL[name].search(html, pos)
                pos = found.end() if found else end
                continue
            if name in _BLOCK_TAGS or name in _CELL_TAGS:
                pieces.append(f"</{name}>" if closing else f"<{name}>")
        elif token["text"]:
            pieces.append(token["text"].replace("<", "&lt;"))
        elif token["lt"]:
            pieces.append("&lt;")
    return "".join(pieces)


# --------------------------------------------------------------------------
# Body assembly and forwarded candidatures
# --------------------------------------------------------------------------

_FORWARD_SUBJECT = re.compile(r"^\W*(?:(?:re|ref|aw)\s*:\s*)*(?:fwd?|tr|transfere|wg|rv|enc)\s*:")
_FORWARD_MARKER = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*(?:forwarded message|message transf[ée]r[ée]|original message"
    r"|message d'origine|message d’origine)[ \t]*-{2,}"
    r"|d[ée]but du message r[ée]exp[ée]di[ée][ \t]*:|begin forwarded message[ \t]*:)[ \t]*$",
    re.I | re.M,
)
_FORWARD_FROM = re.compile(
    r"^[ \t*>]*(?:de|from|exp[ée]diteur)[ \t\xa0*]*:[ \t\xa0*]*(?P<value>[^\n]+)$",
    re.I | re.M,
)
_MAILTO = re.compile(r"\[mailto:([^\]\s]+)\]", re.I)


def _read_body(
    root: Message, budget: _Budget, limits: ParseLimits, report: _Report, draft: _Draft
) -> None:
    walker = _Walker(limits, report, budget)
    outer = walker.walk(root, 0)
    is_report = root.get_content_type() == "multipart/report"
    inner = _walk_inner(walker, outer, collect=not is_report)
    outer_text = outer.text()
    texts = [outer_text]
    draft.attachments = list(outer.attachments)
    if not is_report:
        for content, _ in inner:
            draft.attachments.extend(content.attachments)
        _detect_forward(outer_text, inner, limits, report, draft)
        if draft.forwarded:
            texts.extend(content.text() for content, _ in inner)
    walker.report_dropped_attachments()
    draft.content_types = tuple(walker.content_types)
    draft.text = _cap_text("\n\n".join(t for t in texts if t), report)


def _walk_inner(
    walker: _Walker, outer: _Content, *, collect: bool
) -> list[tuple[_Content, Message]]:
    """Attached messages, breadth first, each already bounded in depth."""
    found: list[tuple[_Content, Message]] = []
    queue: deque[tuple[Message, int]] = deque(outer.inner)
    while queue:
        message, depth = queue.popleft()
        content = walker.walk(message, depth, collect=collect)
        found.append((content, message))
        queue.extend(content.inner)
    return found


def _detect_forward(
    outer_text: str,
    inner: list[tuple[_Content, Message]],
    limits: ParseLimits,
    report: _Report,
    draft: _Draft,
) -> None:
    """Make the original sender the applicant when the outer one forwards."""
    subject_says = bool(_FORWARD_SUBJECT.match(fold(draft.subject)))
    attached = next((message for content, message in inner if content.depth == 1), None)
    if attached is not None and (subject_says or len(outer_text.strip()) < _SHORT_FORWARD_NOTE):
        fields = _message_fields(attached)
        view = _mail_parser_view(fields, limits, report, "forwarded message: ")
        address, name = _pick_sender(view, fields, report, "forwarded message: ")
        if address:
            draft.forwarded = True
            draft.sender, draft.sender_name = address, name
        return
    marker = _FORWARD_MARKER.search(outer_text)
    if marker is None:
        return
    if not subject_says and len(outer_text[: marker.start()].strip()) >= _SHORT_FORWARD_NOTE:
        return
    found = _inline_forward_sender(outer_text[marker.end() : marker.end() + 3000])
    if found is None:
        report.warn("inline forward found, but its sender could not be read")
        return
    draft.forwarded = True
    draft.sender, draft.sender_name = found


def _inline_forward_sender(block: str) -> tuple[str, str] | None:
    """The "De :" / "From:" line of a forwarded block (first 25 lines)."""
    head = "\n".join(block.split("\n", 26)[:25])
    line = _FORWARD_FROM.search(head)
    if line is None:
        return None
    return _address_in(_MAILTO.sub(r"<\1>", line.group("value")))


def _message_fields(message: Message) -> list[_Field]:
    fields = []
    for name, value in message.raw_items():
        data = str(value).encode("utf-8", "surrogateescape")
        fields.append(_Field(str(name), data))
    return fields


def _cap_text(text: str, report: _Report) -> str:
    if len(text) > MAX_TEXT_CHARS:
        report.warn(f"message text cut to {MAX_TEXT_CHARS} characters")
        return text[:MAX_TEXT_CHARS]
    return text
