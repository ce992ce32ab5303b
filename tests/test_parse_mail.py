"""Tests for parsers.mail.parse_message: ordinary candidatures and hostile mail.

Messages are built here with email.message.EmailMessage or as raw bytes, so
each test shows exactly what arrives. Hostile cases check that the limits cut
the input; that a parse never hangs is held by the per-test timeout, and its
speed is measured in bench/, not asserted here.
"""

from __future__ import annotations

import builtins
import email.parser
import email.policy
import io
import logging
import random
import struct
import warnings
import zipfile
from email.message import EmailMessage

import mailparser
import pytest

from mailbot.config import LimitsSettings
from parsers.errors import MailParseError, ParseError
from parsers.mail import (
    MAX_TEXT_CHARS,
    header_block,
    header_text,
    parse_message,
    read_headers,
)
from parsers.mail import envelope as mail_envelope
from parsers.types import Attachment, ParsedMail

LIMITS = LimitsSettings()
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SMTP = email.policy.SMTP


def parse(raw: bytes, **limits: object) -> ParsedMail:
    return parse_message(raw, limits=LimitsSettings(**limits) if limits else LIMITS)


def candidature(
    *,
    sender: str = "Jean Dupré <Jean.Dupre@Example.FR>",
    subject: str = "Candidature au label Béthune Smart City",
    body: str = "Bonjour,\nVeuillez trouver ci-joint notre dossier.\nJean Dupré\n",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Smart City <SmartCity@Ville-Bethune.fr>, n.bataillon@ville-bethune.fr"
    msg["Cc"] = "Maire <maire@ville-bethune.fr>"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 14 May 2024 09:30:00 +0200"
    msg["Message-ID"] = "<dossier-42@example.fr>"
    msg.set_content(body)
    return msg


def attach_pdf(msg: EmailMessage, name: str = "dossier.pdf", data: bytes = PDF) -> None:
    msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)


def attach_zip(msg: EmailMessage, data: bytes, name: str = "pieces.zip") -> None:
    msg.add_attachment(data, maintype="application", subtype="zip", filename=name)


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def by_source(parsed: ParsedMail, source: str) -> list[Attachment]:
    return [a for a in parsed.attachments if a.source == source]


def has_warning(parsed: ParsedMail, *fragments: str) -> bool:
    return any(all(f in w for f in fragments) for w in parsed.warnings)


def multipart_raw(parts: list[bytes], *, boundary: bytes = b"b0", headers: bytes = b"") -> bytes:
    body = b"".join(b"--" + boundary + b"\n" + part + b"\n" for part in parts)
    return (
        b"From: Jean <jean@example.fr>\nSubject: essai\nMessage-ID: <x@example.fr>\n"
        b"Date: Tue, 14 May 2024 09:30:00 +0200\n" + headers + b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="'
        + boundary
        + b'"\n\n'
        + body
        + b"--"
        + boundary
        + b"--\n"
    )


# --------------------------------------------------------------------------
# Ordinary candidatures
# --------------------------------------------------------------------------


def test_plain_candidature_with_pdf_and_docx() -> None:
    msg = candidature()
    attach_pdf(msg, "dossier d'intention.pdf")
    msg.add_attachment(
        b"PK\x03\x04 fake docx",
        maintype="application",
        subtype=DOCX_TYPE.split("/")[1],
        filename="Lettre au maire.docx",
    )
    raw = msg.as_bytes(policy=SMTP)

    parsed = parse(raw)

    assert parsed.sha256 == __import__("hashlib").sha256(raw).hexdigest()
    assert parsed.size == len(raw)
    assert parsed.message_id == "<dossier-42@example.fr>"
    assert parsed.subject == "Candidature au label Béthune Smart City"
    assert (parsed.sender, parsed.sender_name) == ("jean.dupre@example.fr", "Jean Dupré")
    assert parsed.from_address == "jean.dupre@example.fr"
    assert parsed.to == ("smartcity@ville-bethune.fr", "n.bataillon@ville-bethune.fr")
    assert parsed.cc == ("maire@ville-bethune.fr",)
    assert parsed.date is not None and parsed.date.utcoffset() is not None
    assert parsed.date.isoformat() == "2024-05-14T07:30:00+00:00"
    assert parsed.text == "Bonjour,\nVeuillez trouver ci-joint notre dossier.\nJean Dupré"
    pdf, docx = parsed.attachments
    assert (pdf.filename, pdf.content_type, pdf.data, pdf.size) == (
        "dossier d'intention.pdf",
        "application/pdf",
        PDF,
        len(PDF),
    )
    assert pdf.sha256 == __import__("hashlib").sha256(PDF).hexdigest()
    assert (docx.filename, docx.content_type, docx.source) == (
        "Lettre au maire.docx",
        DOCX_TYPE,
        "attachment",
    )
    # A DOCX is a zip container but never expanded.
    assert len(parsed.attachments) == 2
    assert parsed.content_types == ("multipart/mixed", "text/plain", "application/pdf", DOCX_TYPE)
    assert parsed.header("x-missing") is None
    assert parsed.header("Subject") == parsed.subject
    assert parsed.warnings == ()
    assert not parsed.over_limits and not parsed.forwarded


def test_headers_mapping_keeps_every_value_lower_cased_and_bounded() -> None:
    raw = (
        b"Received: from a by b; Tue, 14 May 2024 09:30:00 +0200\n"
        b"Received: from c\n by d; Tue, 14 May 2024 09:29:00 +0200\n"
        b"X-Long: " + b"x" * 5000 + b"\n"
        b"From: a@example.fr\nMessage-ID: <m@x>\nDate: Tue, 14 May 2024 09:30:00 +0200\n\nhi\n"
    )
    parsed = parse(raw)
    assert parsed.headers["received"] == (
        "from a by b; Tue, 14 May 2024 09:30:00 +0200",
        "from c by d; Tue, 14 May 2024 09:29:00 +0200",
    )
    assert len(parsed.headers["x-long"][0]) == 2000
    with pytest.raises(TypeError):
        parsed.headers["new"] = ("x",)  # type: ignore[index]


