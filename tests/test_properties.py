"""Property tests: the message parser never raises, the reply builder never lets text escape.

``parse_message`` is fed arbitrary bytes and mutations of real candidatures;
``build_reply`` is fed arbitrary applicant names, project titles,
Message-IDs and References. Whatever the input, the parser returns a
ParsedMail with the right digest and a one-line subject, and the reply
parses back with exactly our header set and the given recipient.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.config import load_config
from mailbot.replies import KINDS, build_reply
from parsers.errors import MailParseError
from parsers.mail import parse_message
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mutations import PROPERTY_SETTINGS, mutated

CONFIG = load_config(SHIPPED_CONFIG, environ={})
LIMITS = CONFIG.settings.limits
MAILBOX = CONFIG.settings.mailboxes[0]
UNSAFE = re.compile("[\r\n\x00\u2028\u2029]")
MSGID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,250}>")


def _check(raw: bytes) -> None:
    try:
        mail = parse_message(raw, limits=LIMITS)
    except MailParseError:
        assert raw == b""  # the one documented refusal: nothing to parse
        return
    assert mail.sha256 == hashlib.sha256(raw).hexdigest()
    assert mail.size == len(raw)
    assert not UNSAFE.search(mail.subject), repr(mail.subject)
    assert not UNSAFE.search(mail.sender_name or "")
    assert not UNSAFE.search(mail.sender or "")
    for attachment in mail.attachments:
        assert attachment.sha256 == hashlib.sha256(attachment.data).hexdigest()
        assert "/" not in attachment.filename and "\\" not in attachment.filename


@PROPERTY_SETTINGS
@given(st.binary(max_size=4000))
def test_parse_message_never_raises_on_arbitrary_bytes(raw):
    _check(raw)


header_lines = st.lists(
    st.tuples(
        st.sampled_from(["Subject", "From", "To", "Content-Type", "Message-ID", "X-Whatever"]),
        st.text(max_size=80),
    ),
    max_size=6,
)


@PROPERTY_SETTINGS
@given(header_lines, st.binary(max_size=500))
def test_parse_message_never_raises_on_arbitrary_headers(headers, body):
    raw = b"".join(
        name.encode() + b": " + value.encode("utf-8", "surrogatepass") + b"\r\n"
        for name, value in headers
    )
    _check(raw + b"\r\n" + body)


@PROPERTY_SETTINGS
@given(mutated())
def test_parse_message_never_raises_on_mutated_candidatures(raw):
    _check(raw)


# -- the reply builder ---------------------------------------------------------------------------

addresses = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True).filter(
        lambda s: ".." not in s
    ),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["fr", "org", "com", "example"]),
)
message_ids = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.from_regex(r"<[A-Za-z0-9.$_-]{1,30}@[a-z0-9.-]{1,20}>", fullmatch=True),
    st.builds(lambda t: f"<{t}@x.fr>", st.text(max_size=30)),
)
hostile_text = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            ["Jean", "\r\n", "Bcc: evil@evil.example", "\u2028", "\x00", "é", "=?utf-8?q?x?=", ":"]
        ),
        max_size=12,
    ).map("".join),
)

BASE_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "x-auto-response-suppress",
    CONFIG.settings.replies.loop_header.lower(),
    "precedence",
    "mime-version",
    "content-type",
}


@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    number=st.integers(1, 9999),
    to=addresses,
    applicant_name=hostile_text,
    intitule=hostile_text,
    missing=st.lists(st.text(max_size=60), max_size=4),
    in_reply_to=message_ids,
    references=st.lists(message_ids.filter(lambda m: m is not None), max_size=15),
)
def test_build_reply_headers_are_exactly_ours(
    kind, number, to, applicant_name, intitule, missing, in_reply_to, references
):
    reference = f"BSC-2026-{number:04d}"
    reply = build_reply(
        config=CONFIG,
        mailbox=MAILBOX,
        kind=kind,
        reference=reference,
        to=to,
        applicant_name=applicant_name,
        intitule=intitule,
        missing_text=missing,
        in_reply_to=in_reply_to,
        references=references,
    )
    head, _, _ = reply.raw.partition(b"\r\n\r\n")
    # Every physical header line is a header we set, or a folded continuation of one.
    names = []
    for line in head.split(b"\r\n"):
        assert b"\n" not in line and b"\r" not in line and b"\x00" not in line
        if line[:1] in (b" ", b"\t"):
            continue
        names.append(line.split(b":", 1)[0].decode("ascii").lower())
    expected = set(BASE_HEADERS)
    thread = [m for m in (*references, in_reply_to) if m and MSGID.fullmatch(m)]
    if in_reply_to and MSGID.fullmatch(in_reply_to):
        expected.add("in-reply-to")
    if thread:
        expected.add("references")
    assert sorted(names) == sorted(expected), names
    parsed = BytesParser(policy=email.policy.default).parsebytes(reply.raw)
    assert parsed["To"] == to and parsed["To"].addresses[0].addr_spec == to
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    for name, value in parsed.items():
        assert not UNSAFE.search(str(value)), (name, value)
    assert reference in parsed["Subject"]
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Message-ID"] == reply.message_id
    if "in-reply-to" in expected:
        assert parsed["In-Reply-To"] == in_reply_to
    assert not parsed.defects


@pytest.mark.parametrize("kind", KINDS)
def test_build_reply_refuses_a_non_canonical_reference(kind):
    with pytest.raises(ValueError):
        build_reply(
            config=CONFIG,
            mailbox=MAILBOX,
            kind=kind,
            reference="BSC-2026-0001\r\nBcc: evil@evil.example",
            to="a@example.org",
            applicant_name=None,
            intitule=None,
            missing_text=(),
            in_reply_to=None,
        )


def _strip_accents_reference(text: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@PROPERTY_SETTINGS
@given(st.text(max_size=200))
def test_strip_accents_matches_its_definition(text: str) -> None:
    """The fast paths (ASCII, one test per distinct character) drop exactly the combining marks."""
    from parsers.text import strip_accents

    assert strip_accents(text) == _strip_accents_reference(text)


@PROPERTY_SETTINGS
@given(st.text(alphabet='ab.-_+%@1<> "', max_size=30))
def test_bare_address_shortcut_agrees_with_parseaddr(value: str) -> None:
    """classify._address skips parseaddr only where parseaddr would change nothing."""
    from email.utils import parseaddr

    from parsers.classify import _BARE_ADDRESS

    if _BARE_ADDRESS.fullmatch(value):
        assert parseaddr(value)[1] == value


def test_control_character_in_an_address_is_not_taken_as_the_sender() -> None:
    """Found by the fuzzing above: ``<\\x00orteur@...>`` used to become the sender as is."""
    raw = (
        b"From: Porteur <\x00orteur.c1@asso1.example.org>\r\n"
        b"To: n.bataillon@ville-bethune.fr, <x\x01@y.example>\r\n"
        b"Subject: Candidature\r\nMessage-ID: <a@b.example>\r\n\r\nBonjour\r\n"
    )
    mail = parse_message(raw, limits=LIMITS)
    assert mail.sender == ""
    assert mail.to == ("n.bataillon@ville-bethune.fr",)
    assert any("no usable From address" in w for w in mail.warnings)


_HEADER_PIECES = [
    b"Message-ID:",
    b"message-id: ",
    b"Message-Id :",
    b"<Abc@Example.org>",
    b"<x y@z>",
    b"(comment)",
    b" ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\r",
    b"From ",
    b"Subject: hi",
    b":",
    b"\xc3\xa9",
    b"\x00",
    b"\x85",
    b"\x1c",
    b"\xff",
    b"\x0c",
    b"--",
]


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(_HEADER_PIECES), max_size=25), st.binary(max_size=20))
def test_quick_dedup_key_agrees_with_the_stdlib_header_parser(pieces, body) -> None:
    """The regex shortcut of intake.quick_dedup_key finds the same Message-ID as email's parser."""
    from mailbot.intake import quick_dedup_key
    from storage.models import dedup_key_for

    raw = b"".join(pieces) + b"\r\n\r\n" + body
    headers = BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    message_id = headers.get("Message-ID")
    sha = hashlib.sha256(raw).hexdigest()
    assert quick_dedup_key(raw) == dedup_key_for(str(message_id) if message_id else None, sha)
