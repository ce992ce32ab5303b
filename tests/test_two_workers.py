"""Two `mailbot run` processes on one PostgreSQL database and the same two mailboxes.

Both workers scan the same backlog at the same moment, both are woken by
IDLE for the follow-ups, both deliver the outbox: no message is filed twice,
no reference is numbered twice, no applicant hears the same thing twice.
Then SIGTERM stops both cleanly.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from storage.db import open_database
from storage.models import Dossier, Outbox, Sighting
from tests.fixtures import faults as f
from tests.fixtures.faults import DB, NB

SEED = 2026


def letter_follow_up(original: f.Item, mailboxes: tuple[str, ...]) -> f.Item:
    message = f.make_mail(
        subject="RE: Candidature au label Béthune Smart City – le courrier",
        sender=f"Porteur <{original.sender}>",
        to=tuple(f.ADDRESS[m] for m in mailboxes),
        body="Bonjour, voici le courrier adressé à Monsieur le Maire.",
        in_reply_to=original.message_id,
        references=original.message_id,
        attachments=[("courrier_maire.pdf", f.letter_pdf(), "application/pdf")],
    )
    return f.Item(
        "candidature", f.as_bytes(message), message["Message-ID"], original.sender, mailboxes
    )


def dossier_only(n: int, mailboxes: tuple[str, ...]) -> f.Item:
    sender = f"porteur.w{n}@asso{n % 5}.example.org"
    message = f.make_mail(
        subject=f"Candidature au label Béthune Smart City – projet w{n}",
        sender=f"Porteur W{n} <{sender}>",
        to=tuple(f.ADDRESS[m] for m in mailboxes),
        body="Bonjour,\nVeuillez trouver ci-joint notre dossier d'intention.\nCordialement",
        attachments=[("dossier_intention.pdf", f.dossier_pdf(), "application/pdf")],
    )
    return f.Item(
        "candidature", f.as_bytes(message), message["Message-ID"], sender, mailboxes, True
    )


@pytest.fixture
def workers_env(service_env, smtp_server, postgres_url, tmp_path):
    open_database(postgres_url).dispose()  # migrated once, before both start
    return f.service_process_env(
        service_env,
        smtp_server,
        MAILBOT_DATABASE__URL=postgres_url,
        MAILBOT_SCHEDULE__POLL_INTERVAL_SECONDS="10",
        MAILBOT_SCHEDULE__SEND_INTERVAL_SECONDS="5",
        MAILBOT_INTAKE__FETCH_BATCH="5",
        MAILBOT_DIGEST__AT="23:59",
    )


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_two_workers_file_and_answer_each_message_once(
    workers_env, postgres_url, dovecot, smtp_server, tmp_path, capsys
):
    rng = random.Random(SEED)
    originals = [
        dossier_only(n, (NB, DB) if n < 10 else (rng.choice((NB, DB)),)) for n in range(25)
    ]
    plain = [f.candidature(n, tag="x", mailboxes=(rng.choice((NB, DB)),)) for n in range(15)]
    robots = [f.auto_reply(n, mailboxes=(rng.choice((NB, DB)),)) for n in range(5)]
    robots += [f.newsletter(n, mailboxes=(rng.choice((NB, DB)),)) for n in range(5)]
    wave1 = originals + plain + robots
    rng.shuffle(wave1)
    first = f.Backlog(wave1)
    assert first.server_messages == 60
    first.deliver(dovecot)

    processes, logs = [], []
    for name in ("a", "b"):
        env = dict(workers_env, MAILBOT_SERVICE__HEARTBEAT_FILE=str(tmp_path / f"heartbeat-{name}"))
        log = (tmp_path / f"worker-{name}.log").open("wb")
        logs.append(log)
        processes.append(
            subprocess.Popen([str(f.MAILBOT), "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        # Wave 1: 40 candidatures -> 40 first replies.
        def replies(n):
            def enough():
                assert all(p.poll() is None for p in processes), "a worker exited"
                return len(smtp_server.messages) >= n

            return enough

        f.wait_until(replies(40), 180, "the 40 first replies")
        # Wave 2, while both run: the letters complete 25 dossiers (5 sent to both boxes).
        follow_ups = [
            letter_follow_up(o, (NB, DB) if i < 5 else (rng.choice((NB, DB)),))
            for i, o in enumerate(originals)
        ]
        for item in follow_ups:
            for user in item.mailboxes:
                dovecot.append(user, item.raw)
        f.wait_until(replies(65), 180, "the 25 completion notices")
        time.sleep(12)  # another timer poll and deliveries: a duplicate would show now
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    assert codes == [0, 0]

    items = wave1 + follow_ups
    server_messages = sum(len(i.mailboxes) for i in items)
    flags = {user: dovecot.fetch_flags(user) for user in (NB, DB)}
    captured = list(smtp_server.messages)
    figures = f.ledger_figures(engine, items, None, flags=flags)
    # Who got what: 25 x (missing_pieces, completed), 15 x missing_pieces.
    per_recipient = Counter(r for c in captured for r in c.rcpt_tos)
    kinds = Counter(
        (r, c.message["Message-ID"].split(".")[2]) for c in captured for r in c.rcpt_tos
    )
    duplicate_replies = sum(n - 1 for n in kinds.values() if n > 1)
    robot_senders = {i.sender for i in robots}
    outbox = [o for o in f.rows(engine, Outbox)]
    with capsys.disabled():
        print(
            f"\n[reliability] two workers: {server_messages} server messages, "
            f"{len(captured)} replies captured, {duplicate_replies} duplicate replies; "
            + figures.line()
        )
    assert figures.lost == 0 and figures.duplicate_filings == 0 and figures.unflagged == 0
    assert figures.messages == len(items) == 75
    assert figures.sightings == server_messages == 90
    assert figures.dossiers == 40
    assert duplicate_replies == 0
    assert len(captured) == 65
    assert all(per_recipient[o.sender] == 2 for o in originals)
    assert all(per_recipient[p.sender] == 1 for p in plain)
    assert not robot_senders & set(per_recipient)
    assert Counter(o.status for o in outbox) == {"sent": 65}
    assert len({o.message_id for o in outbox}) == 65
    f.references_are_consecutive(engine)
    dossiers = f.rows(engine, Dossier)
    assert sum(d.status == "complete" for d in dossiers) == 25
    assert all(s.server_action != "pending" for s in f.rows(engine, Sighting))
    for name in ("a", "b"):
        assert "stopped" in (tmp_path / f"worker-{name}.log").read_text(errors="replace")
    engine.dispose()