def test_accented_subjects_in_q_and_b_encoding_are_decoded_and_nfc() -> None:
    raw = (
        b"From: =?iso-8859-1?q?Ren=E9e_Lef=E8vre?= <renee@example.fr>\n"
        b"Subject: =?utf-8?q?Candidature_B=C3=A9thune_?= =?UTF-8?B?U21hcnQgQ2l0eSDDqXTDqQ==?="
        b" =?iso-8859-1?q?_caf=E9?= Fin e\xcc\x81te\xcc\x81\n"
        b"Message-ID: <s@x>\nDate: Tue, 14 May 2024 09:30:00 +0200\n\ncorps\n"
    )
    parsed = parse(raw)
    # White space between adjacent encoded words disappears (RFC 2047 6.2).
    assert parsed.subject == "Candidature Béthune Smart City été café Fin été"
    assert parsed.subject == __import__("unicodedata").normalize("NFC", parsed.subject)
    assert parsed.sender_name == "Renée Lefèvre"
    assert parsed.warnings == ()


def test_raw_8bit_latin1_subject_is_decoded_with_a_warning() -> None:
    raw = b"From: a@example.fr\nSubject: Candidature B\xe9thune\nMessage-ID: <s@x>\n\nx\n"
    parsed = parse(raw)
    assert parsed.subject == "Candidature Béthune"
    assert has_warning(parsed, "Subject", "cp1252")


RFC2231_PARTS = [
    b"Content-Type: text/plain\n\nBonjour\n",
    b"Content-Type: application/pdf\nContent-Disposition: attachment;"
    b" filename*=UTF-8''dossier%20d%E2%80%99intention.pdf\nContent-Transfer-Encoding: base64\n\n"
    b"JVBERi0=\n",
    b"Content-Type: application/pdf\nContent-Disposition: attachment;\n"
    b" filename*0*=UTF-8''lettre%20au%20;\n filename*1*=maire%20de%20B%C3%A9thune.pdf\n\nx\n",
    b"Content-Type: application/pdf\nContent-Disposition: attachment;"
    b' filename="=?utf-8?q?Pi=C3=A8ce_jointe.pdf?="\n\nx\n',
    b'Content-Type: application/pdf; name="B\xc3\xa9thune budget.pdf"\n\nx\n',
    b"Content-Type: application/pdf\nContent-Disposition: attachment;"
    b' filename="caf\xe9.pdf"\n\nx\n',
    b"Content-Type: application/pdf\nContent-Disposition: attachment;"
    b" filename*=iso-8859-1'fr'r%E9sum%E9.pdf\n\nx\n",
    b"Content-Type: application/pdf\nContent-Disposition: attachment\n\nnameless\n",
    b"Content-Type: application/pdf\nContent-Disposition: attachment;"
    b' filename="C:\\\\Users\\\\jean\\\\lettre.pdf"\n\nx\n',
    b"Content-Type: application/pdf\nContent-Disposition: attachment;"
    b" filename*=UTF-8''evil%E2%80%AEfdp.exe%07\n\nx\n",
    b"Content-Type: image/jpeg\nContent-Disposition: attachment;"
    b' filename="Dossier e\xcc\x81te\xcc\x81.jpg"\n\nx\n',
]


def test_rfc2231_rfc2047_and_raw_8bit_file_names() -> None:
    parsed = parse(multipart_raw(RFC2231_PARTS))
    names = [a.filename for a in parsed.attachments]
    assert names == [
        "dossier d’intention.pdf",
        "lettre au maire de Béthune.pdf",
        "Pièce jointe.pdf",
        "Béthune budget.pdf",
        "café.pdf",
        "résumé.pdf",
        "piece-9.pdf",
        "lettre.pdf",
        "evilfdp.exe",  # RIGHT-TO-LEFT OVERRIDE and BEL removed
        "Dossier été.jpg",  # NFC
    ]
    assert parsed.attachments[0].data == b"%PDF-"
    assert all(a.content_type in ("application/pdf", "image/jpeg") for a in parsed.attachments)
    assert has_warning(parsed, "reduced to 'lettre.pdf'", "Users")
    assert parsed.text == "Bonjour"


def test_generic_upload_types_take_the_type_of_their_extension() -> None:
    msg = candidature()
    msg.add_attachment(PDF, maintype="application", subtype="octet-stream", filename="a.PDF")
    msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="b.xyz")
    msg.add_attachment(b"x", maintype="application", subtype="x-download", filename="c.docx")
    parsed = parse(msg.as_bytes())
    assert [a.content_type for a in parsed.attachments] == [
        "application/pdf",
        "application/octet-stream",
        DOCX_TYPE,
    ]


def test_html_only_message_is_converted_to_text() -> None:
    msg = candidature()
    msg.set_content(
        "<html><head><style>p { color: red }</style><title>Titre</title>"
        "<script>alert('x<p>')</script></head><body>"
        "<p>Bonjour&nbsp;&amp; bienvenue &eacute;quipe</p>"
        "<div>Ligne 2<br>Ligne 3<br/>Ligne 4</div>"
        "<ul><li>Un</li><li>Deux</li></ul>"
        "<table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>"
        "<!-- commentaire cach\u00e9 --><p title='a>b'>Fin &lt;tag&gt; 3 < 4</p>"
        "</body></html>",
        subtype="html",
    )
    parsed = parse(msg.as_bytes())
    assert parsed.text.split("\n") == [
        "Bonjour & bienvenue équipe",
        "",
        "Ligne 2",
        "Ligne 3",
        "Ligne 4",
        "",
        "Un",
        "",
        "Deux",
        "",
        "A B",
        "",
        "C",
        "",
        "Fin <tag> 3 < 4",
    ]
    for hidden in ("alert", "color", "Titre", "commentaire"):
        assert hidden not in parsed.text
    assert parsed.content_types == ("text/html",)
    assert parsed.attachments == ()


def test_plain_part_wins_over_its_html_alternative_and_inline_images_are_kept() -> None:
    msg = candidature(body="Texte brut\n")
    msg.add_alternative("<p>Texte <b>HTML</b></p>", subtype="html")
    msg.get_payload()[1].add_related(
        b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>"
    )
    parsed = parse(msg.as_bytes())
    assert parsed.text == "Texte brut"
    (image,) = parsed.attachments
    assert (image.source, image.content_type, image.filename) == (
        "inline",
        "image/png",
        "piece-5.png",
    )
    assert "multipart/related" in parsed.content_types


# --------------------------------------------------------------------------
# Broken charsets and headers
# --------------------------------------------------------------------------


