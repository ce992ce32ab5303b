"""What the IMAP client sends to a real Dovecot: batches, ASCII-only SEARCH, timeouts, no \\Seen,
UID EXPUNGE of exactly the UIDs it deletes, IDLE; and that it is the only module talking IMAP."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot.config import load_config
from mailbot.imap import MailboxClient
from mailbot.intake import poll_all
from tests.fixtures.mail import make_mail


@pytest.fixture
def spy(monkeypatch):
    """Record every command the client sends (the real imaplib still sends it)."""
    import imaplib

    sent: list[tuple[str, tuple]] = []
    real_uid, real_command = imaplib.IMAP4.uid, imaplib.IMAP4._command

    def uid(self, command, *args):
        sent.append((f"UID {command.upper()}", args))
        return real_uid(self, command, *args)

    def command(self, name, *args):
        if name != "UID":
            sent.append((name, args))
        return real_command(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "uid", uid)
    monkeypatch.setattr(imaplib.IMAP4, "_command", command)
    return sent


def mailbox_settings(service_env):
    return load_config(service_env["MAILBOT_CONFIG"]).settings.mailboxes[0]


def test_fetch_goes_in_batches_without_seen(service_env, dovecot, spy):
    for n in range(12):
        dovecot.append("n.bataillon", make_mail(subject=f"message {n}"))
    settings = mailbox_settings(service_env)
    with MailboxClient(settings, service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]) as client:
        client.select()
        uids = client.uids_after(0)
        spy.clear()
        fetched = list(client.fetch(uids, batch=5))
    assert len(fetched) == 12
    fetches = [args for name, args in spy if name == "UID FETCH"]
    assert [len(args[0].split(",")) for args in fetches] == [5, 5, 2]
    assert all("BODY.PEEK[]" in args[1] for args in fetches)
    assert all("\\Seen" not in flags for flags in dovecot.fetch_flags("n.bataillon").values())


def test_search_never_carries_accents_and_uses_uid_ranges(service_app, dovecot, spy):
    dovecot.append(
        "n.bataillon",
        make_mail(subject="Candidature « Béthune Smart City » – dossier d'intention", body="é"),
    )
    poll_all(service_app)
    for user in ("n.bataillon", "d.berteloot"):
        dovecot.append(user, make_mail(subject=f"Réunion pour {user}", body="é"))
    poll_all(service_app)
    searches = [args for name, args in spy if name == "UID SEARCH"]
    assert searches, spy
    for args in searches:
        text = " ".join(a.decode() if isinstance(a, bytes) else str(a) for a in args)
        assert text.isascii(), text
    # The second pass asks only for UIDs above each cursor (the box empty at first too).
    second_pass = [" ".join(str(a) for a in args) for args in searches[-2:]]
    assert any("UID 2:*" in text for text in second_pass), second_pass
    assert any("UID 1:*" in text for text in second_pass), second_pass

    # A pass with nothing new: STATUS on each box, no SELECT, no SEARCH, no FETCH.
    spy.clear()
    poll_all(service_app)
    names = [name for name, _args in spy]
    assert names.count("STATUS") == 2, names
    assert not {"SELECT", "UID SEARCH", "UID FETCH"} & set(names), names


def test_every_connection_has_a_socket_timeout(service_env, dovecot, monkeypatch):
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__TIMEOUT_SECONDS", "7.5")
    settings = mailbox_settings(service_env)
    with MailboxClient(settings, service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]) as client:
        # The socket is imap-tools' business: reached here only to check it.
        assert client._mailbox.client.sock.gettimeout() == 7.5


def test_smtp_connection_has_a_socket_timeout(smtp_server, config_dir, secrets_env, monkeypatch):
    from mailbot.smtp import SmtpConnection

    monkeypatch.setenv("MAILBOT_SMTP__HOST", smtp_server.host)
    monkeypatch.setenv("MAILBOT_SMTP__PORT", str(smtp_server.port))
    monkeypatch.setenv("MAILBOT_SMTP__SECURITY", "none")
    monkeypatch.setenv("MAILBOT_SMTP__USERNAME", "")
    monkeypatch.setenv("MAILBOT_SMTP__TIMEOUT_SECONDS", "9")
    settings = load_config(config_dir).settings.smtp
    with SmtpConnection(settings) as connection:
        assert connection.client.sock.gettimeout() == 9


def test_idle_is_renewed_before_servers_drop_it(config_dir, secrets_env, edit_config, capsys):
    from mailbot.cli import main

    config = load_config(config_dir)
    assert config.settings.schedule.idle_renew_minutes == 25
    edit_config("mailbot.toml", "idle_renew_minutes = 25", "idle_renew_minutes = 31")
    assert main(["--config", str(config_dir), "config", "check"]) == 2
    assert "schedule.idle_renew_minutes" in capsys.readouterr().err


def test_a_message_the_server_fails_to_return_is_fetched_again(service_app, dovecot):
    """Fault injection: the server leaves one message out of a FETCH answer."""
    from mailbot.intake import poll_mailbox
    from storage.db import session_scope
    from storage.models import Message
    from tests.fixtures.candidatures import candidature

    for n in range(1, 5):
        dovecot.append("n.bataillon", candidature(n))
    settings = service_app.config.settings.mailboxes[0]

    class Forgetful(MailboxClient):
        def fetch(self, uids, **kwargs):
            for message in super().fetch(uids, **kwargs):
                if message.uid != 2:
                    yield message

    report = poll_mailbox(service_app, settings, client_factory=Forgetful)
    assert report.error and "UID 2" in report.error
    assert report.filed == 1  # UID 1 only: nothing above the gap
    report = poll_mailbox(service_app, settings)
    assert report.error is None and report.filed == 3
    with session_scope(service_app.engine) as session:
        assert len(session.exec(select(Message)).all()) == 4


def test_existing_uids_asks_the_server(service_env, dovecot):
    for n in range(3):
        dovecot.append("n.bataillon", make_mail(subject=f"m{n}"))
    settings = mailbox_settings(service_env)
    with MailboxClient(settings, service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]) as client:
        client.select()
        assert client.existing_uids([2, 3, 99]) == [2, 3]
        assert client.existing_uids([]) == []


def test_delete_uids_expunges_exactly_those_uids(service_env, dovecot, spy):
    kept = dovecot.append("n.bataillon", make_mail(subject="kept"))
    doomed = [dovecot.append("n.bataillon", make_mail(subject=f"doomed {n}")) for n in range(3)]
    # Marked deleted by its owner, not expunged yet: it must survive.
    trashed = dovecot.append("n.bataillon", make_mail(subject="trashed"), flags=["\\Deleted"])
    settings = mailbox_settings(service_env)
    with MailboxClient(settings, service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]) as client:
        assert client.has_capability("UIDPLUS")
        client.select()
        spy.clear()
        client.delete_uids(doomed)
        client.delete_uids([])
    names = [name for name, _args in spy]
    assert names.count("UID EXPUNGE") == 1 and "EXPUNGE" not in names, names
    assert dovecot.uids("n.bataillon") == [kept, trashed]


def test_uids_with_message_id_searches_in_ascii_only(service_env, dovecot, spy):
    first = dovecot.append("n.bataillon", make_mail(subject="a", message_id="<one@example.org>"))
    again = dovecot.append("n.bataillon", make_mail(subject="b", message_id="<one@example.org>"))
    dovecot.append("n.bataillon", make_mail(subject="c", message_id="<two@example.org>"))
    settings = mailbox_settings(service_env)
    with MailboxClient(settings, service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]) as client:
        client.select()
        assert client.uids_with_message_id(" <one@example.org> ") == [first, again]
        spy.clear()
        for unusable in (None, "", "<été@example.org>", '<a"b@example.org>', "<a\\b@x>"):
            assert client.uids_with_message_id(unusable) == []
        assert spy == []  # never sent


def test_idle_announces_new_mail(service_env, dovecot):
    settings = mailbox_settings(service_env)
    with MailboxClient(settings, service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]) as client:
        assert client.has_capability("IDLE")
        client.select()
        # The first round may report the EXISTS count of the SELECT answer.
        client.start_idle()
        client.stop_idle()
        assert client.start_idle() is False
        assert client.wait_in_idle(timeout=0.2) is False
        dovecot.append("n.bataillon", make_mail(subject="new"))
        deadline = time.monotonic() + 10
        news = False
        while not news and time.monotonic() < deadline:
            news = client.wait_in_idle(timeout=0.5)
        client.stop_idle()
        assert news
        # Out of IDLE, the connection answers commands again.
        assert len(client.all_uids()) == 1


# The product packages; tests/ and bench/ fill test servers with imap-tools directly.
PRODUCT = ("mailbot", "parsers", "storage")
IMAP_LIBRARIES = {"imaplib", "imap_tools"}


def test_only_the_imap_module_imports_imap_libraries():
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            if path == root / "mailbot" / "imap.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                if any(name.split(".")[0] in IMAP_LIBRARIES for name in names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == [], "import imap-tools/imaplib only in mailbot/imap.py: " + ", ".join(
        offenders
    )


def test_mail_arriving_as_idle_starts_is_announced(service_env, dovecot):
    """A notice sent with the IDLE continuation is not left unread in imaplib's buffer.

    Dovecot answers IDLE with ``+ idling`` and, when mail came since the
    connection last looked, ``* N EXISTS`` in the same packet: imaplib reads
    the first line and buffers the second, where a wait on the socket never
    sees it (the notice then waited for the next packet: the next message or
    the server's keep-alive two minutes later).
    """
    settings = mailbox_settings(service_env)
    password = service_env["MAILBOT_IMAP_PASSWORD_NBATAILLON"]
    announced = []
    with MailboxClient(settings, password) as client:
        client.select()
        client.start_idle()
        client.stop_idle()
        for round_ in range(20):
            dovecot.append("n.bataillon", make_mail(subject=f"while out of IDLE {round_}"))
            news = client.start_idle()
            deadline = time.monotonic() + 3
            while not news and time.monotonic() < deadline:
                news = client.wait_in_idle(timeout=0.5)
            client.stop_idle()
            announced.append(news)
        assert len(client.all_uids()) == 20
    assert all(announced), announced
