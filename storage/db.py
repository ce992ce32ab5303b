"""Database engines, schema migrations and transactions.

``open_database(url)`` is the entry point: it builds an engine configured for
safe concurrent use and brings the schema to the latest Alembic revision, so
that the default SQLite file is created on first use. Two back ends are
supported:

* SQLite (single host): WAL journal, foreign keys on, a 30 s busy timeout, and
  every transaction opened with ``BEGIN IMMEDIATE``. Taking the write lock up
  front means two processes never both hold a read lock and then deadlock
  when upgrading it to write; the price is that even read-only transactions
  queue behind a writer, so keep sessions short.
* PostgreSQL (``postgresql+psycopg://``): pooled connections checked before
  use; concurrent ``open_database`` calls serialise their migrations on an
  advisory lock.

The Alembic environment lives in ``storage/migrations`` next to this file and
is configured in code (``alembic_config``), so no ``alembic.ini`` is needed
and an installed package migrates its database the same way. To write a new
revision after changing ``storage.models``::

    from alembic import command
    from storage.db import alembic_config
    command.revision(alembic_config("sqlite:///var/dev.db"), "what changed", autogenerate=True)

then review the generated file by hand (it must run on SQLite and PostgreSQL).

Alembic is imported only to migrate: ``open_database`` compares the stored
revision with the head read from the revision files' own ``revision`` and
``down_revision`` lines (``head_in_files``), which costs no import; the CLI
starts about as fast as a bare SQLAlchemy query. The commands that read mail
(``poll``, ``run``) live long and hold what they import: they migrate a
database that needs it in a short-lived child process (``upgrade_apart``),
so that Alembic, Mako and Pygments (about 16 MB) never stay in the worker.
"""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import Session

from storage.errors import InvalidValueError, MigrationError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while migrating. Any fixed 64-bit
# value works as long as nothing else in the database uses it.
MIGRATION_LOCK_KEY = zlib.crc32(b"bethune-mailbot:storage:migrations")

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _redacted(url: Any) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (SQLite or PostgreSQL) without touching the schema."""
    try:
        sa_url = make_url(url)
    except ArgumentError as err:
        raise InvalidValueError(f"invalid database URL {url!r}: {err}") from err
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        # A connection killed by a server restart or a firewall is detected
        # before use instead of failing the first statement of a poll.
        return create_engine(sa_url, pool_pre_ping=True)
    raise InvalidValueError(
        f"unsupported database {_redacted(sa_url)!r}: use sqlite:/// or postgresql+psycopg://"
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which would
        # otherwise BEGIN lazily, and only before DML); "begin" below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so that switching to WAL waits for other connections.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            # Safe with WAL: a power cut may lose the last commits, never corrupt.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # a snapshot: no write lock taken
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection is switching too.

    Switching needs an exclusive lock. When two connections try at once on a
    new database, SQLite may answer one of them "database is locked" at once,
    without waiting for the busy timeout (it would otherwise be a deadlock:
    each holds the shared lock the other must see released). Seen one time in
    ten with four processes opening a new database together.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            busy = getattr(err, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, None)
            if not busy or "locked" not in str(err) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration for this package, built in code (no alembic.ini).

    With ``url`` the Alembic command line helpers (revision, history...) can
    connect on their own; ``upgrade`` passes its connection instead.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """Revision the code expects the database to be at."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise MigrationError(f"no migration found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """Revision the database is at; None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as err:
        raise StorageError(
            f"cannot read the schema revision of {_redacted(engine.url)}: {err}"
        ) from err


def upgrade(engine: Engine) -> None:
    """Bring the database schema to the latest revision; no-op when already there.

    The whole upgrade runs in one transaction (both back ends have
    transactional DDL), so a failed migration leaves the previous schema.
    """
    from alembic.util.exc import CommandError

    try:
        with engine.connect() as connection:
            _upgrade(connection)
    except MigrationError:
        raise
    except (CommandError, SQLAlchemyError) as err:
        raise MigrationError(f"migrating {_redacted(engine.url)} failed: {err}") from err


def _upgrade(connection: Connection) -> None:
    from alembic import command

    sqlite = connection.dialect.name == "sqlite"
    with _migration_lock(connection):
        if sqlite:
            # Batch migrations recreate tables; with foreign keys enforced,
            # dropping the old copy would cascade or fail. The pragma has no
            # effect inside a transaction, hence the raw connection before BEGIN.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                # Read inside the transaction (after BEGIN IMMEDIATE or under
                # the advisory lock), so a migration run meanwhile by another
                # process is seen and not replayed.
                _check_known_revision(connection)
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite:
                    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if problems:
                        raise MigrationError(f"foreign keys broken by the migration: {problems}")
        finally:
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def _check_known_revision(connection: Connection) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except CommandError as err:
        raise MigrationError(
            f"the database is at revision {current!r}, unknown to this version of the code "
            f"(head is {script.get_current_head()!r}): was it migrated by a newer release?"
        ) from err


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Serialise migrations between processes (PostgreSQL only).

    SQLite needs nothing more: BEGIN IMMEDIATE already admits one writer.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    # Session-level lock: it survives the commit below and is held by this
    # connection until explicitly released.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        except SQLAlchemyError:
            # Never hand a pooled connection back still holding the lock:
            # closing it is what releases a session-level lock.
            connection.invalidate()


def head_in_files(directory: Path = MIGRATIONS_DIR / "versions") -> str | None:
    """The head revision, read from the revision files without importing Alembic.

    Each file assigns ``revision`` and ``down_revision`` string literals, as
    Alembic's template writes them; the head is the one revision no other
    names as its parent. None when that is not plain (no file, a merge, a
    branch, a value that is not a literal): ``head_revision`` then decides.
    ``tests/test_storage_revision_check.py`` holds it equal to Alembic's head.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in directory.glob("*.py"):
        values = _assigned_literals(path, ("revision", "down_revision"))
        revision, parent = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str) or not isinstance(parent, str | None):
            return None
        revisions.add(revision)
        if parent is not None:
            parents.add(parent)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _assigned_literals(path: Path, names: tuple[str, ...]) -> dict[str, object]:
    """Module-level ``name = <literal>`` (annotated or not) of a Python file."""
    found: dict[str, object] = {}
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return found
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names:
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    found[target.id] = value  # not a literal: the caller gives up
    return found


