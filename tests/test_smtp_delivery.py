"""Outbox delivery details: SMTP AUTH, STARTTLS with a private CA, two workers on PostgreSQL."""

from __future__ import annotations

import ssl
import threading

import pytest
from sqlmodel import select

from mailbot.app import App
from mailbot.smtp import send_outbox
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Outbox
from tests.fixtures.dovecot import make_test_certificate


def queue(app: App, count: int, *, status: str = "queued") -> None:
    held = (
        {"suppressed_reason": "hourly_cap", "suppressed_details": {}} if status != "queued" else {}
    )
    with session_scope(app.engine) as session:
        for n in range(count):
            repo.enqueue_outgoing(
                session=session,
                dedup_key=f"acknowledgement:test:{n}",
                kind="acknowledgement",
                mailbox="n.bataillon",
                from_addr="n.bataillon@ville-bethune.fr",
                to_addr=f"porteur{n}@example.org",
                subject=f"Réponse {n}",
                message_id=f"<test.{n}@ville-bethune.fr>",
                raw=(
                    f"From: n.bataillon@ville-bethune.fr\r\nTo: porteur{n}@example.org\r\n"
                    f"Subject: Reponse {n}\r\nMessage-ID: <test.{n}@ville-bethune.fr>\r\n"
                    "\r\nBonjour\r\n"
                ).encode(),
                status=status,
                **held,
            )


def rows(app: App) -> list[Outbox]:
    with session_scope(app.engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)).all())


@pytest.fixture
def smtp_app(config_dir, secrets_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MAILBOT_DATABASE__URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")

    def make(server, **settings: str) -> App:
        monkeypatch.setenv("MAILBOT_SMTP__HOST", settings.pop("host", server.host))
        monkeypatch.setenv("MAILBOT_SMTP__PORT", str(server.port))
        for key, value in settings.items():
            monkeypatch.setenv(f"MAILBOT_SMTP__{key.upper()}", value)
        return App(str(config_dir))

    return make


def test_smtp_auth_from_password_env(smtp_server_factory, smtp_app, monkeypatch):
    server = smtp_server_factory(username="mailbot", password="s3cret-smtp")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "wrong")
    app = smtp_app(server, security="none", username="mailbot")
    queue(app, 1)
    report = send_outbox(app)
    assert report.sent == 0 and report.retrying == 1
    assert "login refused" in rows(app)[0].last_error
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "s3cret-smtp")
    report = send_outbox(app, now=rows(app)[0].next_attempt_at)
    assert report.sent == 1
    [captured] = server.messages
    assert captured.auth_login == "mailbot"
    app.close()


def test_starttls_with_private_ca(smtp_server_factory, smtp_app, tmp_path):
    ca, cert, key = make_test_certificate(tmp_path / "pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = smtp_server_factory(tls_context=context, require_starttls=True)
    app = smtp_app(server, host="localhost", security="starttls", username="", tls_ca_file=str(ca))
    queue(app, 2)
    assert send_outbox(app).sent == 2
    assert len(server.messages) == 2
    app.close()


def test_untrusted_smtp_certificate_is_refused(smtp_server_factory, smtp_app, tmp_path):
    _ca, cert, key = make_test_certificate(tmp_path / "pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = smtp_server_factory(tls_context=context, require_starttls=True)
    app = smtp_app(server, host="localhost", security="starttls", username="")
    queue(app, 1)
    report = send_outbox(app)
    assert report.sent == 0 and "certificate" in report.errors[0].lower()
    assert server.messages == []
    app.close()


@pytest.mark.postgres
def test_two_workers_deliver_each_reply_once(postgres_url, smtp_server, smtp_app, monkeypatch):
    monkeypatch.setenv("MAILBOT_DATABASE__URL", postgres_url)
    apps = [smtp_app(smtp_server, security="none", username="") for _ in range(2)]
    queue(apps[0], 60)
    reports = []
    barrier = threading.Barrier(2)

    def work(app: App) -> None:
        barrier.wait()
        reports.append(send_outbox(app))

    threads = [threading.Thread(target=work, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.sent for r in reports) == 60
    assert all(r.sent > 0 for r in reports), [r.sent for r in reports]
    ids = [c.message["Message-ID"] for c in smtp_server.messages]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert all(row.status == "sent" and row.attempts == 1 for row in rows(apps[0]))
    for app in apps:
        app.close()


@pytest.mark.postgres
def test_two_workers_release_held_replies_within_the_hourly_cap(
    postgres_url, smtp_server, smtp_app, monkeypatch
):
    """Held replies are released by one worker at a time: the cap is never exceeded."""
    monkeypatch.setenv("MAILBOT_DATABASE__URL", postgres_url)
    monkeypatch.setenv("MAILBOT_REPLIES__GLOBAL_HOURLY_CAP", "4")
    apps = [smtp_app(smtp_server, security="none", username="") for _ in range(2)]
    queue(apps[0], 10, status="held")
    reports = []
    barrier = threading.Barrier(2)

    def work(app: App) -> None:
        barrier.wait()
        reports.append(send_outbox(app))

    threads = [threading.Thread(target=work, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.released for r in reports) == 4
    assert sum(r.sent for r in reports) == 4
    assert len(smtp_server.messages) == 4
    assert [row.status for row in rows(apps[0])] == ["sent"] * 4 + ["held"] * 6
    for app in apps:
        app.close()
