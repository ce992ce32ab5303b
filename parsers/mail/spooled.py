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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from parsers.mail.headers import _scan_head
from parsers.mail.message import HeadReading, _parse_data, _Whole, parse_message
from parsers.mail.report import _Report
from parsers.mail.structure import _BASE64_RUN, _ELIDE_MIN_BYTES, _Elided, _FileBytes
from parsers.types import ParsedMail

if TYPE_CHECKING:
    from parsers.rules import ParseLimits

# Smaller files are read whole: a skeleton would save nothing worth its pass.
SKELETON_MIN_BYTES = 1 << 20
_READ = 1 << 20


def parse_spooled(
    path: Path,
    *,
    limits: ParseLimits,
    head: HeadReading | None = None,
    spool: Callable[[], Path] | None = None,
) -> ParsedMail:
    """``parse_message`` of the file at ``path`` (see the module); ``spool`` makes new files.

    Raises ``MailParseError`` for an empty file (as ``parse_message``), ``OSError``
    when it cannot be read.
    """
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size < SKELETON_MIN_BYTES:
            return parse_message(stream.read(), limits=limits, head=head)  # empty: refused there
        elided = _Elided(_FileBytes(stream.fileno(), size), spool=spool)
        skeleton, lines, digest = _skeleton(stream, elided)
        if not _stands_for_the_message(skeleton, elided, limits):
            stream.seek(0)
            return parse_message(stream.read(), limits=limits, head=head)
        whole = _Whole(sha256=digest, size=size, lines=lines, elided=elided)
        return _parse_data(skeleton, limits=limits, head=head, whole=whole)


def _skeleton(stream: BinaryIO, elided: _Elided) -> tuple[bytes, int, str]:
    """The file with its long base64 runs elided, its line count and its sha256.

    A run is a maximal sequence of whole base64-looking lines
    (``structure._BASE64_RUN``); one of at least ``_ELIDE_MIN_BYTES`` is
    replaced by its placeholder, its last line end kept
    (``structure._elidable_runs``). The file is read in blocks cut at line
    ends; a run may go on from one block to the next.
    """
    out = bytearray()
    digest = hashlib.sha256()
    lines = 0
    run = _Run()
    offset = 0
    for block in _blocks(stream):
        digest.update(block)
        lines += block.count(b"\n")
        pos = 0
        for match in _BASE64_RUN.finditer(block):
            start, end = match.span()
            if start > pos or not run.open:
                run.close(out, elided)
                out += block[pos:start]
                run.start(offset + start)
            run.extend(block[start:end])
            pos = end
        if pos < len(block):
            run.close(out, elided)
            out += block[pos:]
        offset += len(block)
    run.close(out, elided)
    return bytes(out), lines, digest.hexdigest()


class _Run:
    """The run of base64 lines being read: its start in the file, its length, its last line end.

    Its bytes are kept only while it is too short to be elided.
    """

    def __init__(self) -> None:
        self.open = False
        self.begin = 0
        self.length = 0
        self.kept: list[bytes] = []
        self.last_end = b"\n"

    def start(self, offset: int) -> None:
        self.open, self.begin, self.length = True, offset, 0

    def extend(self, lines: bytes) -> None:
        self.length += len(lines)
        if self.length < _ELIDE_MIN_BYTES:
            self.kept.append(lines)
        else:
            self.kept.clear()
        self.last_end = b"\r\n" if lines.endswith(b"\r\n") else b"\n"

    def close(self, out: bytearray, elided: _Elided) -> None:
        if not self.open:
            return
        if self.length >= _ELIDE_MIN_BYTES:
            out += elided.add(self.begin, self.begin + self.length - len(self.last_end))
            out += self.last_end
        else:
            out += b"".join(self.kept)
        self.kept.clear()
        self.open = False


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    """The file in blocks of about ``_READ`` bytes, each ending at a line end (but the last)."""
    stream.seek(0)
    carry = b""
    while more := stream.read(_READ):
        block = carry + more
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry = block
            continue
        carry = block[cut:]
        yield block[:cut]
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
