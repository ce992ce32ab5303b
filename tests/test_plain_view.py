"""``parsers.mail.plain_view`` reads plain address and Date headers as mail-parser does.

Two levels. The view: on generated header blocks (plain pieces that probe
the edges of the plain grammar, mixed with hostile ones), whenever
``plain_view`` answers, its pairs, date and (absent) defects are those of
``envelope._HeaderView`` on the same block. The message: the whole
``ParsedMail`` (warnings, sender, recipients, date...) and the header-only
reading of the first pass are the same with and without the plain view, on
the golden mails, the hostile corpus, the seeds, mutated candidatures and
the backlog bench's everyday mail.
"""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import everyday_messages
from parsers.mail import envelope, read_head
from parsers.mail import plain_view as plain_view_module
from parsers.mail.headers import _scan_head
from parsers.mail.plain_view import plain_parseaddr, plain_view
from parsers.mail.report import _Report
from tests.fixtures.hostile_mail import CASES
from tests.fixtures.mutations import LIMITS, PROPERTY_SETTINGS, SEEDS, mutated, parsed_fields

READ = ("from_", "to", "cc", "reply_to", "date", "address_header_defects")
GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.eml"))

NAMES = st.sampled_from(
    [
        "Jean",
        "Jean Dupont",
        "Jean  Dupont",
        "Jean\tDupont",
        "J. Dupont",
        "Jean.Dupont",
        ".",
        "Hélène Lefèvre",
        "Info Région",
        "Mairie de Béthune – service",
        "Ζωή",
        "名前",
        "Jean\xa0Dupont",
        "Jean\u2028Dupont",
        "Jean\x85Dupont",
        "Jean\u200bDupont",
        "jean@example.fr",
        "a=b",
        "O'Brien",
        '"Dupont, Jean"',
        '"jean@example.fr"',
        '""',
        '" Jean "',
        '"Jean <x@y.fr>"',
        '"Jean \\" Dupont"',
        '"Hélène"',
        '"=?utf-8?q?B=C3=A9thune?="',
        "=?utf-8?q?B=C3=A9thune?=",
        "Jean (commentaire)",
        "Jean:",
        "Jean;",
        "Jean [x]",
        "",
    ]
)
ADDRESSES = st.sampled_from(
    [
        "jean@example.fr",
        "Jean.Dupont@Example.FR",
        "a+tag@sub.example.org",
        "o'brien@example.ie",
        "x!#$%&'*+/=?^_`{|}~-@example.com",
        "jean@example",
        "jean@exa_mple.fr",
        "jean..dupont@example.fr",
        ".jean@example.fr",
        "jean.@example.fr",
        "jean@-example.fr",
        "jean@example.fr.",
        "jean@123.45",
        "jéan@example.fr",
        "jean@exämple.fr",
        '"jean dupont"@example.fr',
        "jean@[127.0.0.1]",
        "jean @ example.fr",
        "@example.fr",
        "jean@",
        "",
    ]
)


@st.composite
def address_item(draw) -> str:
    name, address = draw(NAMES), draw(ADDRESSES)
    space = draw(st.sampled_from(["", " ", "  ", "\t"]))
    form = draw(st.sampled_from(["bare", "angle", "angle-no-name", "junk"]))
    if form == "bare":
        return f"{space}{address}{space}"
    if form == "angle":
        return f"{space}{name}{draw(st.sampled_from(['', ' ', '  ']))}<{address}>{space}"
    if form == "angle-no-name":
        return f"<{address}>"
    return draw(st.text(alphabet='a@.<>",;:()\\ =?é\t', max_size=12))


ADDRESS_VALUE = st.lists(address_item(), min_size=1, max_size=4).map(
    lambda items: ",".join(items)
) | st.lists(address_item(), min_size=1, max_size=3).map(lambda items: ", ".join(items) + ",")
DATE_VALUE = st.sampled_from(
    [
        "Wed, 02 Dec 2026 17:17:12 +0000",
        "Tue, 24 Nov 2026 10:00:00 +0100",
        " Tue, 24 Nov 2026 10:00:00 +0100 ",
        "24 Nov 2026 10:00 GMT",
        "Mon, 24 Nov 2026 10:00:00 +0100",
        "Tue, 31 Feb 2026 10:00:00 +0100",
        "Tue, 24 Nov 2026 25:00:00 +0100",
        "Tue, 24 Nov 2026 10:00:00 +0100 (CET)",
        "2026-11-24T10:00:00Z",
        "Tue, 24 Nov 2026 10:00:00",
        "Tue, 24 Nov 26 10:00:00 EST",
        "mardi 24 novembre 2026",
        "",
    ]
) | st.text(alphabet="0123456789 :+-,()ADEFMNOSTWuvaecno\t", max_size=40)


def _texts(block: bytes) -> list[tuple[str, str]]:
    """The (key, text) pairs ``envelope`` gives to the view, and the lines mail-parser gets."""
    fields = _scan_head(block, LIMITS, _Report()).fields
    return [
        (f.key, envelope._mail_parser_text(f, LIMITS))
        for f in fields
        if f.key in envelope._MAILPARSER_FIELDS
    ]


