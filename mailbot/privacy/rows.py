"""Database plumbing the privacy requests share.

Chunked ``IN (...)`` queries (SQLite limits bound parameters), a write
transaction that can also be a dry run, and UPDATEs that leave a row's
``updated_at`` alone (retention counts from a row's last real change).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from mailbot.app import App
from storage.db import session_scope

# Bound on the ids in one IN (...) list: SQLite limits bound parameters.
IN_CHUNK = 500


def chunked(values: Iterable[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    """The distinct ``values``, sorted, in lists of at most ``size``."""
    items = sorted(set(values), key=str)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def select_in_chunks(
    session: Session, build: Callable[[list[Any]], Any], values: Iterable[Any]
) -> list[Any]:
    """Run ``build(chunk)`` for each chunk of ``values``; the rows of all chunks."""
    rows: list[Any] = []
    for chunk in chunked(values):
        rows.extend(session.exec(build(chunk)).all())
    return rows


@contextlib.contextmanager
def transaction(app: App, *, commit: bool) -> Iterator[Session]:
    """A write transaction, or (``commit=False``) one that is always rolled back."""
    if commit:
        with session_scope(app.engine) as session:
            yield session
        return
    with Session(app.engine, expire_on_commit=False) as session:
        try:
            yield session
        finally:
            # Detach first: a rollback expires what was loaded, and callers read it after.
            session.expunge_all()
            session.rollback()


def keep_updated_at(table: sa.Table, statement: Any) -> Any:
    """An UPDATE that leaves ``updated_at`` as it is (no ``onupdate``).

    Retention counts from a dossier's last real change: a legal-hold flag or
    an address removed for someone else must not restart the clock.
    """
    if "updated_at" in table.c:
        return statement.values(updated_at=table.c.updated_at)
    return statement


def update_row(session: Session, *, table: sa.Table, row_id: int, values: dict[str, Any]) -> None:
    """Set ``values`` on one row, ``updated_at`` untouched."""
    session.exec(
        keep_updated_at(table, sa.update(table).where(table.c.id == row_id)).values(**values)
    )
