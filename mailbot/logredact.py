"""Logs name messages and dossiers, never people.

Log lines carry message ids, ledger ids and dossier references; call sites
do not pass addresses, names or subjects. This filter is the safety net for
what they cannot control: an SMTP server's answer (``550 <victim@…>:
Recipient address rejected``), an exception's text, a library's message.
Every e-mail address in a record's message, arguments and exception text is
replaced by ``<address>`` before any handler writes it. A Message-ID
header value has the same shape and is redacted too (some clients put the
sender's address in it): log lines name a message by its ledger id.
"""

from __future__ import annotations

import logging
import re

ADDRESS = re.compile(
    r"[^\s<>@\"',;:()\[\]]+@[A-Za-z0-9\u00a0-\uffff-]+(?:\.[A-Za-z0-9\u00a0-\uffff-]+)+"
)
REDACTED = "<address>"


def redact(text: str) -> str:
    return ADDRESS.sub(REDACTED, text)


class RedactAddresses(logging.Filter):
    """Rewrites the record in place so that every handler sees the redacted text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: log what we have, redacted
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None if record.exc_text else record.exc_info
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactAddresses) for f in handler.filters):
            handler.addFilter(RedactAddresses())
