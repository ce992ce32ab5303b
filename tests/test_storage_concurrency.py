"""Several workers on one database: reference numbers, outbox dedup, SQLite locking."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from storage import repositories as repo
from storage.db import make_engine, open_database, session_scope
from storage.models import Event, Outbox, OutboxKind

REPO = Path(__file__).resolve().parents[1]
PER_WORKER = 50


def _run_threads(*targets: Callable[[], Any], barrier: bool = True) -> list[Any]:
    """Run each target in its own thread (started together); return results, re-raise errors."""
    start = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            if barrier:
                start.wait(timeout=30)
            results[index] = targets[index]()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def test_two_threads_allocate_distinct_consecutive_references(engine: Engine) -> None:
    def allocate() -> list[int]:
        numbers = []
        for _ in range(PER_WORKER):
            # One transaction per dossier, as the poller does.
            with session_scope(engine) as session:
                numbers.append(repo.next_reference(session=session, year=2026)[1])
        return numbers

    first, second = _run_threads(allocate, allocate)
    assert sorted(first + second) == list(range(1, 2 * PER_WORKER + 1))
    # Each worker sees its own numbers increase.
    assert first == sorted(first) and second == sorted(second)


def test_sqlite_read_then_write_transactions_do_not_deadlock(tmp_path: Path) -> None:
    """Two transactions that read, pause, then write both succeed.

    With SQLite's default deferred BEGIN the second writer fails at once with
    "database is locked" (its read snapshot is stale); BEGIN IMMEDIATE queues it.
    """
    engine = open_database(f"sqlite:///{tmp_path / 'mailbot.sqlite3'}")
    try:

        def read_then_write() -> int:
            with session_scope(engine) as session:
                seen = len(session.exec(select(Event)).all())
                time.sleep(0.3)
                repo.record_event(session=session, actor="system", action="worker.ran")
            return seen

        seen = _run_threads(read_then_write, read_then_write)
        assert sorted(seen) == [0, 1]  # serialised: the second saw the first's write
        with Session(engine) as session:
            assert len(session.exec(select(Event)).all()) == 2
    finally:
        engine.dispose()


def test_sqlite_connections_switching_a_new_database_to_wal_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    """Four connections opening a new SQLite database together, 60 times over.

    ``PRAGMA journal_mode=WAL`` needs an exclusive lock; SQLite answered about
    one round in ten "database is locked" at once, busy timeout or not
    (CI saw it in test_concurrent_first_opens_migrate_once).
    """
    for round_ in range(60):
        url = f"sqlite:///{tmp_path / f'round{round_}.sqlite3'}"
        engines = [make_engine(url) for _ in range(4)]

        def connect(engine: Engine) -> str:
            with engine.connect() as connection:
                return connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()

        try:
            modes = _run_threads(*(functools.partial(connect, engine) for engine in engines))
        finally:
            for engine in engines:
                engine.dispose()
        assert modes == ["wal"] * 4


@pytest.mark.postgres
def test_concurrent_enqueue_of_the_same_reply_queues_it_once(postgres_url: str) -> None:
    """The unique constraint settles a race the look-up cannot see (PostgreSQL).

    Worker A has inserted but not committed; worker B's look-up misses the
    row, its INSERT waits for A, then fails on the constraint: B must get None.
    """
    engine = open_database(postgres_url)
    inserted = threading.Event()
    try:

        def worker_a() -> Outbox | None:
            with session_scope(engine) as session:
                row = _enqueue(session, "<a@bethune.fr>")
                inserted.set()
                time.sleep(0.5)
            return row

        def worker_b() -> Outbox | None:
            assert inserted.wait(timeout=30)
            with session_scope(engine) as session:
                before = repo.record_event(session=session, actor="system", action="b.started")
                row = _enqueue(session, "<b@bethune.fr>")
                assert session.get(Event, before.id) is not None  # savepoint only
            return row

        result_a, result_b = _run_threads(worker_a, worker_b, barrier=False)
        assert result_a is not None
        assert result_b is None
        with Session(engine) as session:
            assert [r.message_id for r in session.exec(select(Outbox)).all()] == ["<a@bethune.fr>"]
            assert [e.action for e in session.exec(select(Event)).all()] == ["b.started"]
    finally:
        engine.dispose()


def _enqueue(session: Session, message_id: str) -> Outbox | None:
    return repo.enqueue_outgoing(
        session=session,
        dedup_key="acknowledgement:1:1",
        kind=OutboxKind.ACKNOWLEDGEMENT,
        mailbox="smartcity",
        from_addr="smartcity@bethune.fr",
        to_addr="applicant@example.org",
        subject="Accusé de réception",
        message_id=message_id,
        raw=b"...",
    )


_ALLOCATE = """
import json, sys, time
from storage import repositories as repo
from storage.db import make_engine, open_database, session_scope
url, start_at, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))
engine = open_database(url)
numbers = []
for _ in range(count):
    with session_scope(engine) as session:
        numbers.append(repo.next_reference(session=session, year=2026)[1])
engine.dispose()
print(json.dumps(numbers))
"""


@pytest.mark.postgres
def test_two_processes_allocate_distinct_consecutive_references(postgres_url: str) -> None:
    """Two processes open an empty database and allocate 50 references each, at once."""
    start_at = str(time.time() + 1.5)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _ALLOCATE, postgres_url, start_at, str(PER_WORKER)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    numbers: list[int] = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=90)
        assert worker.returncode == 0, stderr
        numbers += json.loads(stdout)
    assert sorted(numbers) == list(range(1, 2 * PER_WORKER + 1))
