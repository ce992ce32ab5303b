"""The driver-level ledger look-ups find what SQLAlchemy's own IN query finds.

``repo.dedup_keys_present`` (the poller's look-up of a fetched batch before
it reads the messages) and ``repo.ledger_ids`` (the quiet run's bulk
filing) send their keys to the driver in queries of at most 500 keys. Here
both are compared with the ORM/Core query they stand for
(``select(Message.dedup_key).where(Message.dedup_key.in_(keys))``), on
SQLite and PostgreSQL: the everyday mail's keys and a message without
Message-ID (``sha:`` key), keys not in the ledger, keys holding the drivers'
parameter marks and quotes, batches of one, of 500, of 501 and of 1,234
keys (over one query), 40,000 keys (over the limit of bound parameters
of SQLite's oldest builds, set on the connection), a key given twice, and no key at all.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlmodel import col

from bench.harness import everyday_messages
from mailbot.config import load_config
from mailbot.filing import Position, dedup_key, file_ignored
from mailbot.pipeline import Analyser
from storage import repositories as repo
from storage.db import open_database, read_scope, session_scope
from storage.models import Message, MessageStatus

NOW = dt.datetime(2026, 12, 3, 7, 30, 15, 123456, tzinfo=dt.UTC)
# Keys that a careless query would take for parameter marks, quotes or patterns.
ODD_KEYS = ["mid:a?b@x", "mid:%s@x", "mid:%(k)s@x", "mid:o'neil@x", 'mid:"q"@x', "mid:50%@x"]


@pytest.fixture
def ledger(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _row(key: str, n: int) -> dict[str, object]:
    return {
        "dedup_key": key,
        "sha256": f"{n:064x}",
        "size": n,
        "sender": "a@example.org",
        "status": MessageStatus.IGNORED,
        "headers": {},
        "rule_trace": [],
        "warnings": [],
        "first_seen_at": NOW,
        "updated_at": NOW,
    }


def _fill(engine: Engine, config_dir) -> list[str]:
    """File everyday mail (one without Message-ID) and odd keys; the keys filed."""
    analyser = Analyser(load_config(config_dir))
    raws = everyday_messages(40)
    head, _sep, body = raws[0].partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"message-id:")]
    raws[0] = b"\r\n".join(lines) + b"\r\n\r\n" + body
    analyses = [analyser.analyse(raw, mailbox="n.bataillon") for raw in raws]
    items = [(a, Position("n.bataillon", "INBOX", 1, uid)) for uid, a in enumerate(analyses, 1)]
    filed_keys = [dedup_key(analysis)[0] for analysis in analyses]
    assert filed_keys[0].startswith("sha:")
    # Many keys, for batches longer than one query.
    many = [f"mid:filed.{n}@example.org" for n in range(700)]
    with session_scope(engine) as session:
        file_ignored(session=session, items=items, settled=True, now=NOW)
        repo.insert_ledger_rows(
            session=session, rows=[_row(key, n) for n, key in enumerate(ODD_KEYS[:3] + many)]
        )
    return filed_keys + ODD_KEYS[:3] + many


def _core(engine: Engine, keys: list[str]) -> set[str]:
    """What SQLAlchemy's expanding IN finds (the look-up the fast one replaces)."""
    with engine.connect() as connection:
        query = select(Message.dedup_key).where(col(Message.dedup_key).in_(keys))
        return set(connection.execute(query).scalars())


def _batches(filed: list[str]) -> list[list[str]]:
    absent = [f"mid:absent.{n}@example.org" for n in range(600)] + ODD_KEYS[3:]
    mixed = [key for pair in zip(filed, absent, strict=False) for key in pair]
    return [
        [],
        filed[:1],
        absent[:1],
        filed[:50],
        absent[:50],
        mixed[:500],
        mixed[:501],
        filed[:3] + filed[:3] + absent[:2],  # a key given twice
        ODD_KEYS,
        mixed + filed[len(absent) :],  # 1,234 keys and more: three queries
    ]


def test_dedup_keys_present_finds_what_the_core_query_finds(ledger, config_dir, secrets_env):
    filed = _fill(ledger, config_dir)
    batches = _batches(filed)
    assert len(batches[-1]) > 1234
    for keys in batches:
        expected = _core(ledger, keys)
        with read_scope(ledger) as connection:
            found = repo.dedup_keys_present(connection=connection, dedup_keys=keys)
        assert found == expected
        assert found == set(keys) & set(filed)  # not vacuous: the filed ones, not the others
    # More keys than one statement binds: SQLite's oldest limit (999), set on this
    # connection (this build allows more), and 40,000 keys.
    huge = [f"mid:absent.{n}@example.org" for n in range(40_000)] + filed
    with read_scope(ledger) as connection:
        driver = connection.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
            with pytest.raises(OperationalError):
                connection.exec_driver_sql(f"SELECT {', '.join(['?'] * 1000)}", (0,) * 1000)
        assert repo.dedup_keys_present(connection=connection, dedup_keys=huge) == set(filed)
    # As the poller calls it, with the keys of a dict (key -> UIDs).
    with ledger.connect() as connection:
        wanted = {key: [1] for key in batches[5]}
        assert repo.dedup_keys_present(connection=connection, dedup_keys=wanted) == (
            set(batches[5]) & set(filed)
        )


def test_ledger_ids_over_many_keys(ledger, config_dir, secrets_env):
    filed = _fill(ledger, config_dir)
    with ledger.connect() as connection:
        rows = connection.exec_driver_sql("SELECT dedup_key, id FROM message")
        every = {key: pk for key, pk in rows}
    assert set(every) == set(filed)
    for keys in _batches(filed):
        with session_scope(ledger) as session:
            found = repo.ledger_ids(session=session, dedup_keys=keys)
        assert found == {key: every[key] for key in keys if key in every}
