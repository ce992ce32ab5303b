"""The MIME structure: the stdlib parser, fed in chunks, stopped at the limits.

A message factory counts parts and nesting depth and stops the parser at
``max_mime_parts`` / ``max_nesting_depth``; long runs of base64 lines are
not fed to it but elided (``_Elided``) and decoded later from the raw bytes
window by window, so a big attachment costs its decoded size only.
"""

from __future__ import annotations

import binascii
import functools
import io
import os
import re
import secrets
from collections.abc import Callable, Iterator
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import compat32
from typing import TYPE_CHECKING

from parsers.mail import bounds
from parsers.mail.bounds import _FEED_CHUNK, _MAX_MIME_HEADER, _MAX_STRUCTURE_DEPTH
from parsers.mail.report import _Report
from parsers.types import SpooledData, SpoolSink

if TYPE_CHECKING:
    from pathlib import Path

    from parsers.rules import ParseLimits


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
    data: bytes,
    budget: _Budget,
    *,
    prefix: bytes = b"",
    start: int = 0,
    elided: _Elided | None = None,
) -> _Part | None:
    """Parse ``prefix + data[start:]`` with the stdlib; on a limit, keep the tree built so far.

    Long runs of base64-looking lines are not fed to the parser (see ``_Elided``).
    ``elided``: ``data`` is a skeleton whose runs were taken out already
    (``parsers.mail.spooled``), and these are they.
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
    runs = _elidable_runs(data, start) if elided is None else iter(())
    elided = budget.elided = _Elided(data) if elided is None else elided
    try:
        _feed(parser, prefix, start=0, end=len(prefix))
        pos = start
        for run_start, run_end in runs:
            _feed(parser, data, start=pos, end=run_start)
            parser.feed(elided.add(run_start, run_end))
            pos = run_end
        _feed(parser, data, start=pos, end=len(data))
        return parser.close()
    except _Abort:
        return budget.root
    except RecursionError:
        budget.stop = "depth"
        return budget.root
    except Exception:
        budget.stop = "error"
        return budget.root
    finally:
        # The root part refers to the budget (``mb_budget``) and the budget to
        # the raw message (``elided.data``): left set, ``budget.root`` would
        # close a cycle that keeps the whole message in memory until the next
        # garbage collection, while the sandbox children read its documents.
        budget.root = None


def _feed(parser: BytesFeedParser, data: bytes, *, start: int, end: int) -> None:
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

    def __init__(
        self, data: bytes | _FileBytes, *, spool: Callable[[], Path] | None = None
    ) -> None:
        # The raw message, or the spooled file it is in (read by ranges).
        self.data = data
        self.runs: list[tuple[int, int]] = []
        self.marker = f"#mailbot-elided-{secrets.token_hex(8)}-"
        # Where a big attachment is decoded to (``decode_base64``); None: memory.
        self.spool = spool

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

    def decode_base64(self, payload: str, *, to_file: bool = False) -> bytes | SpooledData | None:
        """What ``get_payload(decode=True)`` returns for base64 without defects, else None.

        ``to_file``: when ``spool`` is set and the payload's runs hold at least
        ``bounds.SPOOL_DECODED_BYTES``, the bytes are decoded into a new file of the
        spool, never held whole (a ``SpooledData``).
        """
        if (
            to_file
            and self.spool is not None
            and self._run_bytes(payload) >= bounds.SPOOL_DECODED_BYTES
        ):
            sink = SpoolSink(self.spool())
            try:
                size = self._decode_base64(payload, sink.write)
            except BaseException:
                sink.discard()
                raise
            if size is None:
                sink.discard()
                return None
            return sink.done()
        out = io.BytesIO()
        if self._decode_base64(payload, out.write) is None:
            return None
        return out.getvalue()

    def _run_bytes(self, payload: str) -> int:
        return sum(p[1] - p[0] for p in self._pieces(payload) if isinstance(p, tuple))

    def _decode_base64(self, payload: str, write: Callable[[bytes], object]) -> int | None:
        """Decode the payload window by window into ``write``; its size, None on a defect."""
        carry = b""
        padded = False
        size = 0
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
                decoded = binascii.a2b_base64(chunk[:cut], strict_mode=True)
            except binascii.Error:
                return None
            write(decoded)
            size += len(decoded)
        if carry:
            return None  # bad length: the stdlib adds padding and a defect
        return size

    def _windows(self, payload: str) -> Iterator[bytes]:
        for piece in self._pieces(payload):
            if isinstance(piece, bytes):
                yield piece
                continue
            for pos in range(piece[0], piece[1], _ELIDE_WINDOW):
                yield self.data[pos : min(pos + _ELIDE_WINDOW, piece[1])]


class _FileBytes:
    """A spooled message's bytes, read by ranges (``data[start:end]``) as ``_Elided`` needs."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self.size)
        return os.pread(self.fd, max(0, stop - start), start)


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
