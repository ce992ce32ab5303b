"""Intake against a real Dovecot: every message filed exactly once, nothing else touched."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot.cli import main
from mailbot.config import Verdict
from mailbot.filing import HANDLERS, STATUS_OF_VERDICT
from mailbot.imap import MailboxClient
from mailbot.intake import poll_all, poll_mailbox
from storage.db import session_scope
from storage.models import Dossier, MailboxCursor, Message, Piece, Sighting
from tests.fixtures.candidatures import candidature, letter_pdf
from tests.fixtures.mail import forward_as_attachment, make_mail

NB, DB = "n.bataillon", "d.berteloot"
KEYWORD = "$Mailbot-Filed"
MAILBOT = Path(sys.executable).parent / "mailbot"


def newsletter():
    return make_mail(
        subject="La lettre d'information de mars",
        sender="Info Région <news@example.net>",
        body="Découvrez nos actualités.",
        headers={"List-Id": "<news.example.net>", "Precedence": "bulk"},
    )


def rows(app, model):
    with session_scope(app.engine) as session:
        return list(session.exec(select(model)).all())


def poll(app):
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]
    return {r.mailbox: r for r in reports}


def test_candidatures_in_both_mailboxes_are_filed_once(service_app, dovecot):
    to_both = candidature(
        1, to=("n.bataillon@ville-bethune.fr",), cc=("d.berteloot@ville-bethune.fr",)
    )
    dovecot.append(NB, to_both)
    dovecot.append(DB, to_both)
    dovecot.append(DB, candidature(2, to=("d.berteloot@ville-bethune.fr",)))

    reports = poll(service_app)
    assert reports[NB].filed == 1 and reports[DB].filed == 1
    assert reports[DB].duplicates == 1

    dossiers = rows(service_app, Dossier)
    assert len(dossiers) == 2
    year = dt.datetime.now().year
    assert sorted(d.reference for d in dossiers) == [f"BSC-{year}-0001", f"BSC-{year}-0002"]
    messages = rows(service_app, Message)
    assert len(messages) == 2
    sightings = rows(service_app, Sighting)
    assert sorted(s.mailbox for s in sightings) == [DB, DB, NB]
    # Filed mail gets the keyword, and is still unread for staff.
    for user in (NB, DB):
        for flags in dovecot.fetch_flags(user).values():
            assert KEYWORD in flags
            assert "\\Seen" not in flags


def test_second_poll_changes_nothing(service_app, dovecot):
    dovecot.append(NB, candidature())
    dovecot.append(NB, newsletter())
    poll(service_app)
    before = (len(rows(service_app, Message)), len(rows(service_app, Sighting)))
    reports = poll(service_app)
    assert reports[NB].new == 0
    assert (len(rows(service_app, Message)), len(rows(service_app, Sighting))) == before
    assert len(rows(service_app, Dossier)) == 1


def test_mail_already_read_by_staff_is_filed(service_app, dovecot):
    dovecot.append(NB, candidature(), flags=["\\Seen"])
    assert poll(service_app)[NB].filed == 1
    assert len(rows(service_app, Dossier)) == 1


def test_robots_newsletters_and_staff_mail_are_recorded_and_left_alone(service_app, dovecot):
    auto_reply = make_mail(
        subject="Réponse automatique : absent",
        sender="Alice <alice@example.org>",
        body="Je suis absente.",
        headers={"Auto-Submitted": "auto-replied"},
    )
    bounce = make_mail(
        subject="Undelivered Mail Returned to Sender",
        sender="MAILER-DAEMON@example.org",
        body="This is the mail system.",
        headers={"Return-Path": "<>"},
    )
    internal = make_mail(
        subject="Réunion label smart city jeudi",
        sender="David Berteloot <d.berteloot@ville-bethune.fr>",
        body="On fait le point sur les candidatures ?",
    )
    uids = [dovecot.append(NB, m) for m in (auto_reply, bounce, newsletter(), internal)]
    report = poll(service_app)[NB]
    assert report.ignored == 4 and report.filed == 0
    messages = rows(service_app, Message)
    assert sorted(m.verdict for m in messages) == [
        "auto_reply",
        "auto_reply",
        "auto_reply",
        "not_candidature",
    ]
    assert all(m.status == "ignored" and m.raw_blob is None for m in messages)
    assert all(m.rule_trace for m in messages)
    flags = dovecot.fetch_flags(NB)
    assert all(flags[uid] == frozenset() for uid in uids)
    assert rows(service_app, Dossier) == []
    # Nothing to do on the server, and nothing left pending either.
    assert {s.server_action for s in rows(service_app, Sighting)} == {"none"}


def test_uidvalidity_change_files_nothing_twice_and_misses_nothing(service_app, dovecot):
    dovecot.append(NB, candidature(1))
    dovecot.append(NB, candidature(2))
    poll(service_app)
    dovecot.recreate_folder(NB, keep_messages=True)
    dovecot.append(NB, candidature(3))
    report = poll(service_app)[NB]
    assert report.filed == 1
    assert report.duplicates == 2
    assert len(rows(service_app, Dossier)) == 3
    assert len(rows(service_app, Message)) == 3


def test_old_mail_beyond_backlog_is_skipped(service_app, dovecot):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    dovecot.append(NB, candidature(1), date=old)
    dovecot.append(NB, candidature(2))
    report = poll(service_app)[NB]
    assert report.skipped == 1 and report.filed == 1
    statuses = sorted(m.status for m in rows(service_app, Message))
    assert statuses == ["filed", "skipped"]
    assert len(rows(service_app, Dossier)) == 1


def test_one_mailbox_failure_does_not_stop_the_other(service_app, dovecot, monkeypatch, capsys):
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD_NBATAILLON", "wrong-password")
    dovecot.append(DB, candidature(1, to=("d.berteloot@ville-bethune.fr",)))
    code = main(["poll", "--once", "--no-send"])
    out = capsys.readouterr().out
    assert code == 1
    assert "n.bataillon: ERROR" in out and "login refused" in out
    assert "d.berteloot: 1 new, 1 filed" in out
    assert len(rows(service_app, Dossier)) == 1


def test_move_to_processed_folder(service_app, dovecot, monkeypatch):
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__ON_FILED", "move")
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__PROCESSED_FOLDER", "Traites")
    dovecot.append(NB, candidature())
    dovecot.append(NB, newsletter())
    service_app._config = None  # reload with the new environment
    poll(service_app)
    assert len(dovecot.uids(NB, "Traites")) == 1
    assert len(dovecot.uids(NB)) == 1  # the newsletter stays in INBOX, untouched


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w") as member,
    ):
        chunk = bytes(1 << 20)
        for _ in range(300):
            member.write(chunk)
    return buffer.getvalue()


def test_hostile_messages_are_filed_or_quarantined(service_app, dovecot):
    no_message_id = candidature(1, message_id=False, date=False)
    traversal = candidature(
        2, attachments=[("../../../etc/passwd", b"root:x:0:0", "application/octet-stream")]
    )
    bomb = candidature(3, attachments=[("dossier.zip", _zip_bomb(), "application/zip")])
    huge_header = candidature(4, headers={"X-Huge": "a" * 1_000_000})
    broken_mime = (
        b"From: porteur5@example.org\r\nTo: n.bataillon@ville-bethune.fr\r\n"
        b"Subject: Candidature label Smart City\r\nMessage-ID: <broken5@example.org>\r\n"
        b'Content-Type: multipart/mixed; boundary="never"\r\n\r\n--nope\r\n'
        b"Content-Type: text/plain; charset=x-unknown-8\r\n\r\n\xe9t\xe9 dossier d'intention\r\n"
    )
    for message in (no_message_id, traversal, bomb, huge_header, broken_mime):
        dovecot.append(NB, message)
    report = poll(service_app)[NB]
    assert report.new == 5
    assert report.filed + report.needs_review + report.failed + report.ignored == 5
    messages = rows(service_app, Message)
    assert len(messages) == 5
    for message in messages:
        if message.status != "ignored":
            assert message.raw_blob is not None
            assert service_app.blobs.exists(message.raw_blob)
    by_project = {m.subject.rsplit(" ", 1)[-1]: m for m in messages}
    assert "no Message-ID header" in by_project["1"].warnings
    assert by_project["1"].dedup_key.startswith("sha:")
    assert any("reduced to 'passwd'" in w for w in by_project["2"].warnings)
    assert by_project["3"].status == "needs_review"
    assert any("zip bomb" in w for w in by_project["3"].warnings)
    assert by_project["4"].status == "needs_review"
    assert any("header block" in w for w in by_project["4"].warnings)
    assert any("boundary" in w for w in by_project["City"].warnings)
    traversal_pieces = [
        p.filename for p in rows(service_app, Piece) if p.dossier_id == by_project["2"].dossier_id
    ]
    assert "passwd" in traversal_pieces
    # Nothing was written outside the blob store from a file name.
    assert not (Path(service_app.config.blob_dir).parent / "etc").exists()
    assert not poll(service_app)[NB].new


def _poll_process(env: dict[str, str], fault: str | None) -> subprocess.CompletedProcess:
    run_env = dict(os.environ, **env)
    if fault:
        run_env["MAILBOT_FAULT"] = fault
    return subprocess.run(
        [str(MAILBOT), "poll", "--once", "--no-send"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("fault", ["before_commit:2", "after_commit:2"])
def test_crash_mid_poll_files_each_message_exactly_once(service_env, service_app, dovecot, fault):
    for n in range(1, 4):
        dovecot.append(NB, candidature(n))
    crashed = _poll_process(service_env, fault)
    assert crashed.returncode == 137, crashed.stderr
    partial = len(rows(service_app, Message))
    assert partial == (1 if fault.startswith("before") else 2)

    finished = _poll_process(service_env, None)
    assert finished.returncode == 0, finished.stderr
    messages = rows(service_app, Message)
    assert len(messages) == 3
    assert len({m.dedup_key for m in messages}) == 3
    assert len(rows(service_app, Dossier)) == 3
    # The message whose flag was never set (crash after commit) got it at the next pass.
    assert all(KEYWORD in flags for flags in dovecot.fetch_flags(NB).values())
    assert all(s.server_action == "flagged" for s in rows(service_app, Sighting))


def test_staff_commands_over_filed_mail(service_app, dovecot, capsys):
    dovecot.append(NB, candidature(1))
    dovecot.append(NB, newsletter())
    poll(service_app)

    assert main(["dossiers", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 1
    entry = listed[0]
    for key in (
        "reference",
        "status",
        "intitule",
        "porteur_structure",
        "thematique",
        "sender",
        "received_at",
        "updated_at",
        "missing",
        "mailboxes",
    ):
        assert key in entry
    assert entry["sender"] == "porteur1@example.org"
    assert entry["mailboxes"] == [NB]
    assert dt.datetime.fromisoformat(entry["received_at"]).tzinfo is not None

    assert main(["dossiers", "show", entry["reference"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["messages"][0]["rule_trace"]
    assert [p["filename"] for p in shown["pieces"]] == ["dossier_intention.txt"]

    assert main(["messages", "list", "--json", "--status", "ignored"]) == 0
    ignored = json.loads(capsys.readouterr().out)
    assert [m["verdict"] for m in ignored] == ["auto_reply"]
    assert main(["messages", "retry", str(ignored[0]["id"])]) == 1
    assert "only failed or needs_review" in capsys.readouterr().err


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_poll_over_tls_and_starttls(service_app, dovecot, monkeypatch, security):
    port = dovecot.tls_port if security == "tls" else dovecot.port
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__SECURITY", security)
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__PORT", str(port))
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__HOST", "localhost")
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__TLS_CA_FILE", str(dovecot.ca_path))
    service_app._config = None
    dovecot.append(NB, candidature())
    assert poll(service_app)[NB].filed == 1


def test_untrusted_certificate_is_refused(service_app, dovecot, monkeypatch):
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__SECURITY", "tls")
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__PORT", str(dovecot.tls_port))
    service_app._config = None
    dovecot.append(NB, candidature())
    reports = {r.mailbox: r for r in poll_all(service_app)}
    assert "certificate" in (reports[NB].error or "").lower()
    assert reports[DB].error is None
    assert rows(service_app, Message) == []


def test_forwarded_candidature_belongs_to_the_original_sender(service_app, dovecot):
    # Forwarded by staff (here: the other mailbox): the original sender is the applicant.
    original = candidature(7, sender="Chloé Dupont <chloe@asso-perroy.fr>")
    forward = forward_as_attachment(
        original,
        sender="Delphine Berteloot <d.berteloot@ville-bethune.fr>",
        to=("n.bataillon@ville-bethune.fr",),
        body="Je vous transfère la candidature de Chloé.",
    )
    dovecot.append(NB, forward)
    assert poll(service_app)[NB].filed == 1
    [dossier] = rows(service_app, Dossier)
    assert dossier.sender == "chloe@asso-perroy.fr"


def test_a_forward_from_outside_keeps_its_outer_sender(service_app, dovecot):
    # Anyone may attach a message "from" someone else: only our forwards are honoured.
    original = candidature(7, sender="Chloé Dupont <chloe@asso-perroy.fr>")
    forward = forward_as_attachment(
        original,
        sender="Secrétariat <secretariat@asso-perroy.fr>",
        to=("n.bataillon@ville-bethune.fr",),
        body="Je vous transfère la candidature de Chloé.",
    )
    dovecot.append(NB, forward)
    assert poll(service_app)[NB].filed == 1
    [dossier] = rows(service_app, Dossier)
    assert dossier.sender == "secretariat@asso-perroy.fr"
    [message] = rows(service_app, Message)
    assert any("forward not honoured" in w for w in message.warnings)


def test_needs_review_then_retry_after_a_rule_change(service_app, dovecot, config_dir, capsys):
    vague = make_mail(
        subject="Question sur le label smart city",
        sender="Bruno <bruno@example.org>",
        body="Bonjour, comment fait-on ?",
    )
    dovecot.append(NB, vague)
    assert poll(service_app)[NB].needs_review == 1
    assert main(["messages", "list", "--status", "needs_review", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["status"] == "needs_review" and entry["dossier"] is None
    assert any(step["rule"] == "score" for step in entry["rule_trace"])

    rules = config_dir / "rules.toml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(
        text.replace("candidature_threshold = 5.0", "candidature_threshold = 3.5"), "utf-8"
    )
    assert main(["messages", "retry", str(entry["id"])]) == 0
    assert "filed (candidature), dossier BSC-" in capsys.readouterr().out
    [dossier] = rows(service_app, Dossier)
    assert dossier.sender == "bruno@example.org"
    [message] = rows(service_app, Message)
    assert message.status == "filed" and message.attempts == 2
    # Retrying again is refused: the message is filed now.
    assert main(["messages", "retry", str(entry["id"])]) == 1


@pytest.mark.parametrize("on_filed", ["keyword", "move"])
def test_staff_mail_marked_deleted_is_never_expunged(service_app, dovecot, monkeypatch, on_filed):
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__ON_FILED", on_filed)
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__PROCESSED_FOLDER", "Traites")
    service_app._config = None
    kept = dovecot.append(NB, newsletter(), flags=["\\Deleted"])
    dovecot.append(NB, candidature())
    assert poll(service_app)[NB].filed == 1
    flags = dovecot.fetch_flags(NB)
    assert kept in flags and "\\Deleted" in flags[kept]
    if on_filed == "move":
        assert len(dovecot.uids(NB, "Traites")) == 1
        assert list(flags) == [kept]


class _CountingClient(MailboxClient):
    """The real client, counting the SELECTs it sends (instrumentation, not a mock)."""

    selects = 0

    def select(self, folder=None):
        type(self).selects += 1
        return super().select(folder)


def test_poll_with_nothing_new_asks_status_and_never_selects(service_app, dovecot):
    mailbox = service_app.config.settings.mailbox(NB)
    dovecot.append(NB, newsletter())
    _CountingClient.selects = 0
    first = poll_mailbox(service_app, mailbox, client_factory=_CountingClient)
    assert first.error is None and first.ignored == 1
    assert _CountingClient.selects == 1  # no cursor yet: the folder is read

    idle = poll_mailbox(service_app, mailbox, client_factory=_CountingClient)
    assert idle.error is None and idle.new == 0
    assert _CountingClient.selects == 1  # STATUS said nothing is new

    dovecot.append(NB, candidature(7))
    found = poll_mailbox(service_app, mailbox, client_factory=_CountingClient)
    assert found.error is None and (found.new, found.filed) == (1, 1)
    assert _CountingClient.selects == 2


def test_cursor_catches_up_when_the_newest_mail_was_expunged_unread(service_app, dovecot):
    mailbox = service_app.config.settings.mailbox(NB)
    dovecot.append(NB, newsletter())
    assert poll_mailbox(service_app, mailbox).ignored == 1
    gone = dovecot.append(NB, newsletter())
    with dovecot.mailbox_client(NB) as box:  # deleted by staff before we saw it
        box.client.uid("STORE", str(gone), "+FLAGS", "(\\Deleted)")
        box.client.uid("EXPUNGE", str(gone))
    _CountingClient.selects = 0
    report = poll_mailbox(service_app, mailbox, client_factory=_CountingClient)
    assert report.error is None and report.new == 0
    assert _CountingClient.selects == 1  # UIDNEXT moved: the folder is looked at once
    with session_scope(service_app.engine) as session:
        cursor = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == NB)).one()
        assert cursor.last_uid == gone
    poll_mailbox(service_app, mailbox, client_factory=_CountingClient)
    assert _CountingClient.selects == 1  # and never again


@pytest.mark.postgres
def test_run_of_ignored_mail_raced_by_another_worker_is_filed_one_by_one(
    service_env, postgres_url, dovecot, monkeypatch
):
    """Another worker files one of the run between our dedup look-up and our bulk insert."""
    import sqlalchemy as sa

    from mailbot.app import App

    monkeypatch.setenv("MAILBOT_DATABASE__URL", postgres_url)
    app = App(service_env["MAILBOT_CONFIG"])
    rival = sa.create_engine(postgres_url)
    mails = [
        make_mail(subject=f"Lettre {n}", body="Actualités", sender="a@example.net")
        for n in range(3)
    ]
    for mail in mails:
        dovecot.append(NB, mail)
    raced: list[str] = []

    def rival_files_the_second(conn, cursor, statement, parameters, context, executemany):
        if raced or not statement.startswith("INSERT INTO message"):
            return
        key = f"mid:{mails[1]['Message-ID'].strip('<>').lower()}"
        with rival.begin() as other:  # commits before our INSERT runs
            other.execute(
                sa.text(
                    "INSERT INTO message (dedup_key, sha256, size, sender, subject, headers,"
                    " rule_trace, status, warnings, first_seen_at, updated_at, attempts)"
                    " VALUES (:key, :sha, 1, 'a@example.net', 'Lettre 1', '{}', '[]',"
                    " 'ignored', '[]', now(), now(), 1)"
                ),
                {"key": key, "sha": "0" * 64},
            )
        raced.append(key)

    sa.event.listen(app.engine, "before_cursor_execute", rival_files_the_second)
    try:
        report = poll_mailbox(app, app.config.settings.mailbox(NB))
    finally:
        sa.event.remove(app.engine, "before_cursor_execute", rival_files_the_second)
        rival.dispose()
    assert raced, "the bulk insert never ran"
    assert report.error is None, report.error
    assert (report.ignored, report.duplicates) == (2, 1)
    messages = rows(app, Message)
    assert len(messages) == 3
    sightings = rows(app, Sighting)
    assert sorted(s.uid for s in sightings) == [1, 2, 3]
    assert all(s.server_action == "none" for s in sightings)
    app.close()


def test_stop_in_the_middle_of_a_run_of_ignored_mail_keeps_what_was_read(service_app, dovecot):
    mailbox = service_app.config.settings.mailbox(NB)
    for n in range(6):
        dovecot.append(NB, make_mail(subject=f"Info {n}", body="Rien", sender="a@example.net"))
    asked = iter(range(100))

    def stop_after_three():  # asked once per fetch batch, then before each message
        return next(asked) >= 4

    first = poll_mailbox(service_app, mailbox, should_stop=stop_after_three)
    assert first.error is None and first.ignored == 3
    with session_scope(service_app.engine) as session:
        cursor = session.exec(select(MailboxCursor).where(MailboxCursor.mailbox == NB)).one()
        assert cursor.last_uid == 3  # the run read so far was written with its cursor
    second = poll_mailbox(service_app, mailbox)
    assert (second.new, second.ignored, second.duplicates) == (3, 3, 0)
    assert len(rows(service_app, Message)) == 6


def test_a_message_of_the_same_batch_joins_the_dossier_opened_just_before(service_app, dovecot):
    # The chain's second stage runs in the filing transaction: the second
    # message sees the dossier the first one opened in the same poll.
    dovecot.append(NB, candidature(1))
    dovecot.append(
        NB,
        candidature(
            1,
            subject="Candidature au label Béthune Smart City – le courrier",
            # A piece: a follow-up with nothing to read would wait for staff (issue 15).
            attachments=[("courrier_maire.pdf", letter_pdf(), "application/pdf")],
        ),
    )
    reports = poll(service_app)
    assert reports[NB].filed == 2 and len(reports[NB].dossiers_created) == 1
    [dossier] = rows(service_app, Dossier)
    first, second = sorted(rows(service_app, Message), key=lambda m: m.id)
    assert first.verdict == "candidature" and first.dossier_id == dossier.id
    assert second.verdict == "follow_up" and second.dossier_id == dossier.id
    last = second.rule_trace[-1]
    assert (last["rule"], last["hit"]) == ("same_sender_open_dossier", True)
    assert dossier.reference in last["reason"]
    assert first.rule_trace[-1]["rule"] == "same_sender_open_dossier"
    assert first.rule_trace[-1]["hit"] is False


def test_every_verdict_has_a_filing_handler():
    assert set(HANDLERS) == set(Verdict)
    assert set(STATUS_OF_VERDICT) == set(Verdict)


def test_a_joined_message_whose_reading_needs_review_stays_to_review(service_app, dovecot):
    dovecot.append(NB, candidature(1))
    dovecot.append(
        NB,
        candidature(
            1,
            subject="Candidature au label Béthune Smart City – une photo",
            attachments=[("photo_du_site.png", b"\x89PNG\r\n\x1a\n", "image/png")],
        ),
    )
    reports = poll(service_app)
    assert (reports[NB].filed, reports[NB].needs_review) == (1, 1)
    [dossier] = rows(service_app, Dossier)
    _first, second = sorted(rows(service_app, Message), key=lambda m: m.id)
    assert (second.status, second.verdict) == ("needs_review", "follow_up")
    assert second.dossier_id == dossier.id
    assert dossier.status == "needs_review"


def test_every_row_waiting_for_staff_has_a_reason_code(service_env, monkeypatch, dovecot):
    # The golden mails and the hostile-input corpus, through a real poll: every
    # needs_review or failed row says why with a ReviewReason code.
    from mailbot.app import App
    from parsers.reasons import ReviewReason
    from tests.fixtures.hostile_mail import CASES

    # The hostile corpus's limits (tests/test_hostile_input.py): a big message is kept.
    monkeypatch.setenv("MAILBOT_LIMITS__MAX_MESSAGE_BYTES", "4000000")
    monkeypatch.setenv("MAILBOT_LIMITS__OCR_TIMEOUT_SECONDS", "30")
    golden = sorted((Path(__file__).parent / "golden").glob("*.eml"))
    raws = [path.read_bytes() for path in golden] + [CASES[name]() for name in CASES]
    dovecot.fill_maildir(NB, raws)
    app = App(service_env["MAILBOT_CONFIG"])
    try:
        reports = poll_all(app)
        assert all(r.error is None for r in reports), [r.error for r in reports]
        waiting = [m for m in rows(app, Message) if m.status in ("needs_review", "failed")]
    finally:
        app.close()
    assert waiting, "the corpus must leave some messages to review"
    codes = {str(code) for code in ReviewReason}
    uncoded = [(m.subject, m.status, m.reason) for m in waiting if m.reason not in codes]
    assert uncoded == []
