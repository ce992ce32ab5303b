"""The address and Date headers read without mail-parser, when they are plain.

mail-parser (``envelope._HeaderView``) reads every address header through a
character scanner, the standard library's ``getaddresses`` and a second
scanner for encoded words, then the Date header: about 2 ms a message, the
largest part of reading a header block. Most mail writes these headers
plainly: ``Name <local@domain>`` or ``local@domain``, comma-separated,
names of plain words or one quoted string, a Date mail-parser's own date
reader is given as it would be.

``plain_view`` reads exactly those and answers None for anything else
(encoded words, comments, groups, routes, backslashes, control characters,
a repeated field, any address outside a strict dot-atom grammar, a Date
that is not printable ASCII): then mail-parser reads the headers as before.
For what it reads, its answer is mail-parser's (the pairs, the date, no
defect); ``tests/test_plain_view.py`` checks this against ``_HeaderView``
on generated header blocks, and the whole ``ParsedMail`` with and without
it on the golden, hostile, seed, mutated and bench corpora.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from mailparser.dates import parse_mail_date

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ADDR = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
# Words of a display name: atom characters and dots (obs-phrase), and
# letters beyond ASCII, none of the C1 controls, line or paragraph
# separators, surrogates or non-characters.
_WORD_CHARS = rf"{_ATEXT}.\xa1-\u2027\u202a-\ud7ff\ue000-\ufffd"
_PHRASE = rf"[{_WORD_CHARS}]+(?:[ \t]+[{_WORD_CHARS}]+)*"
_QUOTED = r'"[^"\\\x00-\x1f\x7f-\xa0\u2028\u2029\ud800-\udfff\ufffe\uffff]*"'
_ITEM = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDR})|(?:(?P<phrase>{_PHRASE})|(?P<quoted>{_QUOTED}))"
    rf"[ \t]*<(?P<angle>{_ADDR})>)[ \t]*(?:,|\Z)"
)
_SPACES = re.compile(r"[ \t]+")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_PLAIN_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) (" + "|".join(_MONTHS) + r") "
    r"([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) (?:([+-])([0-9]{2})([0-9]{2})|GMT|UT)",
    re.ASCII,
)
# Texts up to this length have their readings kept (below); mail-parser's
# readings of dates are not: it may warn, and each message's report must say so.
_SHORT_TEXT = 1024
_PRINTABLE_ASCII = re.compile(r"[ \t\x21-\x7e]*")
_VIEW_FIELDS = {"from": "from_", "to": "to", "cc": "cc", "reply-to": "reply_to"}


@dataclass
class PlainView:
    """What ``envelope`` reads from mail-parser's view, read the plain way."""

    from_: list[tuple[str, str]] = field(default_factory=list)
    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    date: datetime | None = None
    address_header_defects: list[dict] = field(default_factory=list)


def plain_view(texts: list[tuple[str, str]]) -> PlainView | None:
    """The view of ``(lower-case name, text)`` pairs, as mail-parser would give it; or None.

    ``texts`` are the address and Date fields in the form ``envelope``
    gives them to mail-parser (unfolded, cut, decoded to text).
    """
    view = PlainView()
    seen: set[str] = set()
    for key, text in texts:
        if key in seen:
            return None  # mail-parser reads the first and checks the others
        seen.add(key)
        if key == "date":
            if not _PRINTABLE_ASCII.fullmatch(text):
                return None
            view.date = plain_date(text.lstrip(" \t"))
            continue
        pairs = _addresses_of(text)
        if pairs is None:
            return None
        setattr(view, _VIEW_FIELDS[key], pairs)
    return view


