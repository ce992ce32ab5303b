"""Leaving nothing of deleted rows in the database file's free pages or journal.

SQLite keeps deleted rows in free pages and in the WAL until they are
overwritten: the erasure transaction runs with ``PRAGMA secure_delete=ON``
(freed content is zeroed), then ``VACUUM`` rebuilds the file and
``PRAGMA wal_checkpoint(TRUNCATE)`` empties the WAL. PostgreSQL keeps dead
tuples until a ``VACUUM`` of the tables, run outside a transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = logging.getLogger(__name__)


def secure_delete_on(session: Session) -> None:
    """SQLite: freed pages of this connection's deletions are overwritten with zeros."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete=ON")


def compact(engine: Engine, tables: Iterable[str]) -> list[str]:
    """VACUUM (and on SQLite checkpoint the WAL); the problems met, if any.

    Another connection reading at the same moment can keep the WAL from
    being emptied: that is reported, not fatal (the next erasure or
    ``purge`` tries again).
    """
    problems: list[str] = []
    try:
        _compact(engine, tables, problems)
    except (sa.exc.SQLAlchemyError, sqlite3.Error) as err:
        # The rows are gone already; only the file's free pages may still hold them.
        problems.append(f"database not compacted ({err}): run the erasure again later")
    for problem in problems:
        log.warning("erasure: %s", problem)
    return problems


def _compact(engine: Engine, tables: Iterable[str], problems: list[str]) -> None:
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.execute("VACUUM")
            busy, _log_pages, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                problems.append("database: the journal (WAL) is in use, not emptied")
            cursor.close()
        finally:
            raw.close()
    elif engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in sorted(set(tables)):
                # Table names come from the models, never from input.
                connection.exec_driver_sql(f'VACUUM "{table}"')