def text_part(payload: bytes, charset: bytes | None) -> bytes:
    param = b"; charset=" + charset if charset is not None else b""
    return (
        b"From: a@example.fr\nMessage-ID: <c@x>\nDate: Tue, 14 May 2024 09:30:00 +0200\n"
        b"Content-Type: text/plain" + param + b"\nContent-Transfer-Encoding: 8bit\n\n" + payload
    )


@pytest.mark.parametrize(
    ("payload", "charset", "text", "warning"),
    [
        (
            b"Caf\xc3\xa9",
            b'"x-unknown"',
            "Café",
            "unknown charset 'x-unknown' in part 1; decoded as utf-8",
        ),
        (b"Caf\xe9", b"x-foo", "Café", "unknown charset 'x-foo' in part 1; decoded as cp1252"),
        (
            b"B\xc3\xa9thune \xc3\xa9t\xc3\xa9 \xff fin",
            b"utf-8",
            "Béthune été \ufffd fin",
            "decoded as utf-8 with replacement characters",
        ),
        (
            b"B\xe9thune \x93cit\xe9\x94 \x80",
            b"utf-8",
            "Béthune “cité” €",
            "bytes not valid in the declared charset 'utf-8' in part 1; decoded as cp1252",
        ),
        (b"\x81\x8d\xe9", b"utf-8", "\x81\x8dé", "decoded as latin-1"),
        (b"Caf\xe9", None, "Café", "8-bit text without a declared charset in part 1"),
        (b"Caf\xc3\xa9", b"zlib", "Café", "unknown charset 'zlib'"),
        (b"Caf\xc3\xa9", b"unicode_escape", "Café", "unknown charset 'unicode_escape'"),
        (b"Caf\xe9", b"iso-8859-1", "Café", None),
    ],
)
def test_broken_charsets_fall_back_with_a_warning(
    payload: bytes, charset: bytes | None, text: str, warning: str | None
) -> None:
    parsed = parse(text_part(payload, charset))
    # C1 controls are not text: latin-1 keeps the é, the controls go.
    assert parsed.text == text.replace("\x81", "").replace("\x8d", "")
    if warning is None:
        assert parsed.warnings == ()
    else:
        assert has_warning(parsed, warning), parsed.warnings
    assert not parsed.over_limits


def test_unknown_charset_in_an_encoded_word() -> None:
    raw = b"From: a@example.fr\nSubject: =?x-klingon?q?caf=C3=A9?=\nMessage-ID: <c@x>\n\nx\n"
    parsed = parse(raw)
    assert parsed.subject == "café"
    assert has_warning(
        parsed, "unknown charset 'x-klingon' in the Subject header; decoded as utf-8"
    )


def test_missing_message_id_and_date() -> None:
    parsed = parse(b"From: Jean <jean@example.fr>\nSubject: sans identifiant\n\nBonjour\n")
    assert parsed.message_id is None and parsed.date is None
    assert "no Message-ID header" in parsed.warnings
    assert "no Date header" in parsed.warnings
    assert parsed.text == "Bonjour"
    assert not parsed.over_limits


@pytest.mark.parametrize(
    ("header", "expected", "warning"),
    [
        (b"Message-ID:  < abc @ example.fr >", "<abc@example.fr>", None),
        (b"Message-ID:\n <folded@example.fr>", "<folded@example.fr>", None),
        (b"Message-ID: bare@example.fr", "<bare@example.fr>", "Message-ID without angle brackets"),
        (b"Message-ID:", None, "empty Message-ID header"),
    ],
)
def test_message_id_is_normalised(header: bytes, expected: str | None, warning: str | None) -> None:
    parsed = parse(
        b"From: a@example.fr\n" + header + b"\nDate: Tue, 14 May 2024 09:30:00 +0200\n\nx"
    )
    assert parsed.message_id == expected
    assert (warning in parsed.warnings) if warning else parsed.warnings == ()


def test_unreadable_date_and_thread_headers() -> None:
    raw = (
        b"From: a@example.fr\nMessage-ID: <m@x>\nDate: le 14 mai vers midi\n"
        b"In-Reply-To: <parent@x> (comment)\nReferences: <root@x>\n <a@x> <parent@x>\n\nx\n"
    )
    parsed = parse(raw)
    assert parsed.date is None
    assert has_warning(parsed, "unreadable Date header", "le 14 mai vers midi")
    assert parsed.in_reply_to == "<parent@x>"
    assert parsed.references == ("<root@x>", "<a@x>", "<parent@x>")


def test_sender_falls_back_to_sender_then_return_path() -> None:
    parsed = parse(
        b"From: Jean <jean@example.fr\nSender: Secretariat <Secretariat@Example.fr>\n"
        b"Message-ID: <m@x>\n\nx\n"
    )
    assert (parsed.sender, parsed.sender_name) == ("secretariat@example.fr", "Secretariat")
    assert has_warning(parsed, "no usable From address; used the Sender address")
    parsed = parse(b"Return-Path: <Bounce@Example.org>\nMessage-ID: <m@x>\n\nx\n")
    assert parsed.sender == parsed.from_address == "bounce@example.org"
    assert has_warning(parsed, "no From header; used the Return-Path address")
    parsed = parse(b"Subject: personne\n\nx\n")
    assert parsed.sender == "" and parsed.sender_name == ""
    assert has_warning(parsed, "no From header, and no Sender or Return-Path")


def test_return_path_null_absent_and_plain() -> None:
    assert parse(b"Return-Path: <>\nFrom: a@x.fr\n\nx").return_path == ""
    assert parse(b"Return-Path:  < >\nFrom: a@x.fr\n\nx").return_path == ""
    assert parse(b"From: a@x.fr\n\nx").return_path is None
    assert parse(b"Return-Path: <Bounce@X.org>\nFrom: a@x.fr\n\nx").return_path == "bounce@x.org"
    assert parse(b"From: a@x.fr\nReply-To: Autre <Autre@X.fr>\n\nx").reply_to == "autre@x.fr"


