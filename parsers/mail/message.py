"""``parse_message``: the stages of reading one message, cheap checks first.

Header block (``headers``), envelope (``envelope``), size checks, MIME
structure under a budget (``structure``), then body and attachments
(``body``); whatever happens, what was read so far comes back with the
warnings (``report``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parsers.errors import MailParseError
from parsers.mail.body import _read_body
from parsers.mail.envelope import _read_envelope
from parsers.mail.headers import _declared_content_type, _Head, _scan_head
from parsers.mail.plain_body import read_plain_body
from parsers.mail.report import _Draft, _quiet_libraries, _Report
from parsers.mail.structure import _Budget, _Elided, _parse_structure, _report_budget
from parsers.types import ParsedMail

if TYPE_CHECKING:
    from parsers.rules import ParseLimits


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def parse_message(
    raw: bytes, *, limits: ParseLimits, head: HeadReading | None = None
) -> ParsedMail:
    """Read ``raw`` (one RFC 5322 message) into a ``ParsedMail``.

    ``head``: what ``read_head`` read of this message's header block when
    the first pass fetched it alone; its header stage is reused (the
    headers are parsed once) when ``raw`` starts with exactly that block.

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
    whole = _Whole(sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    return _parse_data(raw, limits=limits, head=head, whole=whole)


@dataclass(frozen=True)
class _Whole:
    """The whole message, when the bytes parsed are its skeleton (``parsers.mail.spooled``).

    ``lines``: its line count (None: count the bytes parsed); ``elided``: its
    long base64 runs, left out of the skeleton and read from the file.
    """

    sha256: str
    size: int
    lines: int | None = None
    elided: _Elided | None = None


def _parse_data(
    raw: bytes, *, limits: ParseLimits, head: HeadReading | None, whole: _Whole
) -> ParsedMail:
    """``parse_message`` of ``raw``, the message itself or its skeleton (see ``_Whole``)."""
    sha = whole.sha256
    if head is not None and head.reusable_for(raw, limits):
        report = head.report.copy()
        draft = head.draft.carried_on(sha256=sha, size=whole.size)
        with _quiet_libraries(report):
            try:
                _read_after_head(
                    raw, head.head, limits=limits, report=report, draft=draft, whole=whole
                )
            except Exception as exc:  # last resort: keep what was read so far
                report.over(
                    f"internal error while reading the message ({type(exc).__name__}); "
                    "parts of it were not read"
                )
        return draft.build(report)
    report = _Report()
    draft = _Draft(sha256=sha, size=whole.size)
    with _quiet_libraries(report):
        try:
            _read_message(raw, limits=limits, report=report, draft=draft, whole=whole)
        except Exception as exc:  # last resort: keep what was read so far
            report.over(
                f"internal error while reading the message ({type(exc).__name__}); "
                "parts of it were not read"
            )
    return draft.build(report)


@dataclass(frozen=True)
class HeadReading:
    """The header stage of ``parse_message`` run on a header block fetched alone.

    ``mail`` is the ``ParsedMail`` of the headers (no text, no attachments,
    ``content_types`` the declared top-level type); the rest lets
    ``parse_message`` carry on with the body without reading the headers
    again.
    """

    header: bytes
    mail: ParsedMail
    head: _Head | None
    draft: _Draft
    report: _Report
    limits: ParseLimits
    # What the first pass's rules answered on ``mail`` (``mailbot.pipeline``
    # notes them with the classifier and context they ran with).
    notes: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def reusable_for(self, raw: bytes, limits: ParseLimits) -> bool:
        """True when ``raw``'s header stage is exactly this one."""
        return (
            self.head is not None
            and limits is self.limits
            and raw.startswith(self.header)
            and b"\n" in self.header
            and self.head.end <= len(self.header)
        )


def read_head(header: bytes, *, size: int, limits: ParseLimits) -> HeadReading:
    """Read a message's header block alone (the body not fetched); see ``HeadReading``.

    ``size`` is the whole message's size as the server gave it. The first
    pass decides from this, with the server's BODYSTRUCTURE, which messages
    need their body (``parsers.headers_first``).
    """
    if not isinstance(header, bytes | bytearray | memoryview):
        raise TypeError(f"header must be bytes, not {type(header).__name__}")
    data = bytes(header)
    if not data:
        raise MailParseError("empty header block: there is nothing to parse")
    report = _Report()
    draft = _Draft(sha256=hashlib.sha256(data).hexdigest(), size=size)
    head = None
    with _quiet_libraries(report):
        try:
            if b"\n" not in data and b"\r" in data:
                data = data.replace(b"\r", b"\n")
            scanned = _scan_head(data, limits, report)
            _read_envelope(scanned.fields, limits=limits, report=report, draft=draft)
            head = scanned
        except Exception as exc:  # last resort, as in parse_message
            report.over(
                f"internal error while reading the headers ({type(exc).__name__}); "
                "parts of them were not read"
            )
    # ``build`` copies what it takes: the draft and report are kept as they
    # are (``parse_message`` copies them again before carrying on), only the
    # declared type is the header-only reading's own.
    read_types = draft.content_types
    if head is not None:
        draft.content_types = (_declared_content_type(head.fields),)
    mail = draft.build(report)
    draft.content_types = read_types
    return HeadReading(header=data, mail=mail, head=head, draft=draft, report=report, limits=limits)


def parse_head(header: bytes, *, size: int, limits: ParseLimits) -> ParsedMail:
    """The ``ParsedMail`` of a header block fetched alone (``read_head(...).mail``)."""
    return read_head(header, size=size, limits=limits).mail


def _read_message(
    raw: bytes, *, limits: ParseLimits, report: _Report, draft: _Draft, whole: _Whole
) -> None:
    """All the stages, in the order that keeps the cheap checks first."""
    data = raw
    if b"\n" not in data and b"\r" in data:
        # Old Mac line ends: our byte scans split on LF only.
        data = data.replace(b"\r", b"\n")
    head = _scan_head(data, limits, report)
    _read_envelope(head.fields, limits=limits, report=report, draft=draft)
    _read_after_head(data, head, limits=limits, report=report, draft=draft, whole=whole)


def _read_after_head(
    data: bytes,
    head: _Head,
    *,
    limits: ParseLimits,
    report: _Report,
    draft: _Draft,
    whole: _Whole,
) -> None:
    """The stages after the headers: size checks, MIME structure, body and attachments."""
    if not _body_within_limits(data, limits, report, whole=whole):
        draft.content_types = (_declared_content_type(head.fields),)
        return
    # A skeleton (``whole.elided``) is of a message too big for the plain reading.
    if whole.elided is None and read_plain_body(
        data, head, limits=limits, report=report, draft=draft
    ):
        return  # one plain text part: read without the MIME parser
    budget = _Budget(limits)
    if head.trimmed is None:
        root = _parse_structure(data, budget, elided=whole.elided)
    else:
        # The cut header block, then the body read in place (no copy of it).
        root = _parse_structure(
            data, budget, prefix=head.trimmed, start=head.end, elided=whole.elided
        )
    _report_budget(budget, limits, report)
    if root is None:
        report.warn("no MIME structure could be read")
        return
    _read_body(root, budget=budget, limits=limits, report=report, draft=draft)


def _body_within_limits(
    data: bytes, limits: ParseLimits, report: _Report, *, whole: _Whole
) -> bool:
    """Size checks made before any MIME parsing (of the whole message)."""
    if whole.size > limits.max_message_bytes:
        report.over(
            f"message is {whole.size} bytes, over the limit of {limits.max_message_bytes}; "
            "only the headers were read"
        )
        return False
    lines = data.count(b"\n") if whole.lines is None else whole.lines
    line_budget = max(1_000_000, limits.max_message_bytes // 32)
    if lines > line_budget:
        report.over(
            f"message has {lines} lines, over the limit of {line_budget}; "
            "only the headers were read"
        )
        return False
    return True
