"""Errors the parsers raise when there is nothing at all to work with.

Parsers turn broken input into warnings on the object they return; an
exception means the input could not be read at all, and the caller keeps the
raw bytes with status ``failed`` (see ``docs/reliability.md``).
"""

from __future__ import annotations


class ParseError(Exception):
    """Base class: an input the parsers could not read at all."""


class MailParseError(ParseError):
    """A raw message with nothing to parse.

    Raised by ``parsers.mail.parse_message`` only when the input is empty
    (zero bytes). Every other malformation, however bad, yields a
    ``ParsedMail`` with warnings instead.
    """