@pytest.mark.parametrize(
    "subject",
    [
        b"=?utf-8?q?Candidature=0D=0ABcc:_evil@example.com?=",
        b"=?utf-8?b?Q2FuZGlkYXR1cmUNCkJjYzogZXZpbEBleGFtcGxlLmNvbQ==?=",
        b"=?utf-8?q?Candidature=E2=80=A8Bcc:_evil@example.com=00?=",
        b"=?utf-8?q?Candidature=0ABcc:?=\n =?utf-8?q?_evil@example.com=0D?=",
    ],
)
def test_header_injection_in_encoded_words_comes_out_clean(subject: bytes) -> None:
    raw = (
        b"From: =?utf-8?q?Evil=0D=0ABcc:_x@y.z?= <a@example.fr>\nSubject: "
        + subject
        + b"\nMessage-ID: <m@x>\n\nx\n"
    )
    parsed = parse(raw)
    for value in (parsed.subject, parsed.sender_name, parsed.header("subject") or ""):
        assert not any(ch in value for ch in "\r\n\x00\u2028\u2029"), repr(value)
    assert parsed.subject.startswith("Candidature") and "Bcc: evil@example.com" in parsed.subject
    assert parsed.sender == "a@example.fr"


# --------------------------------------------------------------------------
# Bad MIME structure
# --------------------------------------------------------------------------


def test_boundary_declared_but_never_closed() -> None:
    raw = multipart_raw(
        [
            b"Content-Type: text/plain\n\nBonjour",
            b"Content-Type: application/pdf\n"
            b"Content-Disposition: attachment; filename=d.pdf\n\n" + PDF,
        ]
    ).rsplit(b"--b0--", 1)[0]
    parsed = parse(raw)
    assert parsed.text == "Bonjour"
    (pdf,) = parsed.attachments
    assert pdf.filename == "d.pdf" and pdf.data.startswith(PDF.rstrip(b"\n"))
    assert has_warning(parsed, "close boundary not found")


def test_multipart_without_boundary_parameter_is_salvaged() -> None:
    raw = (
        b"From: a@example.fr\nMessage-ID: <m@x>\nDate: Tue, 14 May 2024 09:30:00 +0200\n"
        b"Content-Type: multipart/mixed\n\n"
        b"--XyZ\nContent-Type: text/plain\n\nBonjour\n"
        b"--XyZ\nContent-Type: application/pdf; name=d.pdf\n\n%PDF-1.4\n--XyZ--\n"
    )
    parsed = parse(raw)
    assert parsed.text == "Bonjour"
    assert [a.filename for a in parsed.attachments] == ["d.pdf"]
    assert has_warning(parsed, "no boundary in multipart")
    assert has_warning(parsed, "boundary missing or wrong; used 'XyZ'")


def test_multipart_whose_declared_boundary_never_appears_is_salvaged() -> None:
    raw = (
        b'From: a@example.fr\nContent-Type: multipart/mixed; boundary="declared"\n\n'
        b"--actual\nContent-Type: text/plain\n\nBonjour\n"
        b"--actual\nContent-Type: application/pdf; name=d.pdf\n\n%PDF\n--actual--\n"
    )
    parsed = parse(raw)
    assert parsed.text == "Bonjour"
    assert [a.filename for a in parsed.attachments] == ["d.pdf"]
    assert has_warning(parsed, "start boundary not found")


def test_multipart_without_any_delimiter_is_read_as_text() -> None:
    parsed = parse(b"From: a@example.fr\nContent-Type: multipart/mixed\n\nJuste du texte.\n")
    assert parsed.text == "Juste du texte."
    assert has_warning(parsed, "no usable boundary; read as text")


def test_dsn_shows_report_content_types_and_is_not_merged() -> None:
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\nReturn-Path: <>\n"
        b"Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn@mx>\n"
        b"Auto-Submitted: auto-replied\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n'
        b"--r\nContent-Type: text/plain\n\nThis is the mail system.\n"
        b"--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; nobody@example.fr\nAction: failed\nStatus: 5.1.1\n\n"
        b"--r\nContent-Type: message/rfc822\n\nFrom: smartcity@ville-bethune.fr\n"
        b"Subject: Accuse de reception\nContent-Type: multipart/mixed; boundary=i\n\n"
        b"--i\nContent-Type: text/plain\n\nMerci\n--i\nContent-Type: application/pdf; name=a.pdf"
        b"\n\n%PDF\n--i--\n--r--\n"
    )
    parsed = parse(raw)
    for ctype in (
        "multipart/report",
        "message/delivery-status",
        "message/rfc822",
        "application/pdf",
    ):
        assert ctype in parsed.content_types
    assert parsed.return_path == ""
    assert parsed.sender == "mailer-daemon@mx.example.org"
    assert parsed.attachments == () and not parsed.forwarded
    assert parsed.text == "This is the mail system."
    assert parsed.header("auto-submitted") == "auto-replied"


def test_disposition_notification_is_visible() -> None:
    raw = (
        b"From: a@example.fr\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\n\n'
        b"--r\nContent-Type: text/plain\n\nLu.\n--r\nContent-Type: message/disposition-notification"
        b"\n\nFinal-Recipient: rfc822; a@example.fr\nDisposition: manual-action/MDN-sent-manually;"
        b" displayed\n\n--r--\n"
    )
    parsed = parse(raw)
    assert "message/disposition-notification" in parsed.content_types
    assert parsed.text == "Lu."


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------


def test_one_megabyte_header_is_cut_fast_and_attachments_survive() -> None:
    msg = candidature()
    attach_pdf(msg)
    raw = msg.as_bytes()
    # The junk comes before Content-Type: the MIME headers must be rescued.
    raw = b"X-Junk: " + b"a" * (1 << 20) + b"\n" + raw
    parsed = parse(raw)
    assert parsed.over_limits
    assert has_warning(parsed, "header block is", "over the limit of 262144")
    assert has_warning(parsed, "header field 'X-Junk' of 1048585 bytes cut to 32768")
    # The fields after the huge one are still read.
    assert (
        parsed.sender == "jean.dupre@example.fr" and parsed.message_id == "<dossier-42@example.fr>"
    )
    assert len(parsed.headers["x-junk"][0]) == 2000
    assert [a.filename for a in parsed.attachments] == ["dossier.pdf"]


def test_header_block_over_the_byte_limit_keeps_what_fits() -> None:
    junk = b"".join(b"X-J%d: " % i + b"b" * 30_000 + b"\n" for i in range(20))
    raw = b"From: a@example.fr\n" + junk + b"Subject: fin\nContent-Type: text/plain\n\ncorps\n"
    parsed = parse(raw)
    assert parsed.sender == "a@example.fr" and parsed.text == "corps"
    assert sum(len(v) for v in parsed.headers.values()) < 20
    assert parsed.over_limits


