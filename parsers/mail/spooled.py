"""``parse_spooled``: ``parse_message`` of a message in a file, without holding it.

A big message (``mailbot.intake`` spools it as it is fetched) is mostly its
attachments' base64. The file is read once, line by line, into a skeleton:
the message with each long run of base64 lines replaced by a placeholder,
exactly as ``structure._parse_structure`` elides them from a message in
memory. The skeleton is parsed; the runs are read back from the file by
ranges, and a big attachment's are decoded straight into a file of the
spool (``spool``), so neither the raw message nor the attachment is ever
held whole. The result equals ``parse_message`` of the file's bytes, but
for each such attachment's ``data``: a ``SpooledData`` naming its file.

When the skeleton cannot stand for the message (a run inside the header
block, a header block cut to the limits, no line feed at all), the file is
read whole and parsed as before.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from parsers.errors import MailParseError
from parsers.mail.headers import _scan_head
from parsers.mail.message import HeadReading, _parse_data, _Whole, parse_message
from parsers.mail.report import _Report
from parsers.mail.structure import _ELIDE_MIN_BYTES, _Elided, _FileBytes
from parsers.types import ParsedMail

if TYPE_CHECKING:
    from parsers.rules import ParseLimits

# Smaller files are read whole: a skeleton would save nothing worth its pass.
SKELETON_MIN_BYTES = 1 << 20
# One line of ``structure._BASE64_RUN``.
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/=]++\r?\n")
_READ = 1 << 20


def parse_spooled(
    path: Path,
    *,
    limits: ParseLimits,
    head: HeadReading | None = None,
    spool: Callable[[], Path] | None = None,
) -> ParsedMail:
    """``parse_message`` of the file at ``path`` (see the module); ``spool`` makes new files.

    Raises ``MailParseError`` for an empty file, ``OSError`` when it cannot be read.
    """
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size < SKELETON_MIN_BYTES:
            return parse_message(stream.read(), limits=limits, head=head)
        if size == 0:  # pragma: no cover - below SKELETON_MIN_BYTES
            raise MailParseError("empty message: there is nothing to parse")
        elided = _Elided(_FileBytes(stream.fileno(), size), spool=spool)
        skeleton, lines, digest = _skeleton(stream, elided)
        if not _stands_for_the_message(skeleton, elided, limits):
            stream.seek(0)
            return parse_message(stream.read(), limits=limits, head=head)
        whole = _Whole(sha256=digest, size=size, lines=lines, elided=elided)
        return _parse_data(skeleton, limits=limits, head=head, whole=whole)


def _skeleton(stream: BinaryIO, elided: _Elided) -> tuple[bytes, int, str]:
    """The file with its long base64 runs elided, its line count and its sha256.

    A run is a maximal sequence of whole base64-looking lines; one of at
    least ``_ELIDE_MIN_BYTES`` is replaced by its placeholder, its last line
    end kept (``structure._elidable_runs``).
    """
    out = bytearray()
    digest = hashlib.sha256()
    lines = 0
    offset = 0
    run_start = -1
    run_length = 0
    run_kept: list[bytes] = []
    last_end = b"\n"

    def close_run() -> None:
        nonlocal run_start, run_length
        if run_start < 0:
            return
        if run_length >= _ELIDE_MIN_BYTES:
            out.extend(elided.add(run_start, run_start + run_length - len(last_end)))
            out.extend(last_end)
        else:
            out.extend(b"".join(run_kept))
        run_kept.clear()
        run_start, run_length = -1, 0

    for line in _lines(stream):
        digest.update(line)
        if _BASE64_LINE.fullmatch(line):
            lines += 1
            if run_start < 0:
                run_start = offset
            run_length += len(line)
            if run_length < _ELIDE_MIN_BYTES:
                run_kept.append(line)
            elif run_kept:
                run_kept.clear()
            last_end = b"\r\n" if line.endswith(b"\r\n") else b"\n"
        else:
            close_run()
            lines += line.endswith(b"\n")
            out.extend(line)
        offset += len(line)
    close_run()
    return bytes(out), lines, digest.hexdigest()


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """The file's lines, each with its LF (the last one maybe without), read in blocks."""
    stream.seek(0)
    carry = b""
    while block := stream.read(_READ):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry = block
            continue
        carry = block[cut:]
        for line in block[: cut - 1].split(b"\n"):
            yield line + b"\n"
    if carry:
        yield carry


def _stands_for_the_message(skeleton: bytes, elided: _Elided, limits: ParseLimits) -> bool:
    """Whether the skeleton parses as the file would: no run in a header block kept whole."""
    if not elided.runs:
        return True  # the skeleton is the file itself
    if b"\n" not in skeleton:
        return False
    head = _scan_head(skeleton, limits, _Report())
    first = skeleton.find(elided.marker.encode("ascii"))
    return head.trimmed is None and first >= head.end
