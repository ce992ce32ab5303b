"""The envelope of a message: addresses, subject, identifiers, date.

mail-parser reads the address headers and the Date through ``_HeaderView``,
given only a small header block we built (``plain_view`` reads plain ones
the same way, faster); our code picks the sender, cuts
recipients to ``max_recipients`` and keeps Message-ID, In-Reply-To,
References and Return-Path.
"""

from __future__ import annotations

import contextlib
import functools
import re
from datetime import datetime
from typing import TYPE_CHECKING

import mailparser
from mailparser.utils import get_addresses

from parsers.addresses import normalise_address
from parsers.mail.bounds import _MAX_HEADER_VALUE, _MAX_RAW_HEADER_VALUE, _MAX_REFERENCES
from parsers.mail.charsets import _decode_words, _quoted
from parsers.mail.headers import (
    _ADDRESS_FIELDS,
    _Field,
    _field_text,
    _first,
    _header_text,
    _plain_text,
    _plain_texts,
    _safe_text,
    _unfold,
)
from parsers.mail.plain_view import PlainView, plain_view
from parsers.mail.report import _Draft, _Report
from parsers.text import header_safe, nfc

if TYPE_CHECKING:
    from parsers.rules import ParseLimits


# --------------------------------------------------------------------------
# Envelope: addresses, subject, identifiers, date
# --------------------------------------------------------------------------

_MAILPARSER_FIELDS = _ADDRESS_FIELDS | {"date"}
# Plain address and Date headers are read without mail-parser (``plain_view``);
# tests turn this off to compare both readings.
PLAIN_VIEW = True
_MESSAGE_ID = re.compile(r"<[^<>]+>")
_SPACES = re.compile(r"\s+")
_ADDRESS_OK = re.compile(r"[^\s\x00-\x1f\x7f@<>()\[\],;:\"]+@[^\s\x00-\x1f\x7f@<>()\[\],;:\"]+")
_BRACKETED = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>")


def _read_envelope(
    fields: tuple[_Field, ...], *, limits: ParseLimits, report: _Report, draft: _Draft
) -> None:
    """Everything ParsedMail takes from the outer headers."""
    # The first field of each name, looked up once (``_first`` would scan
    # the fields again for each of them).
    first = {item.key: item for item in reversed(fields)}
    draft.headers = _header_map(fields, report)
    if "subject" in first:
        # header_safe cuts last: the Subject is its header value cut shorter.
        draft.subject = draft.headers["subject"][0][:998]
    draft.message_id = _message_id(first.get("message-id"), report)
    draft.in_reply_to = _first_id(first.get("in-reply-to"))
    draft.references = _references(first.get("references"))
    draft.return_path = _return_path(first.get("return-path"))
    view = _mail_parser_view(fields, limits=limits, report=report, label="")
    draft.date = _date(view, first.get("date"), report)
    draft.sender, draft.sender_name = _pick_sender(view, fields, report=report, label="")
    draft.from_address = draft.sender
    draft.to, draft.cc = _recipients(
        view, (first.get("to"), first.get("cc")), limits=limits, report=report
    )
    reply_to = _addresses(getattr(view, "reply_to", None) if view else None)
    draft.reply_to = reply_to[0] if reply_to else None


def _header_map(fields: tuple[_Field, ...], report: _Report) -> dict[str, tuple[str, ...]]:
    """Every field's value as text; the first Subject's problems go to ``report``."""
    texts = _plain_texts(fields)
    if texts is not None:
        keys = [item.key for item in fields]
        if len(set(keys)) == len(keys):  # most blocks: no name twice
            return {key: (text[:_MAX_HEADER_VALUE],) for key, text in zip(keys, texts, strict=True)}
        texts = [text[:_MAX_HEADER_VALUE] for text in texts]
    else:
        texts = _field_texts(fields, report)
    values: dict[str, list[str]] = {}
    for item, text in zip(fields, texts, strict=True):
        found = values.get(item.key)
        if found is None:
            values[item.key] = [text]
        else:
            found.append(text)
    return {name: tuple(found) for name, found in values.items()}


def _field_texts(fields: tuple[_Field, ...], report: _Report) -> list[str]:
    """Each field's value as ``ParsedMail.headers`` keeps it, read one by one."""
    texts: list[str] = []
    subject_seen = False
    for item in fields:
        text = _plain_text(item.value, _MAX_HEADER_VALUE)
        if text is None:
            if item.key == "subject" and not subject_seen:
                text = _field_text(item, report, "the Subject header")
            else:
                text = _field_text(item)
            text = _safe_text(nfc(text), _MAX_HEADER_VALUE)
        if item.key == "subject":
            subject_seen = True
        texts.append(text)
    return texts