def test_many_small_header_fields_are_capped() -> None:
    raw = b"".join(b"X-H%d: v\n" % i for i in range(30_000)) + b"From: a@example.fr\n\nbody\n"
    parsed = parse(raw)
    assert parsed.over_limits and has_warning(parsed, "30001 header fields", "kept the first 1000")
    assert sum(len(v) for v in parsed.headers.values()) == 1000
    assert parsed.text == "body"


def test_ten_thousand_recipients_are_capped() -> None:
    to = ", ".join(f"u{i}@ex.fr" for i in range(10_000)).encode()
    raw = b"From: a@example.fr\nTo: " + to + b"\nCc: Chef <chef@ex.fr>\nMessage-ID: <m@x>\n\nx\n"
    parsed = parse(raw)
    assert len(parsed.to) == 500 and parsed.to[:2] == ("u0@ex.fr", "u1@ex.fr")
    assert parsed.cc == ()
    assert parsed.over_limits and has_warning(parsed, "10001 recipients", "kept the first 500")


def test_recipient_limit_counts_to_and_cc_together() -> None:
    raw = b"From: a@x.fr\nTo: a@x.fr, b@x.fr\nCc: c@x.fr, d@x.fr, e@x.fr\n\nx"
    parsed = parse(raw, max_recipients=3)
    assert (parsed.to, parsed.cc) == (("a@x.fr", "b@x.fr"), ("c@x.fr",))
    assert has_warning(parsed, "5 recipients in To and Cc, over the limit of 3")


def nested_forwards(levels: int) -> EmailMessage:
    inner = candidature(sender="Origine <origine@example.fr>")
    attach_pdf(inner, "deep.pdf")
    for level in range(levels):
        outer = EmailMessage()
        outer["From"] = f"relay{level}@example.org"
        outer["Subject"] = f"Fwd: niveau {level}"
        outer.set_content("voir PJ")
        outer.add_attachment(inner)
        inner = outer
    return inner


def test_deep_message_rfc822_nesting_is_bounded() -> None:
    raw = nested_forwards(50).as_bytes()
    parsed = parse(raw)
    assert parsed.over_limits
    assert has_warning(parsed, "nested 6 levels deep, over the limit of 5")
    assert parsed.forwarded and parsed.sender == "relay48@example.org"
    assert parsed.from_address == "relay49@example.org"
    assert "deep.pdf" not in [a.filename for a in parsed.attachments]
    assert parsed.text.count("voir PJ") == 6  # the outer message and five levels


def test_deep_multipart_nesting_stops_before_the_recursion_limit() -> None:
    levels = 5000
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(levels)
    )
    raw = b"From: a@example.fr\n" + head + b"Content-Type: text/plain\n\nfond\n"
    parsed = parse(raw, max_mime_parts=100_000)
    assert parsed.over_limits and has_warning(parsed, "nested deeper than 50 levels")
    assert "internal error" not in " ".join(parsed.warnings)


def test_too_many_mime_parts() -> None:
    parts = [b"Content-Type: text/plain\n\nmorceau %d" % i for i in range(5000)]
    parsed = parse(multipart_raw(parts))
    assert parsed.over_limits and has_warning(parsed, "more than 200 MIME parts")
    assert "morceau 0" in parsed.text and "morceau 198" in parsed.text
    assert "morceau 199" not in parsed.text  # part 200 is the multipart itself
    assert len(parsed.content_types) == 2


def test_too_many_attachments() -> None:
    msg = candidature()
    for i in range(60):
        attach_pdf(msg, f"piece{i}.pdf")
    parsed = parse(msg.as_bytes())
    assert [a.filename for a in parsed.attachments] == [f"piece{i}.pdf" for i in range(50)]
    assert parsed.over_limits and has_warning(parsed, "60 attachments, over the limit of 50")


def test_attachment_over_the_byte_limit_keeps_name_and_size_only() -> None:
    msg = candidature()
    attach_pdf(msg, "gros.pdf", PDF + b"0" * 5000)
    attach_pdf(msg, "petit.pdf")
    parsed = parse(msg.as_bytes(), max_attachment_bytes=1024)
    big, small = parsed.attachments
    assert (big.filename, big.size, big.data) == ("gros.pdf", len(PDF) + 5000, b"")
    assert big.sha256 == __import__("hashlib").sha256(b"").hexdigest()  # describes .data
    assert big.warnings and "over the limit of 1024; data dropped" in big.warnings[0]
    assert small.data == PDF
    assert parsed.over_limits and has_warning(parsed, "'gros.pdf'", "data dropped")


def test_message_over_max_size_reads_only_the_headers() -> None:
    msg = candidature()
    attach_pdf(msg, "gros.pdf", PDF * 40_000)
    raw = msg.as_bytes()
    parsed = parse(raw, max_message_bytes=1 << 20)
    assert len(raw) > 1 << 20
    assert parsed.subject == "Candidature au label Béthune Smart City"
    assert parsed.sender == "jean.dupre@example.fr"
    assert parsed.attachments == () and parsed.text == ""
    assert parsed.content_types == ("multipart/mixed",)
    assert parsed.over_limits and has_warning(parsed, "only the headers were read")


def test_millions_of_tiny_lines_are_not_parsed() -> None:
    raw = b"From: a@example.fr\nSubject: lignes\n\n" + b"a\n" * 1_500_000
    parsed = parse(raw)
    assert parsed.subject == "lignes"
    assert parsed.over_limits and has_warning(parsed, "lines, over the limit")


def test_quadratic_mime_parameters_are_cut() -> None:
    part = b'Content-Type: application/pdf; name="a.pdf"; x="' + b";" * 300_000 + b'"\n\n%PDF\n'
    parsed = parse(multipart_raw([b"Content-Type: text/plain\n\nok", part]))
    assert [a.filename for a in parsed.attachments] == ["a.pdf"]
    assert has_warning(parsed, "over-long header values in MIME parts were cut")


@pytest.mark.parametrize(
    "html",
    [
        "<a" * 500_000,
        "<!--" * 250_000,
        "<p title='" * 200_000,
        "<script>" + "</scr" * 200_000,
        "</" * 500_000,
        "&#" * 500_000,
        "<a " + 'b="c" ' * 300_000 + ">",
    ],
    ids=["open-tags", "comments", "quotes", "script", "end-tags", "charrefs", "attributes"],
)
def test_hostile_html_is_converted_fast(html: str) -> None:
    msg = candidature()
    msg.set_content(html, subtype="html")
    parsed = parse(msg.as_bytes())
    assert "internal error" not in " ".join(parsed.warnings)


