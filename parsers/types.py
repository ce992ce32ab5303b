"""Frozen data that the parsers hand to the service layer.

Parsers take bytes and return these; they never touch the database or the
network, so the same objects serve the worker, ``mailbot try`` and tests.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any


class SpooledData:
    """An attachment's bytes kept in a file, standing in for ``Attachment.data``.

    What the worker holds of a big attachment: the parser decodes it straight
    into a file (``parsers.mail.parse_spooled``), the sandbox child reads the
    file (pickled, it is a call that reads it), filing copies the file in
    chunks (``mailbot.pipeline.store_attachment``). A slice reads only its
    range; any other use of it as bytes reads the file.
    """

    __slots__ = ("path", "sha256", "size")

    def __init__(self, path: Path, *, size: int, sha256: str) -> None:
        self.path = path
        self.size = size
        self.sha256 = sha256

    def __bool__(self) -> bool:
        return self.size > 0

    def __len__(self) -> int:
        return self.size

    def __reduce__(self) -> tuple[Callable[[Path], bytes], tuple[Path]]:
        return (Path.read_bytes, (self.path,))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.size)
            if stop <= start:
                return b""
            with self.path.open("rb") as stream:
                return os.pread(stream.fileno(), stop - start, start)
        return self.path.read_bytes()[key]

    def startswith(self, prefix: bytes) -> bool:
        return self[: len(prefix)] == prefix

    def __getattr__(self, name: str) -> Any:
        return getattr(self.path.read_bytes(), name)


class SpoolSink:
    """A new file of the spool being written, with the digest of what went in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream = path.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        self.digest.update(data)
        self.size += len(data)

    def done(self) -> SpooledData:
        self.stream.close()
        return SpooledData(self.path, size=self.size, sha256=self.digest.hexdigest())

    def discard(self) -> None:
        self.stream.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Attachment:
    """One file carried by a message (directly, inside a zip or a forwarded message)."""

    # The name the sender gave, decoded (RFC 2047/2231); data only, never a path.
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    sha256: str
    size: int
    # Where it came from: "attachment", "inline", "zip:<archive name>",
    # "forwarded:<depth>".
    source: str = "attachment"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedMail:
    """What we read from one raw message; always produced, even from broken mail."""

    sha256: str
    size: int
    message_id: str | None
    subject: str
    # The applicant: for a forwarded candidature, the original sender.
    sender: str
    sender_name: str
    # The envelope of the outer message as it reached us.
    from_address: str
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: str | None = None
    return_path: str | None = None
    date: datetime | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # Header names lower-cased; every value of repeated headers, in order.
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # Plain text of the body (HTML converted when there is no text part).
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    # Every MIME content type in the structure (multipart/report detection).
    content_types: tuple[str, ...] = ()
    forwarded: bool = False
    warnings: tuple[str, ...] = ()
    # A configured limit was exceeded: the message goes to needs_review.
    over_limits: bool = False

    def header(self, name: str) -> str | None:
        """First value of a header, or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None
