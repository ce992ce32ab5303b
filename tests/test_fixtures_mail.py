"""Checks of the email builders in tests/fixtures/mail.py: what they build must parse back."""

from __future__ import annotations

import datetime as dt
import email.policy
import re
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from tests.fixtures.mail import (
    as_bytes,
    attachment_filenames,
    bulk_messages,
    forward_as_attachment,
    make_mail,
)

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
DOCX = b"PK\x03\x04" + bytes(range(256))


def _parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)  # type: ignore[return-value]


def _text(part) -> str:
    # Parsed from the wire, text keeps its CRLF line ends.
    return part.get_content().replace("\r\n", "\n")


def test_accented_subject_sender_and_filenames_round_trip() -> None:
    msg = make_mail(
        subject="Candidature « Béthune numérique » – été 2025",
        sender="Élodie Lefèvre <elodie.lefevre@example.org>",
        to=("n.bataillon@ville-bethune.fr", "d.berteloot@ville-bethune.fr"),
        cc=("Service Numérique <numerique@ville-bethune.fr>",),
        body="Bonjour,\nVoici notre dossier complété.\n",
        html="<p>Bonjour,<br>Voici notre dossier <b>complété</b>.</p>",
        attachments=[
            ("Dossier de candidature – Béthune été.pdf", PDF, "application/pdf"),
            ("Lettre de motivation signée.docx", DOCX, None),
        ],
    )
    raw = as_bytes(msg)

    # Wire format: CRLF everywhere, headers 7-bit (RFC 2047 / RFC 2231 encoded).
    assert b"\n" not in raw.replace(b"\r\n", b"")
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    header_block.decode("ascii")
    # RFC 2231, split into continuations because the name is long.
    assert re.search(rb"filename\*(0\*)?=utf-8''Dossier%20de%20candidature", raw)

    parsed = _parse(raw)
    assert parsed["Subject"] == "Candidature « Béthune numérique » – été 2025"
    assert parsed["From"].addresses[0].display_name == "Élodie Lefèvre"
    assert [a.addr_spec for a in parsed["To"].addresses] == [
        "n.bataillon@ville-bethune.fr",
        "d.berteloot@ville-bethune.fr",
    ]
    assert parsed["Cc"].addresses[0].display_name == "Service Numérique"
    assert parsed["Message-ID"].endswith("@example.org>")
    assert parsed["Date"].datetime.tzinfo is not None

    assert _text(parsed.get_body(("plain",))) == "Bonjour,\nVoici notre dossier complété.\n"
    assert "<b>complété</b>" in _text(parsed.get_body(("html",)))
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == [
        "Dossier de candidature – Béthune été.pdf",
        "Lettre de motivation signée.docx",
    ]
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_content() == PDF
    # The MIME type of the .docx was guessed from its name.
    assert attachments[1].get_content_type() == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert attachments[1].get_content() == DOCX
    assert attachment_filenames(parsed) == attachment_filenames(msg)


def test_optional_headers() -> None:
    when = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
    msg = make_mail(
        message_id="<abc@example.org>",
        date=when,
        in_reply_to="<parent@ville-bethune.fr>",
        references=["<root@example.org>", "<parent@ville-bethune.fr>"],
        headers=[("Received", "from a by b"), ("Received", "from c by d"), ("X-Mailer", "Test")],
    )
    parsed = _parse(as_bytes(msg))
    assert parsed["Message-ID"] == "<abc@example.org>"
    assert parsed["Date"].datetime == when
    assert parsed["In-Reply-To"] == "<parent@ville-bethune.fr>"
    assert parsed["References"] == "<root@example.org> <parent@ville-bethune.fr>"
    assert parsed.get_all("Received") == ["from a by b", "from c by d"]
    assert parsed["X-Mailer"] == "Test"


def test_headers_can_be_omitted() -> None:
    msg = make_mail(message_id=False, date=False, subject=None, body=None, html="<p>Bonjour</p>")
    parsed = _parse(as_bytes(msg))
    assert "Message-ID" not in parsed
    assert "Date" not in parsed
    assert "Subject" not in parsed
    assert parsed.get_content_type() == "text/html"


def test_generated_message_ids_are_unique() -> None:
    ids = {make_mail()["Message-ID"] for _ in range(50)}
    assert len(ids) == 50


def test_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_mail(date=dt.datetime(2025, 1, 1))


def test_forward_as_attachment_has_message_rfc822_part() -> None:
    original = make_mail(
        subject="Candidature Béthune",
        attachments=[("Présentation.pdf", PDF, "application/pdf")],
    )
    forward = forward_as_attachment(
        original,
        sender="Nicolas Bataillon <n.bataillon@ville-bethune.fr>",
        to="d.berteloot@ville-bethune.fr",
        body="Pour information.\n",
        filename="Candidature Béthune.eml",
    )
    parsed = _parse(as_bytes(forward))
    assert parsed["Subject"] == "TR: Candidature Béthune"
    assert _text(parsed.get_body(("plain",))) == "Pour information.\n"
    (part,) = parsed.iter_attachments()
    assert part.get_content_type() == "message/rfc822"
    assert part.get_filename() == "Candidature Béthune.eml"
    inner = part.get_content()
    assert isinstance(inner, EmailMessage)
    assert inner["Subject"] == "Candidature Béthune"
    assert inner["Message-ID"] == original["Message-ID"]
    assert attachment_filenames(inner) == ["Présentation.pdf"]
    assert next(inner.iter_attachments()).get_content() == PDF


def test_bulk_messages_parse() -> None:
    messages = bulk_messages(300, subject="Candidature {i}", to="d.berteloot@ville-bethune.fr")
    assert len(messages) == 300
    first, last = _parse(messages[0]), _parse(messages[-1])
    assert first["Subject"] == "Candidature 1"
    assert last["Subject"] == "Candidature 300"
    assert last["To"] == "d.berteloot@ville-bethune.fr"
    assert _text(first) == "Message de test numéro 1.\n"
    assert len({_parse(m)["Message-ID"] for m in messages}) == 300


def test_make_mail_fixture_is_the_builder(make_mail) -> None:
    assert make_mail(subject="Fixture")["Subject"] == "Fixture"
