"""``parsers.mail.envelope._HeaderView`` reads what the full ``mailparser.MailParser`` reads.

``_HeaderView`` stops mail-parser after ``_reset`` (address and Date headers)
and skips the part walk and header dicts that ``parse`` builds next. These
tests compare the two: the attributes we use on header blocks that hypothesis
writes, and the whole ``ParsedMail`` on the hostile corpus, the seeds and
mutated candidatures.
"""

from __future__ import annotations

import mailparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.mail import envelope as mail_envelope
from tests.fixtures.hostile_mail import CASES
from tests.fixtures.mutations import PROPERTY_SETTINGS, SEEDS, mutated, parsed_fields

# What parsers/mail/envelope.py reads from the view.
READ = ("from_", "to", "cc", "reply_to", "date", "address_header_defects")

# Pieces of address headers, broken ones included.
PIECES = st.sampled_from(
    [
        "jean@example.fr",
        "<jean@example.fr>",
        "Jean Dupont <jean.dupont@example.fr>",
        '"Dupont, Jean" <jean@example.fr>',
        "=?utf-8?q?B=C3=A9thune?= <mairie@ville-bethune.fr>",
        "=?iso-8859-1?b?Qul0aHVuZQ==?=",
        "Hélène Lefèvre <helene@example.fr>",
        "a@b.c (commentaire)",
        "undisclosed-recipients:;",
        "Équipe: a@x.fr, b@y.fr;",
        "<@route:a@b.c>",
        '"quoted\\" name" <q@x.fr>',
        "jean@example.fr <autre@example.fr>",
        "<a@b.c> <d@e.f>",
        "@",
        "<>",
        ",",
        "\t",
        "=?utf-8?b?invalid",
        "é",
    ]
)
ADDRESS_VALUE = st.one_of(
    st.lists(PIECES, min_size=1, max_size=5).map(", ".join),
    st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=5).map(" ".join),
)
DATE_VALUE = st.one_of(
    st.sampled_from(
        [
            "Tue, 24 Nov 2026 10:00:00 +0100",
            "24 Nov 2026 10:00 GMT",
            "Mon, 24 Nov 2026 10:00:00 +0100",
            "Tue, 31 Feb 2026 10:00:00 +0100",
            "Tue, 24 Nov 2026 25:00:00 +0100",
            "2026-11-24T10:00:00Z",
            "Tue, 24 Nov 2026 10:00:00",
            "",
        ]
    ),
    st.text(max_size=40),
)


def _block(headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{name}: {value}" for name, value in headers]
    text = "\n".join(lines).replace("\r", " ").replace("\n\n", "\n")
    return text.encode("utf-8", "surrogatepass") + b"\n\n"


def _views(block: bytes) -> tuple[object, object]:
    ours, full = (
        mail_envelope._HeaderView.from_bytes(block),
        mailparser.MailParser.from_bytes(block),
    )
    return (
        tuple(getattr(ours, name) for name in READ),
        tuple(getattr(full, name) for name in READ),
    )


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from(["From", "To", "Cc", "Reply-To", "Date"]), ADDRESS_VALUE),
        max_size=6,
    ),
    DATE_VALUE,
)
def test_header_view_reads_what_the_full_parser_reads(headers, date):
    headers = [(n, date if n == "Date" else v) for n, v in headers]
    try:
        block = _block(headers)
    except UnicodeEncodeError:
        return
    ours, full = _views(block)
    assert ours == full


def test_header_view_on_known_cases():
    block = (
        "From: =?utf-8?q?Mairie_de_B=C3=A9thune?= <Mairie@Ville-Bethune.fr>\n"
        'To: Jean <jean@example.fr>, "Dupont, Marie" <marie@example.fr>\n'
        "Cc: Hélène Lefèvre <helene@example.fr>, undisclosed-recipients:;\n"
        "Reply-To: <@route:a@b.c>\n"
        "Date: Tue, 31 Feb 2026 10:00:00 +0100\n\n"
    ).encode()
    ours, full = _views(block)
    assert ours == full
    assert ours[0] == full[0] != []  # the From address is read
    assert len(ours[1]) == 2


def _both_ways(raw: bytes, patch: pytest.MonkeyPatch) -> tuple[object, object]:
    ours = parsed_fields(raw)
    with patch.context() as inner:
        inner.setattr(mail_envelope, "_HeaderView", mailparser.MailParser)
        full = parsed_fields(raw)
    return ours, full


@pytest.mark.parametrize("name", list(CASES))
def test_parsed_mail_is_the_same_with_the_full_parser_on_hostile_input(name, monkeypatch):
    ours, full = _both_ways(CASES[name](), monkeypatch)
    assert ours == full


def test_parsed_mail_is_the_same_with_the_full_parser_on_the_seeds(monkeypatch):
    for raw in SEEDS:
        ours, full = _both_ways(raw, monkeypatch)
        assert ours == full


@PROPERTY_SETTINGS
@given(mutated())
def test_parsed_mail_is_the_same_with_the_full_parser_on_mutated_candidatures(raw):
    with pytest.MonkeyPatch.context() as patch:
        ours, full = _both_ways(raw, patch)
    assert ours == full