def test_text_is_capped() -> None:
    msg = candidature(body="x" * (MAX_TEXT_CHARS + 10))
    parsed = parse(msg.as_bytes())
    assert len(parsed.text) == MAX_TEXT_CHARS
    assert has_warning(parsed, "part 1: text cut to 1000000 characters")


def test_text_budget_is_per_message_not_per_part() -> None:
    parts = [b"Content-Type: text/plain\n\n" + b"%d" % i + b"y" * 400_000 for i in range(5)]
    parsed = parse(multipart_raw(parts))
    assert len(parsed.text) <= MAX_TEXT_CHARS
    assert "4yyy" not in parsed.text
    assert has_warning(parsed, "part 6: not read, the message already has enough text")


# --------------------------------------------------------------------------
# Zip archives
# --------------------------------------------------------------------------


def with_zip(data: bytes, name: str = "pieces.zip", **limits: object) -> ParsedMail:
    msg = candidature()
    attach_zip(msg, data, name)
    return parse(msg.as_bytes(), **limits)


def test_zip_members_are_extracted() -> None:
    data = zip_of(
        {
            "dossier/intention.pdf": PDF,
            "dossier/lettre.docx": b"PK\x03\x04x",
            "lisez-moi.txt": b"hi",
        }
    )
    parsed = with_zip(data)
    archive, *members = parsed.attachments
    assert (archive.filename, archive.source, archive.data) == ("pieces.zip", "attachment", data)
    assert [(m.filename, m.content_type, m.source) for m in members] == [
        ("intention.pdf", "application/pdf", "zip:pieces.zip"),
        ("lettre.docx", DOCX_TYPE, "zip:pieces.zip"),
        ("lisez-moi.txt", "text/plain", "zip:pieces.zip"),
    ]
    assert members[0].data == PDF and members[0].size == len(PDF)
    assert not parsed.over_limits
    # A sub-folder is ordinary: noted on the member, not in the message warnings.
    assert members[0].warnings == ("name 'dossier/intention.pdf' reduced to 'intention.pdf'",)
    assert parsed.warnings == ()


def test_zip_member_names_lose_their_directories() -> None:
    data = zip_of(
        {
            "../../etc/passwd": b"root:x:0:0",
            "C:\\Windows\\system32\\evil.txt": b"x",
            "/abs/path.pdf": PDF,
            "..": b"dots",
            "caf\u00e9.pdf": PDF,
        }
    )
    parsed = with_zip(data, "evil.zip")
    names = [a.filename for a in by_source(parsed, "zip:evil.zip")]
    assert names == ["passwd", "evil.txt", "path.pdf", "piece-4.bin", "café.pdf"]
    assert has_warning(parsed, "'../../etc/passwd' reduced to 'passwd'")
    assert has_warning(parsed, "reduced to 'evil.txt'")


def test_zip_utf8_names_without_the_utf8_flag() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("plain.txt", b"x")
    data = buffer.getvalue().replace(b"plain.txt", "pl\u00e9n.txt".encode()[:9])
    parsed = with_zip(data)
    assert [a.filename for a in by_source(parsed, "zip:pieces.zip")] == ["plén.txt"]


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """300 MB of zeros deflated: about 300 KB, built in chunks."""
    buffer = io.BytesIO()
    chunk = bytes(1 << 20)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("zeros.bin", "w") as member,
    ):
        for _ in range(300):
            member.write(chunk)
    return buffer.getvalue()


def test_zip_bomb_is_refused_on_its_declared_ratio(zip_bomb: bytes) -> None:
    parsed = with_zip(zip_bomb, "a.zip")
    assert len(zip_bomb) < 2 << 20
    assert [a.filename for a in parsed.attachments] == ["a.zip"]
    assert parsed.over_limits and has_warning(parsed, "attachment 'a.zip': zip bomb refused (ratio")


def test_zip_bomb_is_refused_on_its_declared_size(zip_bomb: bytes) -> None:
    parsed = with_zip(zip_bomb, "a.zip", max_zip_ratio=1_000_000)
    assert has_warning(parsed, "zip bomb refused (expands to 314572800 bytes > 209715200)")
    assert by_source(parsed, "zip:a.zip") == []


