"""Frozen data that the parsers hand to the service layer.

Parsers take bytes and return these; they never touch the database or the
network, so the same objects serve the worker, ``mailbot try`` and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType


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