def _message_id(item: _Field | None, report: _Report) -> str | None:
    if item is None:
        report.warn("no Message-ID header")
        return None
    compact = _compact(_header_text(_unfold(item.value[:2048]))[0])
    found = _MESSAGE_ID.search(compact)
    if found:
        return _safe_text(found.group(0), 998)
    bare = compact.strip("<>")
    if not bare:
        report.warn("empty Message-ID header")
        return None
    report.warn("Message-ID without angle brackets")
    return header_safe(f"<{bare}>", max_length=998)


def _ids(item: _Field | None) -> list[str]:
    if item is None:
        return []
    compact = _compact(_header_text(_unfold(item.value[:_MAX_RAW_HEADER_VALUE]))[0])
    return [_safe_text(found, 998) for found in _MESSAGE_ID.findall(compact)]


def _compact(text: str) -> str:
    """``text`` without its white space (a printable string has no other than spaces)."""
    if text.isprintable():
        return text.replace(" ", "") if " " in text else text
    return _SPACES.sub("", text)


def _first_id(item: _Field | None) -> str | None:
    found = _ids(item)
    return found[0] if found else None


def _references(item: _Field | None) -> tuple[str, ...]:
    found = _ids(item)
    if len(found) > _MAX_REFERENCES:
        # Keep the thread root and the most recent ancestors (RFC 5322 3.6.4).
        found = [found[0], *found[-(_MAX_REFERENCES - 1) :]]
    return tuple(found)


def _return_path(item: _Field | None) -> str | None:
    """The Return-Path address; the empty string for the null path ``<>``."""
    if item is None:
        return None
    text = _header_text(_unfold(item.value[:1024]))[0].strip()
    inner = text.strip("<> \t")
    return _safe_text(inner.lower(), 320) if inner else ""


class _HeaderView(mailparser.MailParser):
    """mail-parser's reading of the address and Date headers, without the rest.

    ``MailParser._reset`` reads every address header (with its defects) and the
    Date header; ``parse`` then walks the parts and builds two dicts of every
    header, which we never read (a third of its cost on our header blocks).
    ``tests/test_header_view.py`` checks that the values we read, and every
    ``ParsedMail``, are those of the full ``MailParser``.
    """

    def parse(self) -> _HeaderView:
        self._reset()
        return self


def _mail_parser_view(
    fields: tuple[_Field, ...] | list[_Field], *, limits: ParseLimits, report: _Report, label: str
) -> mailparser.MailParser | PlainView | None:
    """mail-parser's reading of a small header block we built (``plain_view`` when plain)."""
    read = [(f, _mail_parser_text(f, limits)) for f in fields if f.key in _MAILPARSER_FIELDS]
    plain = plain_view([(f.key, text) for f, text in read]) if PLAIN_VIEW else None
    if plain is not None:
        return plain
    lines = [_mail_parser_line(f, text) for f, text in read]
    try:
        view = _HeaderView.from_bytes(b"".join(lines) + b"\n")
    except Exception as exc:
        report.warn(f"{label}address headers could not be read ({type(exc).__name__})")
        return None
    for defect in view.address_header_defects[:5]:
        header = str(defect.get("header", "address")).capitalize()
        report.warn(f"{label}{header} header: {defect.get('reason', 'unreadable')}")
    return view


def _mail_parser_line(item: _Field, text: str) -> bytes:
    return item.name.encode("ascii", "replace") + b": " + text.encode("utf-8") + b"\n"


def _mail_parser_text(item: _Field, limits: ParseLimits) -> str:
    """The value of an address or Date field as mail-parser is given it."""
    value = _unfold(item.value)
    if item.key == "date":
        value = value[:1024]
    else:
        # Cutting at a comma keeps whole addresses; twice the limit leaves
        # room for commas inside quoted names.
        value = _cut_after_commas(value, 2 * limits.max_recipients)[: 64 * limits.max_recipients]
    return _header_text(value)[0]


def _cut_after_commas(value: bytes, commas: int) -> bytes:
    if value.count(b",") < commas:
        return value
    pos = -1
    for _ in range(commas):
        pos = value.find(b",", pos + 1)
        if pos < 0:
            return value
    return value[:pos]


def _clean_address(address: object) -> str | None:
    """The address as ``parsers.addresses`` keeps it (the one validator), or None."""
    if not isinstance(address, str) or len(address) > 320:
        return None
    if address.isascii():
        return _clean_ascii_address(address)
    return _clean_address_now(address)


def _clean_address_now(address: str) -> str | None:
    if not address.isascii():  # lone surrogates become "?"
        address = address.encode("utf-8", "replace").decode("utf-8")
    return normalise_address(address)


# The same senders and recipients come back message after message. An ASCII
# address is read by string methods and patterns alone (no library that
# could warn), so its answer is kept; ``tests/test_head_speed2.py`` compares.
_clean_ascii_address = functools.lru_cache(maxsize=1024)(_clean_address_now)


