"""Header values we write ourselves, encoded so that every mail client reads them right."""

from __future__ import annotations

from email.header import Header

from parsers.text import header_safe


def encoded_header(name: str, value: str, *, max_length: int = 300) -> str:
    """``value`` as RFC 2047 encoded words folded to 78 columns (plain when ASCII and short).

    ``email.policy.SMTP`` folds long non-ASCII headers itself, but Python 3.11
    drops the space between two encoded words when it does ("message
    àvérifier"): encoding here, and setting the header raw, avoids it.
    """
    value = header_safe(value, max_length=max_length)
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
