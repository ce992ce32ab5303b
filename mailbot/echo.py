"""Applicant text echoed in our replies: short, on one line, with nothing clickable.

A reply quotes the project's title and greets the applicant by name. Anyone
can send a candidature with any From, so whatever we echo can reach a
stranger: the service must not carry a scam (a 4,000-character parcel
notice went out as an "intitulé"). Echoed text is therefore cut to
``ECHO_CHARS`` characters on a word boundary, links, addresses and domain
names in it are defanged (``hxxps://colis-suivi[.]example``,
``alice[at]example[.]org``) so that no mail client makes them clickable,
and display names are cut to ``NAME_CHARS``.

Domain names are recognised with the public-suffix list (offline, through
``parsers.authresults``), so ``M.Dupont`` stays as typed and
``suivi-colis.fr`` does not.
"""

from __future__ import annotations

import re

from parsers.authresults import registered_domain
from parsers.text import header_safe

ECHO_CHARS = 80
NAME_CHARS = 40
ELLIPSIS = "…"

_HTTP = re.compile(r"\bhttp(s?)(?=:)", re.IGNORECASE)
_FTP = re.compile(r"\bftp(?=:)", re.IGNORECASE)
_ADDRESS = re.compile(r"([^\s<>@\"',;:()\[\]]+)@([^\s<>@\"',;:()\[\]]+)")
_DOTTED = re.compile(r"(?<![\w.])(?:[\w-]+\.)+[\w-]{2,}(?![\w])", re.UNICODE)


def _defang_domain(match: re.Match[str]) -> str:
    name = match.group(0)
    if not registered_domain(name):
        return name
    return name.replace(".", "[.]")


def defang(text: str) -> str:
    """Links, addresses and domain names made unclickable; other text unchanged."""
    text = _FTP.sub("fxp", _HTTP.sub(r"hxxp\1", text))
    text = _ADDRESS.sub(lambda m: f"{m.group(1)}[at]{m.group(2)}", text)
    return _DOTTED.sub(_defang_domain, text)


def _cut_on_word(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    room = text[: limit - 1]
    space = room.rfind(" ")
    if space >= limit // 2:
        room = room[:space]
    return room.rstrip(" ,;:.-") + ELLIPSIS


def echo_text(value: object, *, limit: int = ECHO_CHARS) -> str | None:
    """Applicant text fit to be quoted in a reply, or None when there is nothing to quote."""
    if value is None:
        return None
    # Defanged first, then cut: what goes out is never longer than ``limit``.
    text = defang(header_safe(str(value), max_length=4 * limit))
    return _cut_on_word(text, limit) or None


def echo_name(value: object) -> str | None:
    """A display name fit for a greeting: short, one line, nothing clickable."""
    return echo_text(value, limit=NAME_CHARS)
