"""Fault injection with real processes: kill -9, IMAP/SMTP/database outages, a full disk.

Each test runs the real `mailbot` command (or the service functions) against
the real Dovecot, aiosmtpd and SQLite/PostgreSQL of the fixtures, breaks
something at a bad moment, lets the service start again, and then checks the
promises of reliability.md: every candidature filed exactly once, one reply
per applicant, none to robots, every filed message flagged on the server.
The figures each test computes are printed (run with ``-s`` to see them, or
read them in docs/reliability.md).
"""

from __future__ import annotations

import datetime as dt
import random
import resource
import signal
import subprocess
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from mailbot.intake import poll_all
from mailbot.smtp import send_outbox
from storage.db import open_database
from storage.models import Message, Outbox, Sighting, utcnow
from tests.fixtures import faults as f
from tests.fixtures.faults import DB, KEYWORD, NB

SEED = 2026


def report(capsys, name: str, text_: str) -> None:
    with capsys.disabled():
        print(f"\n[reliability] {name}: {text_}")


def all_flags(dovecot) -> dict[str, dict[int, frozenset[str]]]:
    return {user: dovecot.fetch_flags(user) for user in (NB, DB)}


# -- kill -9 at 20 points over a 200-message backlog ---------------------------------------------


@pytest.mark.timeout(600)
def test_kill_9_at_twenty_points_over_a_200_message_backlog(
    service_env, service_app, dovecot, smtp_server, capsys
):
    rng = random.Random(SEED)
    backlog = f.mixed_backlog(
        rng,
        candidatures=120,
        with_pdfs=20,
        to_both=20,
        auto_replies=30,
        newsletters=30,
    )
    assert backlog.server_messages == 200
    backlog.deliver(dovecot)
    env = f.service_process_env(service_env, smtp_server)

    # 20 crash points, alternating the two fault names, K drawn from the seeded generator.
    points = [
        f"{name}:{rng.randint(1, 12)}"
        for _ in range(10)
        for name in ("before_commit", "after_commit")
    ]
    crashes, runs = 0, 0
    started = time.monotonic()
    for point in points:
        result = f.run_mailbot(env, "poll", "--once", fault=point)
        runs += 1
        if result.returncode == 137:
            crashes += 1
        else:  # the backlog ran out before the K-th passage: a clean pass
            assert result.returncode == 0, result.stdout + result.stderr
    final = f.run_mailbot(env, "poll", "--once")
    runs += 1
    assert final.returncode == 0, final.stdout + final.stderr
    elapsed = time.monotonic() - started

    smtp_server.wait_for(len(backlog.candidatures), timeout=30)
    time.sleep(0.5)  # anything extra would have arrived by now
    engine = service_app.engine
    figures = f.ledger_figures(
        engine, backlog.items, list(smtp_server.messages), flags=all_flags(dovecot)
    )
    report(
        capsys,
        "kill -9",
        f"{backlog.server_messages} server messages, {len(backlog.candidatures)} candidatures, "
        f"{crashes} crashes injected and survived in {runs} runs ({elapsed:.1f} s); "
        + figures.line(),
    )
    assert crashes == 20
    assert figures.lost == 0
    assert figures.duplicate_filings == 0
    assert figures.duplicate_replies == 0
    assert figures.replies_to_robots == 0
    assert figures.unflagged == 0
    assert figures.messages == len(backlog.items) == 180
    assert figures.sightings == 200
    assert figures.dossiers == 120
    assert figures.replies_delivered == 120
    references = f.references_are_consecutive(engine)
    assert len(references) == 120
    assert f.outbox_by_status(engine) == {"sent": 120}
    assert all(s.server_action in ("flagged", "none") for s in f.rows(engine, Sighting))
    # Robots and newsletters are recorded, never flagged, never answered.
    flags = all_flags(dovecot)
    robot_ids = {i.message_id for i in backlog.robots}
    for message in f.rows(engine, Message):
        if message.message_id in robot_ids:
            assert message.status == "ignored"
    flagged = sum(KEYWORD in fl for box in flags.values() for fl in box.values())
    assert flagged == sum(len(i.mailboxes) for i in backlog.candidatures)
    # Nothing left to do: one more pass changes nothing and sends nothing.
    again = f.run_mailbot(env, "poll", "--once")
    assert again.returncode == 0
    assert "0 new" in again.stdout
    assert len(smtp_server.messages) == 120


