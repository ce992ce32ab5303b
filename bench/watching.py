"""Watching: one poll that finds no new mail, on a 20,000-message mailbox vs a 200-message one.

Run from the repository root:  .venv/bin/python -m bench.watching [--quick]

``n.bataillon`` gets 20,000 small messages and ``d.berteloot`` 200, written
straight into the maildirs with an INTERNALDATE 60 days back. A first poll of
each (timed, for information) finds no cursor, scans the folder and records
everything as skipped (older than the 30-day backlog window): the cursor is
then at the last UID and the ledger holds a row and a sighting per message,
as it would in production. Then, interleaved, the same in-process
``poll_mailbox`` call on each mailbox (connect, login, SELECT, pending server
actions, cursor, ``UID SEARCH n:*``), median over the rounds. The 200-message
mailbox is the baseline: the figure is how much a poll costs for the size of
the mailbox, when nothing is new.
"""

from __future__ import annotations

import datetime as dt
import time

from bench import harness
from bench.harness import DB, NB, Figure
from mailbot.intake import poll_mailbox
from tests.fixtures.mail import bulk_messages


def fill(srv: harness.Servers, big: int, small: int) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    srv.dovecot.fill_maildir(NB, bulk_messages(big, date=old), date=old)
    srv.dovecot.fill_maildir(DB, bulk_messages(small, date=old), date=old)


def timed_poll(st: harness.Stage, name: str):
    mailbox = st.app.config.settings.mailbox(name)
    start = time.perf_counter()
    report = poll_mailbox(st.app, mailbox)
    elapsed = time.perf_counter() - start
    if report.error:
        raise RuntimeError(f"poll of {name} failed: {report.error}")
    return elapsed, report


def run(srv: harness.Servers, *, quick: bool = False, big: int = 20_000, small: int = 200):
    rounds = 7 if quick else 25
    fill(srv, big, small)
    st = harness.stage(srv, "watching")
    try:
        first_big, report_big = timed_poll(st, NB)
        first_small, report_small = timed_poll(st, DB)
        assert report_big.skipped == big and report_small.skipped == small, (
            report_big.summary(),
            report_small.summary(),
        )
        # One warm-up each (Dovecot index caches, SQLAlchemy statement cache).
        timed_poll(st, NB)
        timed_poll(st, DB)
        on_big, on_small = [], []
        for index in range(rounds):
            order = (NB, DB) if index % 2 == 0 else (DB, NB)
            for name in order:
                elapsed, report = timed_poll(st, name)
                assert report.new == 0, report.summary()
                (on_big if name == NB else on_small).append(elapsed)
    finally:
        st.close()
    b, o = harness.median(on_small), harness.median(on_big)
    return [
        Figure(
            "1 watching",
            f"poll, no new mail: {big:,} msgs vs {small} (median of {rounds})",
            f"{b * 1000:.1f} ms",
            f"{o * 1000:.1f} ms",
            f"{o / b:.2f}",
            "<= 1.2",
            o / b <= 1.2,
        ),
        Figure(
            "1 watching",
            f"(info) first poll, all skipped: {big:,} msgs vs {small}",
            f"{first_small:.2f} s",
            f"{first_big:.2f} s",
            f"{first_big / first_small:.1f}",
            "-",
            None,
        ),
    ]


def main() -> None:
    harness.main(run, __doc__)


if __name__ == "__main__":
    main()
