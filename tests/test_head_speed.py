"""The header-reading fast paths of issue 18 read what their general paths read.

Each fast path is compared with the general code it stands for: ``plain_date``
with mail-parser's ``parse_mail_date``, the ASCII address pattern of
``normalise_address`` with its checks one by one, ``_safe_text``/``_compact``
with ``header_safe`` and the ``\\s+`` substitution, ``_all_fields`` with
``_field_spans`` + ``_make_field``, ``_plain_texts``/``_plain_text`` with the
field-by-field reading, the directly filled ``_Field`` and ``ParsedMail`` with
their constructors. End to end, ``read_head`` and ``parse_message`` (with and
without the header reading) give the same result with every fast path
switched to its general path, on the golden mails, the hostile corpus, the
seeds, the everyday mailbox and mutated messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mailparser.dates import parse_mail_date

from bench.harness import everyday_messages
from parsers import addresses
from parsers.addresses import normalise_address
from parsers.mail import envelope, headers
from parsers.mail import plain_view as plain_view_module
from parsers.mail.bounds import _MAX_HEADER_VALUE
from parsers.mail.envelope import _compact
from parsers.mail.headers import (
    _all_fields,
    _Field,
    _field_spans,
    _field_text,
    _make_field,
    _new_field,
    _plain_text,
    _plain_texts,
    _safe_text,
)
from parsers.mail.message import parse_message
from parsers.mail.plain_view import plain_date
from parsers.mail.report import _Draft, _Report
from parsers.text import header_safe, nfc
from parsers.types import ParsedMail
from tests.fixtures.head_corpus import CORPUS, readings
from tests.fixtures.mutations import LIMITS, PROPERTY_SETTINGS, mutated

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.eml"))
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "mon", "Xyz"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "dec"]
ZONES = ["+0000", "-0000", "+0100", "-0930", "+1400", "-1400", "+0199", "+2359", "+9999", "GMT"]
ZONES += ["UT", "UTC", "EST", "PDT", "Z", "J", "gmt", "+00000", "+000", ""]


# -- plain_date ---------------------------------------------------------------


@st.composite
def rfc_dates(draw) -> str:
    """RFC 5322 dates around the shape ``plain_date`` reads itself, and off it."""
    weekday = draw(st.sampled_from(["", *(f"{w}, " for w in WEEKDAYS), "Thu,", "Thu , "]))
    day = draw(st.integers(0, 32))
    day_text = draw(st.sampled_from([str(day), f"{day:02d}", f" {day}"]))
    year = draw(st.one_of(st.integers(1890, 2100), st.integers(0, 9999)))
    year_text = draw(st.sampled_from([f"{year:04d}", str(year % 100)]))
    hour, minute, second = (
        draw(st.integers(0, 25)),
        draw(st.integers(0, 61)),
        draw(st.integers(0, 61)),
    )
    time = draw(
        st.sampled_from(
            [
                f"{hour:02d}:{minute:02d}:{second:02d}",
                f"{hour:02d}:{minute:02d}",
                f"{hour}:{minute}:{second}",
            ]
        )
    )
    zone = draw(st.sampled_from(ZONES))
    spacer = draw(st.sampled_from([" ", " ", " ", "  ", "\t"]))
    month = draw(st.sampled_from(MONTHS))
    text = spacer.join([f"{weekday}{day_text}", month, year_text, time, zone]).rstrip()
    return text + draw(st.sampled_from(["", "", " (UTC)", " "]))


def _mail_parser_date(text: str) -> object:
    try:
        return parse_mail_date(text).value
    except Exception as exc:  # the fast path must raise alike
        return ("raised", type(exc))


def _plain_date(text: str) -> object:
    try:
        return plain_date(text)
    except Exception as exc:
        return ("raised", type(exc))


@PROPERTY_SETTINGS
@given(rfc_dates())
def test_plain_date_is_parse_mail_date(text):
    ours, general = _plain_date(text), _mail_parser_date(text)
    assert ours == general
    if isinstance(ours, dt.datetime):
        assert ours.utcoffset() == general.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "Thu, 03 Dec 2026 06:57:44 +0000",
        "Thu, 03 Dec 2026 06:57:44 -0000",
        "03 Dec 2026 06:57:44 GMT",
        "Thu, 3 Dec 2026 06:57:44 UT",
        "Fri, 03 Dec 2026 06:57:44 +0100",
        "Sun, 29 Feb 2028 12:00:00 -0930",
        "Thu, 03 Dec 2026 23:59:60 +0000",
        "Thu, 31 Feb 2026 06:57:44 +0000",
        "Thu, 03 Dec 1899 06:57:44 +0000",
        "Thu, 03 Dec 9999 23:59:59 -1400",
        "Thu, 03 Dec 0001 00:00:00 +1400",
        "Thu, 00 Dec 2026 06:57:44 +0000",
        "Thu, 03 Dec 2026 24:00:00 +0000",
        "Thu, 03 Dec 2026 06:57:44 +0199",
        "",
        "garbage",
    ],
)
def test_plain_date_on_edge_dates(text):
    assert _plain_date(text) == _mail_parser_date(text)


def test_plain_date_answers_for_the_usual_shape(monkeypatch):
    """Not vacuous: the usual shapes never reach mail-parser."""
    monkeypatch.setattr(plain_view_module, "parse_mail_date", None)
    for text in (
        "Thu, 03 Dec 2026 06:57:44 +0000",
        "3 Dec 2026 06:57:44 GMT",
        "Sun, 29 Feb 2028 12:00:00 -0930",
    ):
        assert isinstance(plain_date(text), dt.datetime)


# -- normalise_address ----------------------------------------------------------

LOCAL_CHARS = "abcXYZ019.-_+!#$%&'*/=?^`{|}~ \t@<>()[],;:\\\"\x00\x7f"
DOMAIN_CHARS = "abcXYZ019.-_ @[]"


@st.composite
def address_texts(draw) -> str:
    local = draw(
        st.one_of(st.text(LOCAL_CHARS, max_size=8), st.sampled_from(["a" * 64, "a" * 65, "é"]))
    )
    labels = draw(
        st.lists(
            st.one_of(
                st.text(DOMAIN_CHARS, min_size=0, max_size=6),
                st.sampled_from(["b" * 63, "b" * 64, "123", "xn--bthune-7ya", "-a", "a-"]),
            ),
            min_size=1,
            max_size=4,
        )
    )
    text = f"{local}@{'.'.join(labels)}"
    if draw(st.booleans()):
        text = draw(st.sampled_from(["<{}>", " {} ", "< {} >", "{}>", "<<{}>>", "{}\n"])).format(
            text
        )
    return text


def _general_address(value: object, patch: pytest.MonkeyPatch) -> str | None:
    with patch.context() as inner:
        inner.setattr(addresses, "_ASCII_ADDRESS", re.compile(r"(?!)"))
        return normalise_address(value)


@PROPERTY_SETTINGS
@given(st.one_of(address_texts(), st.text(max_size=30)))
def test_ascii_address_pattern_is_the_general_check(value):
    with pytest.MonkeyPatch.context() as patch:
        assert normalise_address(value) == _general_address(value, patch)


@pytest.mark.parametrize(
    "value",
    [
        "s.durand@ville-bethune.fr",
        "<S.Durand@Ville-Bethune.FR>",
        "a@b",
        "a@b.c.",
        "a@123.45",
        "a@1.example",
        "a..b@x.fr",
        ".a@x.fr",
        "a.@x.fr",
        "a" * 64 + "@x.fr",
        "a" * 65 + "@x.fr",
        "a@" + "b" * 63 + ".fr",
        "a@" + "b" * 64 + ".fr",
        "a@" + ".".join(["b" * 60] * 5) + ".fr",
        "a@b-.fr",
        "a@-b.fr",
        "a@x.123",
        "a!#$%&'*+/=?^_`{|}~-@x.fr",
        "a b@x.fr",
        "  a@b.fr  ",
        "<>",
        "",
        "x@[1.2.3.4]",
    ],
)
def test_ascii_address_pattern_on_edge_addresses(value, monkeypatch):
    assert normalise_address(value) == _general_address(value, monkeypatch)


# -- _safe_text, _compact -------------------------------------------------------

ODD_TEXT = st.text(
    st.sampled_from(
        list("ab é名 \t\r\n\x00\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029\u3000\u200b")
    )
)


@PROPERTY_SETTINGS
@given(st.one_of(ODD_TEXT, st.text()), st.integers(0, 40))
def test_safe_text_is_header_safe(text, max_length):
    assert _safe_text(text, max_length) == header_safe(text, max_length=max_length)


@PROPERTY_SETTINGS
@given(st.one_of(ODD_TEXT, st.text()))
def test_compact_is_the_white_space_substitution(text):
    assert _compact(text) == re.sub(r"\s+", "", text)


def test_the_only_printable_white_space_is_the_space():
    """What ``_safe_text`` and ``_compact`` rely on, over every code point."""
    unsafe = re.compile(r"[\r\n\x00\u2028\u2029\x85\x0b\x0c]")
    found = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if (char := chr(code)).isprintable()
        and (char.isspace() or re.fullmatch(r"\s", char) or unsafe.fullmatch(char))
    ]
    assert found == ["0x20"]


# -- header fields ----------------------------------------------------------------

FIELD_PIECES = st.sampled_from(
    [
        b"Subject: Bonjour\n",
        b"Subject: Bonjour\r\n",
        b"To: a@b.fr,\n b@c.fr\n",
        b"To: a@b.fr,\r\n\tb@c.fr\r\n",
        b"From a@b Thu Dec  3 06:57:44 2026\n",
        b" continuation\n",
        b"\tcontinuation\n",
        b"no colon here\n",
        b": no name\n",
        b"X-Empty:\n",
        b"X-Spaces:   \t \n",
        b"X-Trail: value  \t\n",
        b"X-Bare-CR: a\rb\n",
        b"X-Latin: caf\xe9\n",
        b"X-Enc: =?utf-8?q?B=C3=A9thune?=\n",
        b" Name : value\n",
        b"\n",
        b"\r\n",
        b"X-Last: no end",
        b"Date: Thu, 03 Dec 2026 06:57:44 +0000\n",
    ]
)


def _general_fields(block: bytes) -> tuple[_Field, ...]:
    fields = (_make_field(block[start:stop]) for start, stop in _field_spans(block))
    return tuple(f for f in fields if f is not None)


@PROPERTY_SETTINGS
@given(st.lists(FIELD_PIECES, max_size=8).map(b"".join))
def test_all_fields_is_field_spans_and_make_field(block):
    ours, general = _all_fields(block), _general_fields(block)
    assert ours == general
    assert [vars(f) for f in ours] == [vars(f) for f in general]


def _general_text(item: _Field, max_length: int) -> str:
    return header_safe(nfc(_field_text(item)), max_length=max_length)


VALUES = st.one_of(
    st.sampled_from(
        [
            b"Bonjour",
            b"Compte rendu r\xc3\xa9union",
            b"e\xcc\x81t\xc3\xa9",  # not NFC
            b"  spaced  out  ",
            b"tab\there",
            b"a\r\n b",
            b"a\nb",
            b"caf\xe9",
            b"=?utf-8?q?B=C3=A9thune?=",
            b"=?bogus?q?x?=",
            b"",
            b"\xe2\x80\xa8sep",
            b"x" * 3000,
            b"\xc2\xa0nbsp",
        ]
    ),
    st.binary(max_size=20),
    st.text(max_size=20).map(lambda text: text.encode("utf-8", "surrogatepass")),
)


@PROPERTY_SETTINGS
@given(VALUES, st.integers(1, 4000))
def test_plain_text_is_the_field_text(value, max_length):
    found = _plain_text(value, max_length)
    if found is not None:
        assert found == _general_text(_new_field("X", value, b""), max_length)


@PROPERTY_SETTINGS
@given(st.lists(VALUES, max_size=6))
def test_plain_texts_are_the_field_texts(values):
    fields = tuple(_Field(name=f"X-{n}", value=value, line=b"") for n, value in enumerate(values))
    found = _plain_texts(fields)
    if found is not None:
        general = [_general_text(item, _MAX_HEADER_VALUE) for item in fields]
        assert [text[:_MAX_HEADER_VALUE] for text in found] == general


# -- directly filled dataclasses ----------------------------------------------------


def test_direct_fields_are_the_constructors():
    assert not hasattr(ParsedMail, "__post_init__")
    # _Field's own __post_init__ only sets ``key``, which _new_field sets too.
    assert [f.name for f in dataclasses.fields(_Field)] == ["name", "value", "line", "key"]
    item = _new_field("Subject", b"x", b"Subject: x\n")
    built = _Field(name="Subject", value=b"x", line=b"Subject: x\n")
    assert item == built and vars(item) == vars(built) and repr(item) == repr(built)
    for item in _all_fields(b"Subject: x\nTo: a@b.fr\n"):
        assert set(vars(item)) == {f.name for f in dataclasses.fields(_Field)}
    mail = _Draft(sha256="0" * 64, size=1).build(_Report())
    names = {f.name for f in dataclasses.fields(ParsedMail)}
    assert set(vars(mail)) == names
    assert mail == ParsedMail(**{name: getattr(mail, name) for name in names})
    assert repr(mail) == repr(ParsedMail(**{name: getattr(mail, name) for name in names}))


# -- end to end --------------------------------------------------------------------------


def _general_build(self: _Draft, report: _Report) -> ParsedMail:
    names = [f.name for f in dataclasses.fields(ParsedMail)]
    mail = _FAST_BUILD(self, report)
    return ParsedMail(**{name: getattr(mail, name) for name in names})


_FAST_BUILD = _Draft.build


def _general_paths(patch: pytest.MonkeyPatch) -> None:
    """Every fast path of the header reading switched to its general path."""
    patch.setattr(headers, "_all_fields", _general_fields)
    patch.setattr(envelope, "_plain_texts", lambda fields: None)
    patch.setattr(envelope, "_plain_text", lambda value, max_length: None)
    patch.setattr(envelope, "_safe_text", lambda text, n: header_safe(text, max_length=n))
    patch.setattr(envelope, "_compact", lambda text: re.sub(r"\s+", "", text))
    patch.setattr(plain_view_module, "plain_date", lambda text: parse_mail_date(text).value)
    patch.setattr(addresses, "_ASCII_ADDRESS", re.compile(r"(?!)"))
    patch.setattr(_Draft, "build", _general_build)


def _both_ways(raw: bytes, patch: pytest.MonkeyPatch) -> tuple[object, object]:
    ours = readings(raw)
    with patch.context() as inner:
        _general_paths(inner)
        general = readings(raw)
    return ours, general


@pytest.mark.parametrize("name", list(CORPUS))
def test_reading_is_the_same_on_the_general_paths(name, monkeypatch):
    ours, general = _both_ways(CORPUS[name], monkeypatch)
    assert ours == general
    whole, _first, later = ours if len(ours) == 3 else (*ours, [])
    assert all(item == whole for item in later)


HEADER_LINES = st.sampled_from(
    [
        b"Date: Thu, 03 Dec 2026 06:57:44 +0100",
        b"Date: 3 Dec 2026 06:57:44 GMT",
        b"Date: Thu, 31 Feb 2026 06:57:44 +0000",
        b"Date: Thu, 03 Dec 26 06:57:44 EST",
        b"From: Sophie Durand <s.durand@ville-bethune.fr>",
        b"From: a..b@x.fr",
        b"From: =?utf-8?q?Soph=C3=AEe?= <s@x.fr>",
        b"To: Sophie <s@x.fr>, Marc <m@y.fr>",
        b"To: a@123.45, " + b"a" * 70 + b"@x.fr",
        b'Cc: "Durand, Sophie" <s.durand@ville-bethune.fr>',
        b"Reply-To: <S.Durand@Ville-Bethune.FR>",
        b"Subject:   spaced  out  ",
        b"Subject: Compte rendu r\xc3\xa9union",
        b"Subject: caf\xe9",
        b"Subject: =?utf-8?b?w6l0w6k=?=",
        b"Subject: a\r\n b",
        b"Message-ID: <a b@c>",
        b"Message-ID: x@y",
        b"In-Reply-To: <x@y>\r\n <z@w>",
        b"References: <x@y> <z@w>",
        b"Return-Path: <>",
        b"X-Dup: 1",
        b"X-Dup: 2",
    ]
)


@PROPERTY_SETTINGS
@given(st.sampled_from(sorted(CORPUS)), st.lists(HEADER_LINES, max_size=5), st.randoms())
def test_reading_is_the_same_with_mutated_headers(name, lines, random):
    raw = CORPUS[name]
    end = raw.find(b"\r\n\r\n")
    if end >= 0:
        block = raw[:end].split(b"\r\n")
        for line in lines:
            block.insert(random.randint(0, len(block)), line)
        raw = b"\r\n".join(block) + raw[end:]
    with pytest.MonkeyPatch.context() as patch:
        ours, general = _both_ways(raw, patch)
    assert ours == general


@PROPERTY_SETTINGS
@given(mutated())
def test_reading_is_the_same_on_mutated_candidatures(raw):
    with pytest.MonkeyPatch.context() as patch:
        ours, general = _both_ways(raw, patch)
    assert ours == general


def test_the_fast_paths_read_the_everyday_mail(monkeypatch):
    """Not vacuous: on ordinary mail the header block takes the fast paths."""
    answers: list[bool] = []
    real = envelope._plain_texts

    def counting(fields):
        found = real(fields)
        answers.append(found is not None)
        return found

    monkeypatch.setattr(envelope, "_plain_texts", counting)
    monkeypatch.setattr(headers, "_make_field", None)  # the split path builds the fields
    for raw in everyday_messages(3):
        parse_message(raw, limits=LIMITS)
    assert answers and all(answers)