def patch_sizes(data: bytes, file_size: int) -> bytes:
    """Make every header of a one-member zip declare ``file_size``."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    central = out.find(b"PK\x01\x02")
    struct.pack_into("<L", out, local + 22, file_size)
    struct.pack_into("<L", out, central + 24, file_size)
    return bytes(out)


def test_zip_with_lying_sizes_is_not_inflated_past_them(zip_bomb: bytes) -> None:
    lying = patch_sizes(zip_bomb, 1000)
    parsed = with_zip(lying, "a.zip")
    assert by_source(parsed, "zip:a.zip") == []
    assert has_warning(parsed, "member 'zeros.bin' unreadable (BadZipFile)")


def test_zip_member_is_streamed_and_cut_at_the_attachment_limit() -> None:
    words = [b"mairie", b"candidature", b"smart", b"city", b"dossier", b"lettre"]
    rng = random.Random(7)
    text = b" ".join(rng.choice(words) for _ in range(400_000))  # ~3 MB, ratio ~5
    data = zip_of({"long.txt": text})
    parsed = with_zip(data, max_attachment_bytes=len(data) + 1024)
    (member,) = by_source(parsed, "zip:pieces.zip")
    assert member.data == b"" and member.size == len(text)
    assert parsed.over_limits and has_warning(parsed, "'long.txt'", "data dropped")


def test_zip_with_too_many_members_is_not_expanded() -> None:
    data = zip_of({f"f{i}.txt": b"x" for i in range(150)})
    parsed = with_zip(data)
    assert [a.filename for a in parsed.attachments] == ["pieces.zip"]
    assert parsed.over_limits and has_warning(parsed, "150 zip members, over the limit of 100")


def test_zip_whose_end_record_lies_about_the_member_count() -> None:
    data = bytearray(zip_of({f"f{i}.txt": b"x" for i in range(150)}))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 1, 1)
    parsed = with_zip(bytes(data))
    assert by_source(parsed, "zip:pieces.zip") == []
    assert has_warning(parsed, "150 zip members")


def test_encrypted_zip_member_is_skipped() -> None:
    data = bytearray(zip_of({"secret.pdf": PDF, "public.pdf": PDF}, zipfile.ZIP_STORED))
    struct.pack_into("<H", data, data.find(b"PK\x03\x04") + 6, 1)
    struct.pack_into("<H", data, data.find(b"PK\x01\x02") + 8, 1)
    parsed = with_zip(bytes(data))
    assert [a.filename for a in by_source(parsed, "zip:pieces.zip")] == ["public.pdf"]
    assert has_warning(parsed, "member 'secret.pdf' is encrypted; skipped")


def test_zip_inside_a_zip_is_not_expanded() -> None:
    inner = zip_of({"cache.pdf": PDF})
    data = zip_of({"inner.zip": inner, "a.pdf": PDF})
    parsed = with_zip(data, "outer.zip")
    members = by_source(parsed, "zip:outer.zip")
    assert [(m.filename, m.data) for m in members] == [("inner.zip", inner), ("a.pdf", PDF)]
    assert by_source(parsed, "zip:inner.zip") == []
    assert has_warning(parsed, "nested archive 'inner.zip' not expanded")


def test_corrupt_zip_is_kept_as_an_attachment() -> None:
    parsed = with_zip(b"PK\x03\x04 this is not a zip")
    assert [a.filename for a in parsed.attachments] == ["pieces.zip"]
    assert has_warning(parsed, "unreadable zip archive (BadZipFile)")


def test_zip_expansion_budget_is_per_message() -> None:
    rng = random.Random(3)
    msg = candidature()
    for i in range(3):
        attach_zip(msg, zip_of({f"m{i}.bin": rng.randbytes(400_000)}), f"z{i}.zip")
    parsed = parse(msg.as_bytes(), max_zip_expanded_bytes=1_000_000)
    assert [a.filename for a in parsed.attachments] == [
        "z0.zip",
        "m0.bin",
        "z1.zip",
        "m1.bin",
        "z2.zip",
    ]
    assert parsed.over_limits
    assert has_warning(parsed, "'z2.zip': not expanded, the message's archives would expand")


def test_zip_members_count_against_max_attachments() -> None:
    parsed = with_zip(zip_of({f"f{i}.pdf": PDF for i in range(10)}), max_attachments=4)
    assert len(parsed.attachments) == 4
    assert parsed.over_limits and has_warning(parsed, "11 attachments, over the limit of 4")


# --------------------------------------------------------------------------
# Forwarded candidatures
# --------------------------------------------------------------------------


def test_forward_as_attachment_names_the_applicant_and_merges_attachments() -> None:
    original = candidature(sender="Marie Curie <Marie.Curie@Labo.fr>", body="Notre dossier.\n")
    attach_pdf(original, "intention.pdf")
    forward = EmailMessage()
    forward["From"] = "Secrétariat <secretariat@ville-bethune.fr>"
    forward["To"] = "smartcity@ville-bethune.fr"
    forward["Subject"] = "TR: Candidature au label Béthune Smart City"
    forward["Message-ID"] = "<fwd@ville-bethune.fr>"
    forward.set_content("Pour suite à donner.\n")
    forward.add_attachment(original)

    parsed = parse(forward.as_bytes(policy=SMTP))

    assert parsed.forwarded
    assert (parsed.sender, parsed.sender_name) == ("marie.curie@labo.fr", "Marie Curie")
    assert parsed.from_address == "secretariat@ville-bethune.fr"
    assert parsed.message_id == "<fwd@ville-bethune.fr>"
    (pdf,) = parsed.attachments
    assert (pdf.filename, pdf.source, pdf.data) == ("intention.pdf", "forwarded:1", PDF)
    assert parsed.text == "Pour suite à donner.\n\nNotre dossier."
    assert "message/rfc822" in parsed.content_types


def test_forwarded_message_part_with_a_file_name_is_still_read() -> None:
    original = candidature(sender="Marie <marie@labo.fr>")
    attach_pdf(original, "intention.pdf")
    forward = candidature(sender="s@ville-bethune.fr", subject="Fwd: dossier", body="Voir PJ\n")
    forward.add_attachment(original, filename="candidature.eml")
    parsed = parse(forward.as_bytes())
    assert parsed.forwarded and parsed.sender == "marie@labo.fr"
    assert [(a.filename, a.source) for a in parsed.attachments] == [
        ("intention.pdf", "forwarded:1")
    ]


def test_attached_message_with_a_long_note_is_not_a_forward() -> None:
    original = candidature(sender="Marie <marie@labo.fr>")
    attach_pdf(original, "ancien.pdf")
    msg = candidature(body="Un vrai message de plusieurs lignes. " * 80)
    msg.add_attachment(original)
    parsed = parse(msg.as_bytes())
    assert not parsed.forwarded and parsed.sender == "jean.dupre@example.fr"
    # The attached message's files are still kept, marked as such.
    assert [(a.filename, a.source) for a in parsed.attachments] == [("ancien.pdf", "forwarded:1")]
    assert "Veuillez" not in parsed.text


FRENCH_INLINE = """Bonjour,

Je vous transfère la candidature reçue hier.

-------- Message transféré --------
Sujet :\tCandidature label Smart City
Date :\tMon, 13 May 2024 18:02:11 +0200
De :\tAssociation Béthune Numérique <contact@bethune-numerique.fr>
Pour :\tmairie@ville-bethune.fr

