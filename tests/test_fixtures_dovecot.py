"""Checks of the Dovecot fixture: the server behaves as the mail bot tests will assume."""

from __future__ import annotations

import datetime as dt
import imaplib
import time

import pytest
from imap_tools import AND, MailBox, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

from tests.fixtures import dovecot as dovecot_module
from tests.fixtures.dovecot import DovecotServer, close_quietly
from tests.fixtures.mail import as_bytes, bulk_messages, make_mail

NB = "n.bataillon"
DB = "d.berteloot"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _login_fails(server: DovecotServer, user: str, password: str) -> bool:
    mailbox = MailBoxUnencrypted(server.host, server.port)
    try:
        mailbox.login(user, password)
    except MailboxLoginError:
        return True
    finally:
        close_quietly(mailbox)
    return False


def _wait_for_exists(mailbox, timeout: float = 10.0) -> list[bytes]:
    """IDLE responses until an EXISTS arrives (Dovecot notifies through inotify)."""
    deadline = time.monotonic() + timeout
    seen: list[bytes] = []
    while time.monotonic() < deadline:
        seen += mailbox.idle.poll(timeout=1)
        if any(b"EXISTS" in line for line in seen):
            break
    return seen


def test_append_then_fetch_without_marking_seen(dovecot: DovecotServer) -> None:
    msg = make_mail(
        subject="Candidature Béthune été",
        attachments=[("Dossier complété.pdf", PDF, "application/pdf")],
    )
    uid = dovecot.append(NB, as_bytes(msg))
    assert dovecot.uids(NB) == [uid]

    with MailBoxUnencrypted(dovecot.host, dovecot.port).login(NB, dovecot.users[NB]) as mailbox:
        (fetched,) = list(mailbox.fetch(mark_seen=False))
        assert fetched.uid == str(uid)
        assert fetched.subject == "Candidature Béthune été"
        assert fetched.from_ == "alice@example.org"
        assert [(a.filename, a.payload) for a in fetched.attachments] == [
            ("Dossier complété.pdf", PDF)
        ]
        assert "\\Seen" not in fetched.flags
        # Still unseen for a second look in the same session, and for another session.
        assert [m.uid for m in mailbox.fetch(AND(seen=False), mark_seen=False)] == [str(uid)]
    assert dovecot.fetch_flags(NB) == {uid: frozenset()}

    # The other mailbox is separate.
    assert dovecot.uids(DB) == []


