"""Checks of the SMTP fixture: capture, scripted refusals, AUTH, STARTTLS, down and back up."""

from __future__ import annotations

import gc
import shutil
import smtplib
import ssl
import time
from pathlib import Path

import pytest

from tests.fixtures.dovecot import make_test_certificate
from tests.fixtures.mail import as_bytes, make_mail
from tests.fixtures.smtp import SMTPTestServer

SENDER = "candidatures@ville-bethune.fr"
APPLICANT = "alice@example.org"


def _send(server: SMTPTestServer, **kwargs) -> dict:
    msg = make_mail(sender=f"Ville de Béthune <{SENDER}>", to=APPLICANT, **kwargs)
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        return client.send_message(msg)


def test_captures_envelope_and_headers(smtp_server: SMTPTestServer) -> None:
    msg = make_mail(
        subject="Accusé de réception de votre candidature",
        sender=f"Ville de Béthune <{SENDER}>",
        to=f"Élodie Lefèvre <{APPLICANT}>",
        body="Nous avons bien reçu votre dossier.\n",
        attachments=[("Récépissé.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")],
    )
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        # The envelope may differ from the headers (a Bcc to the archive, say).
        refused = client.sendmail(
            "bounces@ville-bethune.fr", [APPLICANT, "archive@ville-bethune.fr"], as_bytes(msg)
        )
    assert refused == {}
    (captured,) = smtp_server.wait_for(1)
    assert captured.mail_from == "bounces@ville-bethune.fr"
    assert captured.rcpt_tos == (APPLICANT, "archive@ville-bethune.fr")
    assert captured.data == as_bytes(msg)
    assert captured.message["Subject"] == "Accusé de réception de votre candidature"
    assert captured.message["From"].addresses[0].addr_spec == SENDER
    assert captured.message["To"].addresses[0].display_name == "Élodie Lefèvre"
    assert captured.message["Message-ID"] == msg["Message-ID"]
    body = captured.message.get_body(("plain",)).get_content()
    assert "Nous avons bien reçu votre dossier." in body
    assert [a.get_filename() for a in captured.message.iter_attachments()] == ["Récépissé.pdf"]
    assert captured.auth_login is None


def test_fail_next_gives_the_scripted_code(smtp_server: SMTPTestServer) -> None:
    smtp_server.fail_next(2, "451 4.3.0 Try again later")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPResponseException) as excinfo:
            _send(smtp_server)
        assert excinfo.value.smtp_code == 451
        assert excinfo.value.smtp_error == b"4.3.0 Try again later"
    # The third attempt goes through.
    _send(smtp_server, subject="Troisième essai")
    assert [m.message["Subject"] for m in smtp_server.wait_for(1)] == ["Troisième essai"]
    assert [(r.stage, r.reply) for r in smtp_server.rejections] == [
        ("DATA", "451 4.3.0 Try again later")
    ] * 2
    assert smtp_server.pending_failures == 0


def test_fail_next_at_mail_stage(smtp_server: SMTPTestServer) -> None:
    smtp_server.fail_next(1, "550 5.1.1 No such user", stage="MAIL")
    with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
        _send(smtp_server)
    assert excinfo.value.smtp_code == 550
    assert smtp_server.messages == []


def test_fail_next_at_rcpt_stage(smtp_server: SMTPTestServer) -> None:
    smtp_server.fail_next(1, "550 5.1.1 No such user", stage="RCPT")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
        _send(smtp_server)
    assert excinfo.value.recipients == {APPLICANT: (550, b"5.1.1 No such user")}


def test_reject_one_recipient(smtp_server: SMTPTestServer) -> None:
    smtp_server.reject_recipient("nobody@example.org")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        refused = client.sendmail(
            SENDER, [APPLICANT, "nobody@example.org"], as_bytes(make_mail(to=APPLICANT))
        )
    assert refused == {"nobody@example.org": (550, b"5.1.1 No such user")}
    assert smtp_server.wait_for(1)[0].rcpt_tos == (APPLICANT,)


def test_bad_reply_is_refused(smtp_server: SMTPTestServer) -> None:
    with pytest.raises(ValueError, match="4xx/5xx"):
        smtp_server.fail_next(1, "250 fine")


def test_stop_then_start_on_the_same_port(smtp_server: SMTPTestServer) -> None:
    port = smtp_server.port
    # A client connected when the server goes down.
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10)
    try:
        client.ehlo()
        smtp_server.stop()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(smtp_server.host, port, timeout=5)
    smtp_server.start()
    assert smtp_server.port == port
    _send(smtp_server)
    assert len(smtp_server.wait_for(1)) == 1
    # Nothing of the dropped connection is left to be collected (filterwarnings = error).
    gc.collect()


def test_wait_for_times_out_readably(smtp_server: SMTPTestServer) -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="expected 1 message"):
        smtp_server.wait_for(1, timeout=0.2)
    assert time.monotonic() - started < 2


def test_auth_required(smtp_server_factory) -> None:
    server = smtp_server_factory(username="mailbot@ville-bethune.fr", password="s3cret")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        assert "LOGIN" in client.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
            client.sendmail(SENDER, [APPLICANT], as_bytes(make_mail()))
        assert excinfo.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("mailbot@ville-bethune.fr", "wrong")
    for mechanism in ("PLAIN", "LOGIN"):
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.ehlo()
            client.user, client.password = "mailbot@ville-bethune.fr", "s3cret"
            code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
            assert code == 235
            client.sendmail(SENDER, [APPLICANT], as_bytes(make_mail(subject=mechanism)))
    captured = server.wait_for(2)
    assert [(m.message["Subject"], m.auth_login) for m in captured] == [
        ("PLAIN", "mailbot@ville-bethune.fr"),
        ("LOGIN", "mailbot@ville-bethune.fr"),
    ]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl creates the certificate")
def test_starttls(smtp_server_factory, tmp_path: Path) -> None:
    ca, cert, key = make_test_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = smtp_server_factory(
        username="mailbot", password="s3cret", tls_context=server_context, require_starttls=True
    )
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(ca)))
        client.login("mailbot", "s3cret")
        client.sendmail(SENDER, [APPLICANT], as_bytes(make_mail()))
    assert server.wait_for(1)[0].auth_login == "mailbot"


def test_servers_are_independent(smtp_server: SMTPTestServer, smtp_server_factory) -> None:
    other = smtp_server_factory()
    assert other.port != smtp_server.port
    _send(other)
    assert len(other.wait_for(1)) == 1
    assert smtp_server.messages == []


def test_start_on_a_taken_port_fails(smtp_server: SMTPTestServer) -> None:
    other = SMTPTestServer(port=smtp_server.port)
    with pytest.raises(OSError):
        other.start()
    assert not other.is_running()
