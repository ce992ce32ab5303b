"""Alembic environment: runs the revisions in ``versions/`` against a database.

Invoked by ``storage.db.upgrade`` with an open connection in
``config.attributes["connection"]`` (the caller owns the transaction), or by
the Alembic command helpers with ``sqlalchemy.url`` set in the configuration
built by ``storage.db.alembic_config``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import storage.models  # registers the tables on SQLModel.metadata
from storage.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render model-specific column types as plain SQLAlchemy types.

    Revisions must not import application code: a later change to
    ``storage.models`` would silently change what an old revision creates.
    """
    if type_ == "type":
        if isinstance(obj, storage.models.UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if type(obj).__module__.startswith("sqlmodel"):
            # sqlmodel's AutoString is a plain VARCHAR.
            length = getattr(obj, "length", None)
            return f"sa.String({length})" if length else "sa.String()"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        **kwargs,
    )


def _run_with(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode recreates the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=(url or "").startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url: storage.db.alembic_config(url)")
    engine = make_engine(url)
    try:
        with engine.connect() as own_connection:
            _run_with(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