def test_append_flags_date_and_folder(dovecot: DovecotServer) -> None:
    when = dt.datetime(2025, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    uid = dovecot.append(
        DB,
        make_mail(subject="Déjà lu"),
        folder="Traités",
        flags=["\\Seen", "$Forwarded"],
        date=when,
    )
    assert "Traités" in dovecot.folders(DB)
    assert dovecot.fetch_flags(DB, "Traités") == {uid: frozenset({"\\Seen", "$Forwarded"})}
    with dovecot.mailbox_client(DB, "Traités") as mailbox:
        (fetched,) = list(mailbox.fetch(mark_seen=False, headers_only=True))
    assert fetched.subject == "Déjà lu"
    # INTERNALDATE is what was asked for.
    with dovecot.mailbox_client(DB, "Traités") as mailbox:
        _, data = mailbox.client.uid("FETCH", str(uid), "(INTERNALDATE)")
    assert b'"03-Feb-2025 04:05:06 +0000"' in data[0]


def test_idle_notices_append_from_another_connection(dovecot: DovecotServer) -> None:
    with dovecot.mailbox_client(NB) as mailbox:
        mailbox.idle.start()
        try:
            dovecot.append(NB, make_mail(subject="Arrivée pendant IDLE"))
            responses = _wait_for_exists(mailbox)
        finally:
            mailbox.idle.stop()
        assert any(line.endswith(b"1 EXISTS") for line in responses), responses
        assert [m.subject for m in mailbox.fetch(mark_seen=False)] == ["Arrivée pendant IDLE"]


def test_idle_notices_fill_maildir(dovecot: DovecotServer) -> None:
    dovecot.create_folder(NB, "INBOX")
    with dovecot.mailbox_client(NB) as mailbox:
        with mailbox.idle:
            dovecot.fill_maildir(NB, bulk_messages(3))
            responses = _wait_for_exists(mailbox)
        assert any(line.endswith(b"3 EXISTS") for line in responses), responses


def test_recreate_inbox_changes_uidvalidity(dovecot: DovecotServer) -> None:
    dovecot.append_many(NB, [make_mail(subject=f"Avant {i}") for i in range(3)])
    before = dovecot.uidvalidity(NB)
    after = dovecot.recreate_folder(NB)
    assert after != before
    assert dovecot.uidvalidity(NB) == after
    assert dovecot.uids(NB) == []
    # The folder works as usual afterwards, numbering from 1 again.
    assert dovecot.append(NB, make_mail(subject="Après")) == 1


def test_recreate_inbox_keeping_messages_renumbers_them(dovecot: DovecotServer) -> None:
    uids = dovecot.append_many(NB, [make_mail(subject=f"Message {i}") for i in range(4)])
    dovecot.append(NB, make_mail(subject="Message lu"), flags=["\\Seen"])
    # Leave a hole so that the renumbering is visible.
    with dovecot.mailbox_client(NB) as mailbox:
        mailbox.delete([str(uids[0])])
    before = dovecot.uidvalidity(NB)
    with dovecot.mailbox_client(NB) as connected:
        after = dovecot.recreate_folder(NB, keep_messages=True)
        # Sessions open on the user were kicked, as a server migration would.
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            connected.client.noop()
    assert after != before
    assert dovecot.uids(NB) == [1, 2, 3, 4]
    flags = dovecot.fetch_flags(NB)
    assert flags[4] == frozenset({"\\Seen"})
    with dovecot.mailbox_client(NB) as mailbox:
        subjects = [m.subject for m in mailbox.fetch(mark_seen=False, headers_only=True)]
    assert subjects == ["Message 1", "Message 2", "Message 3", "Message lu"]


def test_recreate_other_folder_changes_uidvalidity(dovecot: DovecotServer) -> None:
    dovecot.append(DB, make_mail(), folder="Candidatures reçues")
    before = dovecot.uidvalidity(DB, "Candidatures reçues")
    with dovecot.mailbox_client(DB) as connected:
        after = dovecot.recreate_folder(DB, "Candidatures reçues")
        # Done over IMAP: other sessions stay up.
        assert connected.client.noop()[0] == "OK"
    assert after != before
    assert dovecot.uids(DB, "Candidatures reçues") == []


def test_fill_maildir_1000_messages(dovecot: DovecotServer) -> None:
    count = dovecot.fill_maildir(NB, bulk_messages(1000))
    assert count == 1000
    uids = dovecot.uids(NB)
    assert len(uids) == 1000
    # UIDs follow the order of the list.
    with dovecot.mailbox_client(NB) as mailbox:
        first = next(mailbox.fetch(AND(uid=str(uids[0])), mark_seen=False, headers_only=True))
        last = next(mailbox.fetch(AND(uid=str(uids[-1])), mark_seen=False, headers_only=True))
        assert (first.subject, last.subject) == ("Message 1", "Message 1000")
        assert len(mailbox.numbers(AND(seen=False))) == 1000


def test_fill_maildir_with_folder_flags_and_date(dovecot: DovecotServer) -> None:
    when = dt.datetime(2024, 12, 24, 18, 0, tzinfo=dt.UTC)
    # "." is the hierarchy separator of Dovecot's default Maildir++ layout.
    dovecot.fill_maildir(DB, bulk_messages(5), folder="Archivés.2024", flags=["\\Seen"], date=when)
    assert {"Archivés", "Archivés.2024"} <= set(dovecot.folders(DB))
    flags = dovecot.fetch_flags(DB, "Archivés.2024")
    assert len(flags) == 5
    assert set(flags.values()) == {frozenset({"\\Seen"})}
    with dovecot.mailbox_client(DB, "Archivés.2024") as mailbox:
        _, data = mailbox.client.fetch("1", "(INTERNALDATE)")
    assert b"24-Dec-2024 18:00:00 +0000" in data[0]


def test_restart_keeps_serving_the_same_messages(dovecot: DovecotServer) -> None:
    uids = dovecot.append_many(NB, [make_mail(subject=f"Persistant {i}") for i in range(3)])
    uidvalidity = dovecot.uidvalidity(NB)
    port = dovecot.port
    connected = dovecot.mailbox_client(NB)
    try:
        dovecot.restart()
        # The old connection is gone, as for a real server restarted mid-poll.
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            connected.client.noop()
    finally:
        close_quietly(connected)
    assert dovecot.port == port
    assert dovecot.is_alive()
    assert dovecot.uids(NB) == uids
    assert dovecot.uidvalidity(NB) == uidvalidity


def test_killed_server_comes_back_with_its_mail(dovecot: DovecotServer) -> None:
    uid = dovecot.append(NB, make_mail(subject="Avant le crash"))
    connected = dovecot.mailbox_client(NB)
    try:
        dovecot.kill()
        assert not dovecot.is_alive()
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            connected.client.noop()
    finally:
        close_quietly(connected)
    dovecot.start()
    assert dovecot.uids(NB) == [uid]


def test_stopped_server_refuses_connections(dovecot: DovecotServer) -> None:
    dovecot.stop()
    assert not dovecot.is_alive()
    with pytest.raises(ConnectionRefusedError):
        MailBoxUnencrypted(dovecot.host, dovecot.port, timeout=5)
    # Left stopped on purpose: the next test checks that the fixture brings it back.


def test_fixture_restarts_a_stopped_server(dovecot: DovecotServer) -> None:
    assert dovecot.is_alive()
    assert dovecot.uids(NB) == []


def test_state_left_behind(dovecot: DovecotServer) -> None:
    dovecot.add_user("contact@ville-bethune.fr", "secret-contact")
    dovecot.append("contact@ville-bethune.fr", make_mail(), folder="Divers")
    dovecot.append(NB, make_mail(), folder="Divers")
    dovecot.append(DB, make_mail(), flags=["\\Seen"])
    # The next test checks that none of this survives.


def test_next_test_gets_empty_mailboxes(dovecot: DovecotServer) -> None:
    assert dovecot.users == {NB: "secret-nb", DB: "secret-db"}
    assert dovecot.folders(NB) == ["INBOX"]
    assert dovecot.uids(NB) == []
    assert dovecot.uids(DB) == []
    assert not dovecot.maildir("contact@ville-bethune.fr").exists()
    assert _login_fails(dovecot, "contact@ville-bethune.fr", "secret-contact")


def test_reset_kicks_open_sessions(dovecot: DovecotServer) -> None:
    dovecot.append(DB, make_mail())
    before = dovecot.uidvalidity(DB)
    leaked = dovecot.mailbox_client(DB)
    try:
        assert dovecot.session_pids(DB)
        dovecot.reset()
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            leaked.client.noop()
    finally:
        close_quietly(leaked)
    assert dovecot.session_pids() == []
    assert dovecot.uids(DB) == []
    # UIDVALIDITY keeps growing across resets.
    assert dovecot.uidvalidity(DB) > before


def test_added_user_with_address_login(dovecot: DovecotServer) -> None:
    user = "Candidatures@Ville-Bethune.fr"
    dovecot.add_user(user, "secret-c")
    uid = dovecot.append(user, make_mail(to="candidatures@ville-bethune.fr"))
    assert dovecot.uids(user) == [uid]
    # Dovecot lowercases login names for the mail directory.
    assert dovecot.maildir(user).name == "candidatures@ville-bethune.fr"
    for _ in range(3):
        assert _login_fails(dovecot, user, "wrong")
    # A password change applies at once.
    dovecot.add_user(user, "new-secret")
    assert _login_fails(dovecot, user, "secret-c")
    with dovecot.mailbox_client(user) as mailbox:
        assert len(mailbox.uids()) == 1


def test_tls_and_starttls(dovecot: DovecotServer) -> None:
    if not dovecot.tls:
        pytest.skip("openssl is not installed: the server runs without TLS")
    dovecot.append(NB, make_mail(subject="Chiffré"))
    with MailBox(dovecot.host, dovecot.tls_port, ssl_context=dovecot.ssl_context()).login(
        NB, dovecot.users[NB]
    ) as mailbox:
        assert [m.subject for m in mailbox.fetch(mark_seen=False)] == ["Chiffré"]
    with dovecot.mailbox_client(NB, security="starttls") as mailbox:
        assert len(mailbox.uids()) == 1


def test_missing_dovecot_skips_or_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dovecot_module, "find_dovecot", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install dovecot-imapd"):
        dovecot_module.require_dovecot()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Dovecot is required"):
        dovecot_module.require_dovecot()


def test_tests_using_dovecot_get_the_marker(request: pytest.FixtureRequest) -> None:
    session_items = request.session.items
    by_name = {item.name: item for item in session_items}
    if "test_fixture_restarts_a_stopped_server" not in by_name:
        pytest.skip("run with the other tests of this module")
    assert by_name["test_fixture_restarts_a_stopped_server"].get_closest_marker("dovecot")
    assert by_name[request.node.name].get_closest_marker("dovecot") is None