def plain_date(text: str) -> datetime | None:
    """``parse_mail_date(text).value``, without its scanner when ``text`` has the usual shape.

    ``Thu, 03 Dec 2026 06:57:44 +0000`` (also ``-0000``, ``GMT``, ``UT``, no
    weekday), single spaces, a real date and time of 1900 or later:
    mail-parser's own computation, done directly (a wrong weekday does not
    change the value; ``-0000`` is UTC, as to mail-parser). Anything else,
    leap seconds and out-of-range values included, is mail-parser's to read.
    """
    found = _usual_date(text) if len(text) <= _SHORT_TEXT else _plain_date_now(text)
    return parse_mail_date(text).value if found is _UNUSUAL else found


_UNUSUAL = object()


def _plain_date_now(text: str) -> datetime | object:
    """The date of ``text`` when it has the usual shape and is in range, else ``_UNUSUAL``."""
    found = _PLAIN_DATE.fullmatch(text)
    if found is not None:
        day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = found.groups()
        # Fixed-width digit strings compare as their numbers do.
        in_range = hour < "24" and minute < "60" and second < "60" and year >= "1900"
        if in_range and (sign is None or zone_minutes < "60"):
            try:
                value = datetime(
                    int(year),
                    _MONTHS[month],
                    int(day),
                    int(hour),
                    int(minute),
                    int(second),
                    tzinfo=UTC,
                )
                if sign is None or zone_hours == zone_minutes == "00":
                    return value
                offset = int(zone_hours) * 60 + int(zone_minutes)
                return value - timedelta(minutes=-offset if sign == "-" else offset)
            except (OverflowError, ValueError):
                pass  # mail-parser says why
    return _UNUSUAL


# Values are read again and again: the same senders, the same recipients,
# dates to the second of a batch sent at once. Both readings are pure
# functions of a short text (a datetime and tuples of strings cannot be
# changed), so the last few hundred answers are kept, as ``classify`` keeps
# its folded values; ``tests/test_head_speed2.py`` compares them with the
# uncached readings.
_usual_date = functools.lru_cache(maxsize=512)(_plain_date_now)


def _pairs(text: str) -> tuple[tuple[str, str], ...] | None:
    found = _addresses(text)
    return None if found is None else tuple(found)


_pairs_short = functools.lru_cache(maxsize=512)(_pairs)


def _addresses_of(text: str) -> list[tuple[str, str]] | None:
    """``_addresses(text)``, kept for short texts (a new list each time)."""
    if len(text) > _SHORT_TEXT:
        return _addresses(text)
    found = _pairs_short(text)
    return None if found is None else list(found)


def _addresses(text: str) -> list[tuple[str, str]] | None:
    """(display name, address) of each plain item of an address list; None if one is not."""
    if "=?" in text:
        return None  # encoded words: mail-parser decodes them in context
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    while pos < end:
        found = _ITEM.match(text, pos)
        if found is None or found.end() == pos:
            return None
        bare, phrase, quoted, angle = found.group("bare", "phrase", "quoted", "angle")
        if bare is not None:
            pairs.append(("", bare))
        else:
            if phrase is None:
                name = quoted[1:-1]
            elif "  " in phrase or "\t" in phrase:
                name = _SPACES.sub(" ", phrase)
            else:
                name = phrase  # nothing to squeeze
            pairs.append(("" if name == angle else name, angle))
        pos = found.end()
        if text[pos - 1 : pos] == "," and not text[pos:].strip(" \t"):
            return None  # an empty last item
    return pairs or None


def plain_parseaddr(value: str) -> tuple[str, str]:
    """``email.utils.parseaddr(value)``, without its parser when ``value`` is one plain item.

    ``tests/test_plain_view.py`` checks both answers agree on generated values.
    """
    found = _ITEM.match(value)
    if found is not None and found.end() == len(value) and not value.endswith(","):
        bare, angle = found.group("bare"), found.group("angle")
        if bare is not None:
            return "", bare
        phrase, quoted = found.group("phrase"), found.group("quoted")
        return (_SPACES.sub(" ", phrase) if phrase is not None else quoted[1:-1]), angle
    return parseaddr(value)