# -- Dovecot stopped mid-poll ----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_imap_server_stopped_mid_poll_then_restarted(
    service_env, service_app, dovecot, smtp_server, capsys
):
    rng = random.Random(SEED + 1)
    items = [f.candidature(n, tag="i", with_pdfs=n % 2 == 0) for n in range(50)]
    items += [f.candidature(n, tag="j", mailboxes=(NB, DB)) for n in range(10)]
    items += [f.newsletter(n) for n in range(10)]
    rng.shuffle(items)
    backlog = f.Backlog(items)
    backlog.deliver(dovecot)
    env = f.service_process_env(service_env, smtp_server, MAILBOT_INTAKE__FETCH_BATCH="5")
    engine = service_app.engine

    process = subprocess.Popen(
        [str(f.MAILBOT), "poll", "--once", "--no-send"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        f.wait_until(lambda: f.count(engine, Message) >= 8, 120, "the first filings")
        dovecot.stop()
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        dovecot.start()
    filed_before = f.count(engine, Message)
    assert process.returncode == 1, out + err
    assert "ERROR" in out
    assert filed_before < len(items)

    finished = f.run_mailbot(env, "poll", "--once")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    smtp_server.wait_for(60, timeout=30)
    figures = f.ledger_figures(
        engine, backlog.items, list(smtp_server.messages), flags=all_flags(dovecot)
    )
    report(
        capsys,
        "IMAP server stopped mid-poll",
        f"{backlog.server_messages} server messages, stopped after {filed_before} filed; "
        + figures.line(),
    )
    assert figures.lost == figures.duplicate_filings == figures.duplicate_replies == 0
    assert figures.replies_to_robots == figures.unflagged == 0
    assert figures.messages == 70 and figures.sightings == 80 and figures.dossiers == 60
    f.references_are_consecutive(engine)
    assert all(s.server_action != "pending" for s in f.rows(engine, Sighting))


# -- SMTP refusing, then accepting ---------------------------------------------------------------


@pytest.mark.timeout(300)
def test_smtp_refusals_and_outage_each_reply_delivered_once(
    replies_app, dovecot, smtp_server, capsys
):
    backlog = f.Backlog([f.candidature(n, tag="s", mailboxes=(NB,)) for n in range(40)])
    backlog.deliver(dovecot)
    reports = poll_all(replies_app)
    assert all(r.error is None for r in reports)
    engine = replies_app.engine
    assert f.outbox_by_status(engine) == {"queued": 40}
    victim = backlog.candidatures[7].sender
    later = [utcnow()]

    def send(**kwargs):
        # Jump past every backoff so the retries are due now.
        later[0] += dt.timedelta(days=1)
        return send_outbox(replies_app, now=later[0], **kwargs)

    faults_injected = 0
    # 1. The server is down: every claimed reply goes back to the queue.
    smtp_server.stop()
    down = send()
    faults_injected += 1
    assert down.sent == 0 and down.retrying > 0 and down.errors
    # 2. Back up, but refusing: three 4xx, and a 5xx for one recipient.
    smtp_server.start()
    smtp_server.fail_next(2, "451 4.3.0 Try again later")
    smtp_server.fail_next(1, "421 4.7.0 Too busy", stage="MAIL")
    smtp_server.reject_recipient(victim, "550 5.1.1 No such user")
    faults_injected += 4
    first = send(limit=15)
    assert first.retrying >= 3
    # 3. Down again halfway through.
    smtp_server.stop()
    again_down = send()
    faults_injected += 1
    assert again_down.sent == 0
    smtp_server.start()
    # 4. Up for good: retry until the queue is empty.
    for _ in range(10):
        if not f.outbox_by_status(engine).get("queued"):
            break
        send()
    statuses = f.outbox_by_status(engine)
    assert statuses == {"sent": 39, "failed": 1}, statuses
    [failed] = [o for o in f.rows(engine, Outbox) if o.status == "failed"]
    assert failed.to_addr == victim and "550" in (failed.last_error or "")
    assert send().sent == 0
    captured = list(smtp_server.messages)
    # The refused address is checked apart: recorded failed, never delivered.
    answerable = [i for i in backlog.items if i.sender != victim]
    figures = f.ledger_figures(engine, answerable, captured)
    report(
        capsys,
        "SMTP refusals",
        f"{len(backlog.items)} replies, {faults_injected} SMTP faults injected "
        f"(2 outages, 3 x 4xx, 1 x 5xx recipient); " + figures.line(),
    )
    assert figures.duplicate_replies == 0
    assert figures.replies_delivered == 39
    assert figures.lost == 0
    assert victim not in {r for c in captured for r in c.rcpt_tos}
    assert all(
        o.attempts <= replies_app.config.settings.replies.max_attempts
        for o in f.rows(engine, Outbox)
    )


# -- the database unavailable, then back -------------------------------------------------------


def _set_connections(admin_url: str, database: str, allowed: bool) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            value = "true" if allowed else "false"
            connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {value}')
            if not allowed:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                )
    finally:
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_database_unavailable_then_back(service_env, dovecot, smtp_server, postgres_url, capsys):
    import os

    admin_url = os.environ["MAILBOT_TEST_POSTGRES_URL"]
    database = make_url(postgres_url).database
    engine = open_database(postgres_url)
    engine.dispose()
    engine = create_engine(postgres_url, poolclass=NullPool)
    rng = random.Random(SEED + 2)
    items = [f.candidature(n, tag="d", with_pdfs=n % 3 == 0) for n in range(36)]
    items += [f.auto_reply(n) for n in range(4)]
    rng.shuffle(items)
    backlog = f.Backlog(items)
    backlog.deliver(dovecot)
    env = f.service_process_env(
        service_env,
        smtp_server,
        MAILBOT_DATABASE__URL=postgres_url,
        MAILBOT_INTAKE__FETCH_BATCH="5",
    )
    outages = 0
    try:
        # 1. Unavailable from the start: an error, nothing marked on the server.
        _set_connections(admin_url, database, allowed=False)
        outages += 1
        refused = f.run_mailbot(env, "poll", "--once")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        # The CLI says so on stderr (the database is opened before any mailbox).
        assert "not currently accepting connections" in refused.stderr + refused.stdout
        assert all(not fl for fl in dovecot.fetch_flags(NB).values())
        assert smtp_server.messages == []
        _set_connections(admin_url, database, allowed=True)
        assert f.count(engine, Message) == 0

        # 2. Lost in the middle of a pass: what was committed stays, the rest waits.
        process = subprocess.Popen(
            [str(f.MAILBOT), "poll", "--once"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            f.wait_until(lambda: f.count(engine, Message) >= 6, 120, "the first filings")
            _set_connections(admin_url, database, allowed=False)
            outages += 1
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 1, out + err
        _set_connections(admin_url, database, allowed=True)
        filed_during_outage = f.count(engine, Message)
        assert filed_during_outage < len(items)
        # Flagged on the server implies committed in the ledger.
        committed = {(s.mailbox, s.uid) for s in f.rows(engine, Sighting)}
        for user in (NB,):
            for uid, fl in dovecot.fetch_flags(user).items():
                if KEYWORD in fl:
                    assert (user, uid) in committed
    finally:
        _set_connections(admin_url, database, allowed=True)

    # 3. Back: everything filed once, answered once.
    finished = f.run_mailbot(env, "poll", "--once")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    smtp_server.wait_for(36, timeout=30)
    time.sleep(0.5)
    figures = f.ledger_figures(
        engine, backlog.items, list(smtp_server.messages), flags=all_flags(dovecot)
    )
    report(
        capsys,
        "database unavailable",
        f"{len(items)} messages, {outages} outages (before and mid-poll, "
        f"{filed_during_outage} filed before the cut); " + figures.line(),
    )
    assert figures.lost == figures.duplicate_filings == figures.duplicate_replies == 0
    assert figures.replies_to_robots == figures.unflagged == 0
    assert figures.messages == 40 and figures.dossiers == 36
    f.references_are_consecutive(engine)
    engine.dispose()


# -- the blob store's disk full ------------------------------------------------------------------


FSIZE_LIMIT = 1 << 20  # 1 MiB: the raw message below is about 4 MiB


def _small_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_blob_store_disk_full_files_nothing_then_files_once(
    service_env, service_app, dovecot, smtp_server, postgres_url, capsys, tmp_path
):
    small = f.candidature(1, tag="f")
    big_attachment = random.Random(SEED).randbytes(3 << 20)
    big_mail = f.make_mail(
        subject="Candidature au label Béthune Smart City – vidéo de présentation",
        sender="Porteur Vidéo <porteur.video@example.org>",
        body="Bonjour, voici notre dossier d'intention et une vidéo pour le label Smart City.",
        attachments=[
            ("dossier_intention.txt", b"Intitule de l'action : Video", "text/plain"),
            ("presentation.mp4", big_attachment, "video/mp4"),
        ],
    )
    big = f.Item(
        "candidature",
        f.as_bytes(big_mail),
        big_mail["Message-ID"],
        "porteur.video@example.org",
        (NB,),
    )
    after = f.candidature(2, tag="f")
    backlog = f.Backlog([small, big, after])
    backlog.deliver(dovecot)
    env = f.service_process_env(service_env, smtp_server, MAILBOT_DATABASE__URL=postgres_url)
    engine = create_engine(postgres_url, poolclass=NullPool)
    blob_dir = service_app.config.blob_dir

    full = f.run_mailbot(env, "poll", "--once", "--no-send", preexec_fn=_small_disk)
    assert full.returncode == 1, full.stdout + full.stderr
    assert f"{NB}: ERROR" in full.stdout
    ids = {m.message_id for m in f.rows(engine, Message)}
    assert small.message_id in ids
    assert big.message_id not in ids
    flags = dovecot.fetch_flags(NB)
    uids = sorted(flags)
    assert KEYWORD in flags[uids[0]]
    assert KEYWORD not in flags[uids[1]]  # the message that could not be stored
    # No half-written blob is left behind.
    leftovers = [p for p in blob_dir.rglob("*") if p.is_file() and p.stat().st_size > FSIZE_LIMIT]
    assert leftovers == []
    partial = [p for p in blob_dir.rglob("*") if p.is_file() and p.stat().st_size == FSIZE_LIMIT]
    assert partial == []

    fixed = f.run_mailbot(env, "poll", "--once", "--no-send")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    figures = f.ledger_figures(engine, backlog.items, None, flags=all_flags(dovecot))
    [stored] = [m for m in f.rows(engine, Message) if m.message_id == big.message_id]
    assert stored.status in ("filed", "needs_review")
    assert stored.raw_blob and len(service_app.blobs.get(stored.raw_blob)) == stored.size
    report(
        capsys,
        "disk full",
        f"RLIMIT_FSIZE {FSIZE_LIMIT} B vs a {len(big.raw)} B message; " + figures.line(),
    )
    assert figures.lost == figures.duplicate_filings == figures.unflagged == 0
    assert figures.messages == 3 and figures.dossiers == 3
    engine.dispose()