def stored_revision(engine: Engine) -> str | None:
    """The one revision in ``alembic_version``, read without Alembic; None when there
    is no such table or not exactly one row (Alembic then reads it in ``upgrade``)."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError as err:
        raise StorageError(
            f"cannot read the schema revision of {_redacted(engine.url)}: {err}"
        ) from err
    return rows[0][0] if len(rows) == 1 else None


def open_database(url: str, *, upgrade_apart: bool = False) -> Engine:
    """Engine for ``url`` with the schema at the latest revision (created if needed).

    ``upgrade_apart``: a database that needs migrating is migrated by a child
    process (``upgrade_in_child``), so that this process never imports
    Alembic; for the long-running commands. An in-memory SQLite database,
    which a child cannot reach, is migrated here.
    """
    engine = make_engine(url)
    try:
        # A database at head, the usual case, needs neither Alembic nor its
        # scripts; upgrade() reads both again under the migration lock.
        head = head_in_files()
        if head is not None and stored_revision(engine) == head:
            return engine
        if upgrade_apart and head is not None and not _in_memory(engine):
            upgrade_in_child(url)
            found = stored_revision(engine)
            if found != head:
                raise MigrationError(
                    f"migrating {_redacted(engine.url)} left it at {found!r}, not at {head!r}"
                )
        else:
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _in_memory(engine: Engine) -> bool:
    database = engine.url.database
    return engine.url.get_backend_name() == "sqlite" and (
        not database or database == ":memory:" or "mode=memory" in database
    )


# Code of the child that migrates (``upgrade_in_child``); the URL comes on its
# standard input, so that a password never shows in a process listing.
_UPGRADE_CHILD = "from storage.db import upgrade_from_stdin; upgrade_from_stdin()"
# Exit status of the child when the migration itself failed (its message on stderr).
_UPGRADE_FAILED = 3
_FAILURE_PREFIX = "mailbot-migration-error: "


def upgrade_in_child(url: str) -> None:
    """``upgrade`` of the database at ``url``, run by a child Python process.

    Raises ``MigrationError`` with the child's message when it fails; the
    child takes the same locks as ``upgrade`` (two workers starting together
    still migrate once).
    """
    here = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _UPGRADE_CHILD],
            input=url,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except OSError as err:
        raise MigrationError(f"cannot start the migration of {_redacted(url)}: {err}") from err
    if done.returncode == 0:
        return
    for line in reversed(done.stderr.splitlines()):
        if line.startswith(_FAILURE_PREFIX) and done.returncode == _UPGRADE_FAILED:
            raise MigrationError(json.loads(line[len(_FAILURE_PREFIX) :]))
    # Anything else (a crash): the last line of its traceback, which names
    # the error, and no more of it (a traceback could quote the URL).
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no message"
    raise MigrationError(
        f"migrating {_redacted(url)} failed (exit status {done.returncode}): {last}"
    )


def upgrade_from_stdin() -> None:
    """The child of ``upgrade_in_child``: migrate the database whose URL is on stdin."""
    url = sys.stdin.readline().strip()
    try:
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
    except StorageError as err:
        # One line the parent finds among whatever else was logged.
        print(_FAILURE_PREFIX + json.dumps(str(err)), file=sys.stderr)
        sys.exit(_UPGRADE_FAILED)


# Execution option of a connection that only reads (``read_scope``).
READ_ONLY = "mailbot_read_only"


@contextmanager
def read_scope(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only (a back-office page), rolled back when done.

    On SQLite its transaction is a plain (deferred) ``BEGIN``: a consistent
    snapshot that takes no write lock, so a page neither waits for the
    poller filing mail nor holds it up, as ``BEGIN IMMEDIATE`` would.
    """
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        yield connection


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises.

    Objects stay usable after the block (``expire_on_commit=False``): the CLI
    and the poller read attributes of what they just wrote.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
