"""Schema creation and migrations: open_database, upgrade, models/migrations agreement."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select

from storage.db import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    open_database,
    session_scope,
    upgrade,
)
from storage.errors import InvalidValueError, MigrationError
from storage.models import Event
from tests.fixtures.database import stored_revisions

REPO = Path(__file__).resolve().parents[1]

TABLES = {
    "dossier",
    "event",
    "mailbox_cursor",
    "message",
    "outbox",
    "piece",
    "reference_counter",
    "sighting",
    "staff_account",
}


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def test_open_database_builds_the_whole_schema(engine: Engine) -> None:
    assert _tables(engine) == TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision() == "0005"


def test_schema_has_the_dedup_constraints_and_lookup_indexes(engine: Engine) -> None:
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        uniques = {
            table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            for table in TABLES
        }
        indexes = {
            table: {tuple(i["column_names"]) for i in inspector.get_indexes(table)}
            for table in TABLES
        }
    assert ("dedup_key",) in uniques["message"]
    assert ("mailbox", "folder", "uidvalidity", "uid") in uniques["sighting"]
    assert ("dossier_id", "blob_sha256") in uniques["piece"]
    assert {("dedup_key",), ("message_id",)} <= uniques["outbox"]
    assert {("reference",), ("year", "number")} <= uniques["dossier"]
    assert ("mailbox", "folder") in uniques["mailbox_cursor"]
    assert ("status",) in indexes["message"]
    assert {("status",), ("sender",)} <= indexes["dossier"]
    assert ("status", "next_attempt_at") in indexes["outbox"]


def test_models_and_migrations_agree(engine: Engine) -> None:
    """Autogenerate against the migrated database finds nothing to do."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_upgrade_is_idempotent_and_keeps_data(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Event(actor="system", action="test.before_upgrade"))
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with Session(engine) as session:
        actions = session.exec(select(Event.action)).all()
    assert actions == ["test.before_upgrade"]


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert _tables(engine) <= {"alembic_version"}
    assert current_revision(engine) is None
    upgrade(engine)
    assert _tables(engine) == TABLES | {"alembic_version"}


def test_database_from_a_newer_release_is_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dcafe'")
    with pytest.raises(MigrationError, match="f00dcafe"):
        upgrade(engine)
    with engine.connect() as connection:
        # Nothing was touched by the refused upgrade.
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            "f00dcafe"
        )


def test_fresh_sqlite_file_is_created_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "mailbot.sqlite3"
    engine = open_database(f"sqlite:///{path}")
    try:
        assert path.is_file()
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 30000
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: once a session has read, no other connection can start writing."""
    path = tmp_path / "mailbot.sqlite3"
    engine = open_database(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            session.exec(select(Event)).all()  # opens the transaction
            other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    finally:
        engine.dispose()


def test_session_scope_commits_on_success_and_rolls_back_on_error(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Event(actor="system", action="kept"))
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.add(Event(actor="system", action="discarded"))
        session.flush()
        raise RuntimeError("boom")
    with Session(engine) as session:
        assert session.exec(select(Event.action)).all() == ["kept"]


def test_make_engine_refuses_unsupported_databases() -> None:
    with pytest.raises(InvalidValueError, match="mysql"):
        make_engine("mysql://user@localhost/mailbot")
    with pytest.raises(InvalidValueError, match="invalid database URL"):
        make_engine("not a url")


def test_postgres_engine_pings_connections_before_use(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert engine.pool._pre_ping == (engine.dialect.name == "postgresql")
    finally:
        engine.dispose()


_OPEN_DATABASE = """
import sys, time
from storage.db import current_revision, open_database
start_at = float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
engine = open_database(sys.argv[1])
print(current_revision(engine))
engine.dispose()
"""


def test_concurrent_first_opens_migrate_once(db_url: str) -> None:
    """Four processes opening an empty database at once all succeed.

    Without serialisation (BEGIN IMMEDIATE on SQLite, the advisory lock on
    PostgreSQL) the losers would fail creating tables that already exist.
    """
    start_at = str(time.time() + 1.5)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_DATABASE, db_url, start_at],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(*worker.communicate(timeout=90), worker.returncode) for worker in workers]
    for stdout, stderr, returncode in outcomes:
        assert returncode == 0, stderr
        assert stdout.strip() == head_revision()
    assert stored_revisions(db_url) == [head_revision()]


def test_pending_server_actions_are_found_through_the_partial_index(engine: Engine) -> None:
    """A poll's 'anything pending here?' must not scan every sighting of the folder."""
    from storage.models import Sighting, pending_action

    query = (
        select(Sighting.id)
        .where(
            Sighting.mailbox == "n.bataillon",
            Sighting.folder == "INBOX",
            Sighting.uidvalidity == 1,
            pending_action(),
        )
        .limit(1)
    )
    with engine.connect() as connection:
        indexes = {i["name"] for i in sa.inspect(connection).get_indexes("sighting")}
        assert "ix_sighting_pending" in indexes
        if engine.dialect.name == "sqlite":
            # As the query is sent: SQLite skips a partial index for a bound parameter.
            compiled = query.compile(engine)
            params = tuple(compiled.params[name] for name in compiled.positiontup or ())
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
            assert any("ix_sighting_pending" in str(row) for row in plan), plan
        else:
            definition = connection.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_sighting_pending'"
            ).scalar_one()
            assert "WHERE" in definition and "pending" in definition, definition


