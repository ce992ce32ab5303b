"""``mailbot try`` and the worker agree on every golden mail.

Each mail of ``tests/golden/`` is, in turn (sorted by name, so the same sender writes more
than once: a candidature, then its forward, its vacation reply, its bounce), first tried with
``mailbot try --json`` against the very configuration and database the worker uses, then
appended to a real Dovecot mailbox and filed by one real poll (``poll_all``, what
``mailbot poll --once`` runs). The verdict stored in the ledger must be the one ``try``
announced, and the ledger status must be one that verdict leads to. One poll per mail keeps
both sides on the same database state: a decision that depends on what is already filed (a
second message from a sender whose dossier is open) is seen by ``try`` exactly as by the
worker. Disagreements are collected and reported together.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import select

from mailbot.cli import main
from mailbot.intake import poll_all
from storage.db import session_scope
from storage.models import Message, MessageStatus, Verdict

GOLDEN = Path(__file__).parent / "golden"
MAILS = sorted(GOLDEN.glob("*.eml"))
NB = "n.bataillon"

# Which ledger statuses each verdict may end in. A follow-up naming a dossier this database
# never had is held for review; a candidature whose filing failed would be "failed" (never
# expected here: none of the golden mails is broken).
STATUSES: dict[str, set[str]] = {
    Verdict.CANDIDATURE: {MessageStatus.FILED},
    Verdict.FOLLOW_UP: {MessageStatus.FILED, MessageStatus.NEEDS_REVIEW},
    Verdict.NOT_CANDIDATURE: {MessageStatus.IGNORED},
    Verdict.AUTO_REPLY: {MessageStatus.IGNORED},
    Verdict.NEEDS_REVIEW: {MessageStatus.NEEDS_REVIEW},
}


def stored(app, message_id: str) -> Message:
    with session_scope(app.engine) as session:
        rows = list(session.exec(select(Message).where(Message.message_id == message_id)).all())
    assert len(rows) == 1, f"{len(rows)} ledger rows for {message_id}"
    return rows[0]


def test_worker_files_each_golden_mail_with_the_verdict_try_announced(
    service_env, service_app, dovecot, capsys
):
    assert len(MAILS) >= 20
    disagreements = []
    for mail in MAILS:
        code = main(["--config", service_env["MAILBOT_CONFIG"], "try", str(mail), "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        announced = json.loads(captured.out)

        dovecot.append(NB, mail.read_bytes())
        reports = poll_all(service_app)
        assert all(r.error is None for r in reports), [r.error for r in reports]
        assert sum(r.new for r in reports) == 1, (mail.name, [r.summary() for r in reports])

        message = stored(service_app, announced["message_id"])
        if message.verdict != announced["verdict"]:
            steps = [s["rule"] for s in message.rule_trace if s.get("hit")]
            disagreements.append(
                f"{mail.stem}: try says {announced['verdict']}, the worker filed "
                f"{message.verdict} (status {message.status}, rules hit {steps})"
            )
        elif message.status not in STATUSES[announced["verdict"]]:
            disagreements.append(
                f"{mail.stem}: verdict {message.verdict} filed with status {message.status}"
                f" ({message.error})"
            )
    assert not disagreements, "\n".join(disagreements)