Madame, Monsieur,
Veuillez trouver notre dossier.
"""


def test_inline_forward_in_french() -> None:
    msg = candidature(
        sender="Accueil Mairie <accueil@ville-bethune.fr>",
        subject="TR: Candidature label Smart City",
        body=FRENCH_INLINE,
    )
    attach_pdf(msg, "dossier.pdf")
    parsed = parse(msg.as_bytes())
    assert parsed.forwarded
    assert parsed.sender == "contact@bethune-numerique.fr"
    assert parsed.sender_name == "Association Béthune Numérique"
    assert parsed.from_address == "accueil@ville-bethune.fr"
    assert "Veuillez trouver notre dossier." in parsed.text
    assert [a.filename for a in parsed.attachments] == ["dossier.pdf"]


@pytest.mark.parametrize(
    ("marker", "from_line"),
    [
        ("---------- Forwarded message ---------", "From: Paul Martin <paul@example.org>"),
        ("Début du message réexpédié :", "De: Paul Martin <paul@example.org>"),
        ("-----Message d'origine-----", "De : Paul Martin [mailto:paul@example.org]"),
    ],
)
def test_inline_forward_markers_of_common_clients(marker: str, from_line: str) -> None:
    body = f"Voir ci-dessous.\n\n{marker}\n{from_line}\nDate: lundi\nSubject: dossier\n\nTexte\n"
    parsed = parse(candidature(subject="Dossier", body=body).as_bytes())
    assert parsed.forwarded
    assert (parsed.sender, parsed.sender_name) == ("paul@example.org", "Paul Martin")


def test_inline_forward_marker_in_a_long_message_without_fwd_subject_is_ignored() -> None:
    body = "Longue introduction. " * 120 + "\n-------- Message transféré --------\nDe : x@y.fr\n"
    parsed = parse(candidature(subject="Dossier", body=body).as_bytes())
    assert not parsed.forwarded and parsed.sender == "jean.dupre@example.fr"


def test_forward_whose_original_sender_is_unreadable_keeps_the_forwarder() -> None:
    body = "Fwd\n\n---------- Forwarded message ---------\nFrom: quelqu'un\n\nTexte\n"
    parsed = parse(candidature(subject="Fwd: dossier", body=body).as_bytes())
    assert not parsed.forwarded and parsed.sender == "jean.dupre@example.fr"
    assert has_warning(parsed, "inline forward found, but its sender could not be read")


# --------------------------------------------------------------------------
# Garbage and fuzzing
# --------------------------------------------------------------------------


def test_empty_input_raises_mail_parse_error() -> None:
    with pytest.raises(MailParseError, match="empty"):
        parse(b"")
    assert issubclass(MailParseError, ParseError)
    with pytest.raises(TypeError):
        parse("From: a@b.c\n\nx")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    raw = b"From: a@example.fr\n\nx"
    assert parse(bytearray(raw)).sha256 == parse(memoryview(raw)).sha256 == parse(raw).sha256


@pytest.mark.parametrize("seed", range(100))
def test_random_garbage_never_raises(seed: int) -> None:
    rng = random.Random(seed)
    raw = rng.randbytes(rng.randint(1, 6000))
    parsed = parse(raw)
    assert isinstance(parsed, ParsedMail)
    assert parsed.sha256 == __import__("hashlib").sha256(raw).hexdigest()
    assert parsed.size == len(raw)
    assert "internal error" not in " ".join(parsed.warnings)


def fuzz_base() -> bytes:
    msg = candidature()
    msg.add_alternative("<p>Bonjour <b>HTML</b></p>", subtype="html")
    attach_pdf(msg)
    attach_zip(msg, zip_of({"a/b.pdf": PDF, "c.txt": b"hello"}))
    forward = EmailMessage()
    forward["From"] = "fwd@example.org"
    forward["Subject"] = "Fwd: x"
    forward.set_content("court")
    forward.add_attachment(msg)
    return forward.as_bytes(policy=SMTP)


TOKENS = [
    b"--",
    b"\r\n",
    b"\n\n",
    b"=?utf-8?q?",
    b"?=",
    b":",
    b"\x00",
    b"\xff\xfe",
    b'Content-Type: multipart/mixed; boundary="x"\n',
    b"Content-Type: message/rfc822\n\n",
    b"Content-Transfer-Encoding: base64\n",
    b"charset=x-unknown",
    b"filename*0*=utf-8''%E2%80",
    b"PK\x03\x04",
    b"<script>",
    b"<!--",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            del buf[pos : pos + rng.randint(1, 200)]
        elif op == 2:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 3:
            start = rng.randrange(len(buf) + 1)
            buf[pos:pos] = buf[start : start + rng.randint(1, 300)]
        else:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 50))
    return bytes(buf) or b"x"


def test_fuzzed_messages_never_raise() -> None:
    base = fuzz_base()
    assert parse(base).forwarded
    rng = random.Random(2024)
    for _ in range(300):
        raw = mutate(base, rng)
        parsed = parse(raw)
        assert isinstance(parsed, ParsedMail)
        assert parsed.sha256 == __import__("hashlib").sha256(raw).hexdigest()
        assert all(isinstance(a, Attachment) and a.filename for a in parsed.attachments)
        assert not any(ch in parsed.subject for ch in "\r\n\x00")
        assert "internal error" not in " ".join(parsed.warnings), parsed.warnings


# --------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------


def test_mail_parser_logging_is_silenced_for_our_calls_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    parse(b"From: Jean <jean@example.fr\nSubject: =?shift_jis?b?gg==?=\n\nx")
    assert not [r for r in caplog.records if r.name.startswith("mailparser")]
    mailparser.parse_from_bytes(b"From: a@b.c\n\nx")
    assert [r for r in caplog.records if r.name.startswith("mailparser")]


def test_python_warnings_from_libraries_become_our_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Noisy(mail_envelope._HeaderView):
        @classmethod
        def from_bytes(cls, bt: bytes) -> object:
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
            return super().from_bytes(bt)

    monkeypatch.setattr(mail_envelope, "_HeaderView", Noisy)
    # A comment in From: mail-parser reads it (plain headers are read without it).
    parsed = parse(b"From: a@example.fr (A)\n\nx")
    assert "library warning: DeprecationWarning: old API" in parsed.warnings
    assert parsed.sender == "a@example.fr"


def test_no_file_is_ever_written(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = builtins.open
    written: list[str] = []

    def guarded_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if any(flag in mode for flag in "wax+"):
            written.append(str(file))
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    parsed = parse(fuzz_base())
    assert written == []
    assert parsed.forwarded and len(parsed.attachments) >= 3


# --------------------------------------------------------------------------
# Headers for callers that do not analyse the message (intake, digest)


def test_read_headers_reads_as_the_standard_library():
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.fr>\r\n"
        b"Subject: Candidature B\xe9thune\r\n"
        b"Message-ID: <abc@example.fr>\r\n\r\nbody\r\n"
    )
    ours = read_headers(raw)
    theirs = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    assert ours.items() == theirs.items()
    assert ours.get("Message-ID") == "<abc@example.fr>"
    assert read_headers(header_block(raw)).items() == theirs.items()


def test_header_text_decodes_encoded_words_and_keeps_what_it_cannot():
    assert header_text(None) == ""
    assert header_text("=?utf-8?q?Jos=C3=A9?= <jose@example.fr>") == "José <jose@example.fr>"
    # Bad base64 (HeaderParseError), an unknown charset, bytes the charset refuses.
    for value in ("=?utf-8?b?a?=", "=?x-unknown?q?abc?=", "=?utf-8?q?=FF?="):
        assert header_text(value) == value