def _migrate(engine: Engine, command_name: str, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, command_name)(config, revision)


def test_revision_0003_turns_stored_sentences_into_reason_codes(engine: Engine) -> None:
    """Reasons stored in English before codes existed become codes once, and back on downgrade."""
    _migrate(engine, "downgrade", "0002")
    now = "2026-11-30 08:00:00+00:00"
    unknown = "follow-up names an unknown dossier 'BSC-2020-0999'"
    uncertain = {
        "rule": "score",
        "hit": True,
        "reason": "score 2 >= review_threshold 2: needs_review",
    }
    scored = {"rule": "score", "hit": True, "reason": "score 5 >= 4: candidature"}
    cut = {"rule": "over_limits", "hit": True, "reason": "a configured limit was exceeded"}
    messages = {
        1: ("failed", None, "parse error: ValueError('bad MIME')", []),
        2: ("needs_review", "needs_review", unknown, []),
        3: ("needs_review", "needs_review", None, [uncertain]),
        4: ("needs_review", "needs_review", None, [scored, cut]),
        5: ("failed", None, "something nobody wrote before", []),
    }
    replies = {
        1: ("suppressed", "k@example.org already had 3 replies today (cap 3)", None),
        2: ("suppressed", "the message comes from our own address n@ville-bethune.fr", None),
        3: ("suppressed", "dry run", None),
        4: ("failed", None, "gave up after 10 attempts: 451 4.3.0 Try again later"),
        5: ("failed", None, "550 5.1.1 No such user"),
        6: ("failed", None, "interrupted while sending; not sent again to avoid a duplicate: x"),
    }
    with engine.begin() as connection:
        for pk, (status, verdict, error, trace) in messages.items():
            connection.execute(
                sa.text(
                    "INSERT INTO message (id, dedup_key, sha256, size, sender, subject, headers,"
                    " verdict, rule_trace, status, error, warnings, first_seen_at, updated_at,"
                    " attempts) VALUES (:id, :key, :sha, 1, 's@example.org', '', '{}', :verdict,"
                    " :trace, :status, :error, '[]', :now, :now, 1)"
                ),
                {
                    "id": pk,
                    "key": f"sha:{pk}",
                    "sha": f"{pk:064x}",
                    "verdict": verdict,
                    "trace": json.dumps(trace),
                    "status": status,
                    "error": error,
                    "now": now,
                },
            )
        for pk, (status, suppressed, last_error) in replies.items():
            connection.execute(
                sa.text(
                    "INSERT INTO outbox (id, dedup_key, kind, mailbox, from_addr, to_addr,"
                    " subject, message_id, raw, status, suppressed_reason, attempts, last_error,"
                    " created_at) VALUES (:id, :key, 'acknowledgement', 'nb', 'n@x',"
                    " 'k@example.org', 's', :mid, :raw, :status, :suppressed, 10, :error, :now)"
                ),
                {
                    "id": pk,
                    "key": f"acknowledgement:{pk}",
                    "mid": f"<{pk}@x>",
                    "raw": b"raw",
                    "status": status,
                    "suppressed": suppressed,
                    "error": last_error,
                    "now": now,
                },
            )

    upgrade(engine)
    with engine.connect() as connection:
        coded = {
            row.id: (row.reason, row.error)
            for row in connection.execute(sa.text("SELECT id, reason, error FROM message"))
        }
        outbox = {
            row.id: (
                row.suppressed_reason,
                row.suppressed_details
                if isinstance(row.suppressed_details, dict | None)
                else json.loads(row.suppressed_details),
                row.failure_reason,
                row.last_error,
            )
            for row in connection.execute(
                sa.text(
                    "SELECT id, suppressed_reason, suppressed_details, failure_reason, last_error"
                    " FROM outbox"
                )
            )
        }
    assert coded == {
        1: ("parse_error", "ValueError('bad MIME')"),
        2: ("unknown_dossier", "BSC-2020-0999"),
        3: ("uncertain_score", None),
        4: ("over_limits", None),
        5: (None, "something nobody wrote before"),
    }
    assert outbox == {
        1: ("sender_daily_cap", {"count": 3, "cap": 3}, None, None),
        2: ("from_our_address", {"address": "n@ville-bethune.fr"}, None, None),
        3: ("dry run", None, None, None),
        4: (None, None, "gave_up", "451 4.3.0 Try again later"),
        5: (None, None, "refused", "550 5.1.1 No such user"),
        6: (None, None, "interrupted", replies[6][2]),
    }

    _migrate(engine, "downgrade", "0002")
    with engine.connect() as connection:
        errors = dict(connection.execute(sa.text("SELECT id, error FROM message")).all())
        sentences = dict(
            connection.execute(sa.text("SELECT id, suppressed_reason FROM outbox")).all()
        )
        last_errors = dict(connection.execute(sa.text("SELECT id, last_error FROM outbox")).all())
    assert errors == {pk: error for pk, (_s, _v, error, _t) in messages.items()}
    assert sentences == {pk: suppressed for pk, (_s, suppressed, _e) in replies.items()}
    assert last_errors == {pk: error for pk, (_s, _r, error) in replies.items()}