def _both_views(block: bytes) -> tuple[tuple | None, tuple]:
    texts = _texts(block)
    plain = plain_view(texts)
    lines = b"".join(f"{key}: {text}\n".encode() for key, text in texts)
    full = envelope._HeaderView.from_bytes(lines + b"\n")
    ours = tuple(getattr(plain, name) for name in READ) if plain is not None else None
    return ours, tuple(getattr(full, name) for name in READ)


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from(["From", "To", "Cc", "Reply-To", "Date", "to"]), ADDRESS_VALUE),
        min_size=1,
        max_size=5,
    ),
    DATE_VALUE,
)
def test_plain_view_reads_what_mail_parser_reads(headers, date):
    headers = [(n, date if n == "Date" else v) for n, v in headers]
    block = "".join(f"{name}: {value}\n" for name, value in headers).encode() + b"\n"
    ours, full = _both_views(block)
    assert ours is None or ours == full


@pytest.mark.parametrize(
    "block",
    [
        "From: Info Région <news@region.example.net>\nTo: n.bataillon@ville-bethune.fr\n"
        "Date: Wed, 02 Dec 2026 17:17:12 +0000\n",
        'To: "Dupont, Jean" <jean@example.fr>, marie@example.fr,\tPaul  Petit <paul@x.fr>\n',
        'Reply-To: "jean@example.fr" <jean@example.fr>\nCc: J. Dupont <j@example.fr>\n',
        "From: Mairie de Béthune – service <Mairie@Ville-Bethune.FR>\nDate: 24 Nov 26 10:00 EST\n",
    ],
)
def test_plain_view_answers_for_plain_headers(block):
    ours, full = _both_views(block.encode() + b"\n")
    assert ours is not None
    assert ours == full
    assert ours[0] or ours[1] or ours[2] or ours[3]


@pytest.mark.parametrize(
    "block",
    [
        "From: =?utf-8?q?Mairie_de_B=C3=A9thune?= <mairie@ville-bethune.fr>\n",
        "From: a@b.fr\nFrom: c@d.fr\n",
        "To: undisclosed-recipients:;\n",
        "From: jean@example.fr (Jean)\n",
        'From: "Jean \\" Dupont" <jean@example.fr>\n',
        "To: a@b.fr,\n",
        "To: a@b.fr,,c@d.fr\n",
        "From: <@route:a@b.fr>\n",
        "From: jean@example.fr <autre@example.fr>\n",
        "Date: mardi 24 novembre 2026 à 10 h\n",
        "To:\n",
    ],
)
def test_plain_view_leaves_anything_else_to_mail_parser(block):
    ours, _full = _both_views(block.encode() + b"\n")
    assert ours is None


def _both_ways(raw: bytes, patch: pytest.MonkeyPatch) -> tuple[object, object]:
    ours = parsed_fields(raw), _head_fields(raw)
    with patch.context() as inner:
        inner.setattr(envelope, "PLAIN_VIEW", False)
        full = parsed_fields(raw), _head_fields(raw)
    return ours, full


def _head_fields(raw: bytes) -> object:
    end = raw.find(b"\r\n\r\n")
    header = raw[: end + 4] if end >= 0 else raw
    if not header:
        return None
    mail = read_head(header, size=len(raw), limits=LIMITS).mail
    return mail, dict(mail.headers)


def _corpus() -> dict[str, bytes]:
    mails = {path.name: path.read_bytes() for path in GOLDEN}
    mails.update({f"hostile:{name}": build() for name, build in CASES.items()})
    mails.update({f"seed:{n}": raw for n, raw in enumerate(SEEDS)})
    mails.update({f"everyday:{n}": raw for n, raw in enumerate(everyday_messages(6))})
    return mails


CORPUS = _corpus()


@pytest.mark.parametrize("name", list(CORPUS))
def test_parsed_mail_is_the_same_without_the_plain_view(name, monkeypatch):
    ours, full = _both_ways(CORPUS[name], monkeypatch)
    assert ours == full


def test_the_plain_view_reads_most_of_the_corpus(monkeypatch):
    """Not a vacuous comparison: the plain reading is used on ordinary mail."""
    calls: list[bool] = []
    real = envelope.plain_view

    def counting(texts):
        found = real(texts)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(envelope, "plain_view", counting)
    for raw in everyday_messages(3):
        parsed_fields(raw)
    assert calls and all(calls)
    calls.clear()
    for path in GOLDEN:
        parsed_fields(path.read_bytes())
    assert sum(calls) >= len(calls) // 3


@PROPERTY_SETTINGS
@given(mutated())
def test_parsed_mail_is_the_same_without_the_plain_view_on_mutated_candidatures(raw):
    with pytest.MonkeyPatch.context() as patch:
        ours, full = _both_ways(raw, patch)
    assert ours == full


@PROPERTY_SETTINGS
@given(st.lists(address_item(), min_size=1, max_size=2).map(", ".join))
def test_plain_parseaddr_is_parseaddr(value):
    assert plain_parseaddr(value) == parseaddr(value)


@pytest.mark.parametrize(
    "value",
    ["Info Région <news@region.example.net>", "jean@example.fr", '"Dupont, J" <j@x.fr>'],
)
def test_plain_parseaddr_reads_plain_values_itself(value, monkeypatch):
    expected = parseaddr(value)
    monkeypatch.setattr(plain_view_module, "parseaddr", None)  # not called
    assert plain_parseaddr(value) == expected