def _clean_name(name: object) -> str:
    if not isinstance(name, str):
        return ""
    if len(name) <= 1024 and "=?" not in name:
        return _clean_plain_name(name)  # no encoded word: string methods alone
    return _clean_name_now(name)


def _clean_name_now(name: str) -> str:
    if not name.isascii():  # lone surrogates become "?"
        name = name.encode("utf-8", "replace").decode("utf-8")
    # mail-parser leaves words it finds suspicious encoded; we show them
    # decoded, header_safe removes what made them suspicious.
    name = _decode_words(name, None, "")
    return _safe_text(nfc(name), 200).strip("\"' ")


_clean_plain_name = functools.lru_cache(maxsize=1024)(_clean_name_now)


def _addresses(pairs: object) -> list[str]:
    """Lower-cased, valid, distinct addresses from mail-parser's pairs."""
    found: list[str] = []
    if not isinstance(pairs, list):
        return found
    for pair in pairs:
        address = _clean_address(pair[1]) if isinstance(pair, tuple) and len(pair) == 2 else None
        if address and address not in found:
            found.append(address)
    return found


def _pick_sender(
    view: mailparser.MailParser | PlainView | None,
    fields: tuple[_Field, ...] | list[_Field],
    *,
    report: _Report,
    label: str,
) -> tuple[str, str]:
    """(address, display name) from From, else Sender, else Return-Path."""
    pairs = getattr(view, "from_", None) if view else None
    for pair in pairs if isinstance(pairs, list) else []:
        address = _clean_address(pair[1]) if isinstance(pair, tuple) and len(pair) == 2 else None
        if address:
            return address, _clean_name(pair[0])
    from_item = _first(fields, "from")
    found = _bracketed_address(from_item) if from_item is not None else None
    if found:
        report.warn(f"{label}From header is malformed; used the address in angle brackets")
        return found
    reason = "no From header" if from_item is None else "no usable From address"
    for key, title in (("sender", "Sender"), ("return-path", "Return-Path")):
        item = _first(fields, key)
        found = _address_in(_field_text(item)) if item is not None else None
        if found:
            report.warn(f"{label}{reason}; used the {title} address")
            return found
    report.warn(f"{label}{reason}, and no Sender or Return-Path to fall back on")
    return "", ""


def _bracketed_address(item: _Field) -> tuple[str, str] | None:
    """The last <address> of a raw field, read before decoding any word.

    Decoding first would let an encoded word inject a second address.
    """
    text = _header_text(_unfold(item.value[:_MAX_RAW_HEADER_VALUE]))[0]
    matches = list(_BRACKETED.finditer(text))
    if not matches:
        return None
    found = matches[-1]
    address = _clean_address(found.group(1))
    if address is None:
        return None
    return address, _clean_name(text[: found.start()])


def _address_in(text: str) -> tuple[str, str] | None:
    """First usable (address, name) in a free-form address string."""
    text = text[:_MAX_RAW_HEADER_VALUE]
    with contextlib.suppress(Exception):
        for name, address in get_addresses(text, decode_names=True):
            clean = _clean_address(address)
            if clean:
                return clean, _clean_name(name)
    found = _ADDRESS_OK.search(text)
    if found:
        clean = _clean_address(found.group(0))
        if clean:
            return clean, _clean_name(text[: found.start()].strip(" <[\"'"))
    return None


def _recipients(
    view: mailparser.MailParser | PlainView | None,
    to_cc: tuple[_Field | None, _Field | None],
    *,
    limits: ParseLimits,
    report: _Report,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The To and Cc addresses (``to_cc``: the first To and Cc fields), cut to the limit."""
    to = _addresses(getattr(view, "to", None) if view else None)
    cc = [a for a in _addresses(getattr(view, "cc", None) if view else None) if a not in to]
    limit = limits.max_recipients
    listed = sum(f.value.count(b",") + 1 for f in to_cc if f)
    total = max(len(to) + len(cc), listed if listed > 2 * limit else 0)
    if total > limit:
        about = "about " if total > len(to) + len(cc) else ""
        report.over(
            f"{about}{total} recipients in To and Cc, over the limit of {limit}; "
            f"kept the first {limit}"
        )
        to = to[:limit]
        cc = cc[: max(0, limit - len(to))]
    return tuple(to), tuple(cc)


def _date(
    view: mailparser.MailParser | PlainView | None, item: _Field | None, report: _Report
) -> datetime | None:
    """The date of the first Date field (``item``) as mail-parser read it."""
    if item is None:
        report.warn("no Date header")
        return None
    value = view.date if view is not None else None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    report.warn(f"unreadable Date header {_quoted(_field_text(item), 60)}")
    return None
