"""Queries and writes on the storage tables, for the poller, the CLI and the mailer.

Every function takes keyword-only arguments and works inside the caller's
session and transaction: none of them commits (use ``storage.db.session_scope``).
They flush, so generated ids exist and constraint violations surface at the
call that caused them rather than at commit.

Writes that may be repeated (a message seen again, the same attachment
re-sent, a reply already queued) are idempotent: the existing row wins. They
look the row up first and fall back on the unique constraint, inserting in a
SAVEPOINT, so that a concurrent worker inserting the same row at the same
moment is handled too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from storage.errors import DuplicateError, InvalidValueError, NotFoundError, StorageError
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    MailboxCursor,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Piece,
    PieceRole,
    ReferenceCounter,
    ServerAction,
    Sighting,
    StaffAccount,
    is_sha256,
    utcnow,
)

REFERENCE_PREFIX = "BSC"

_Row = TypeVar("_Row", bound=SQLModel)


# -- helpers ---------------------------------------------------------------


def _check_choice(value: str, allowed: type[Any], what: str) -> str:
    try:
        return str(allowed(value))
    except ValueError as err:
        choices = ", ".join(item.value for item in allowed)
        raise InvalidValueError(f"invalid {what} {value!r}: expected one of {choices}") from err


def _id_of(session: Session, row: SQLModel | None) -> int | None:
    """Primary key of ``row``, flushing first when it is still pending."""
    if row is None:
        return None
    if row.id is None:  # type: ignore[attr-defined]
        session.add(row)
        session.flush()
    return row.id  # type: ignore[attr-defined]


def _insert_once(session: Session, row: _Row, lookup: Callable[[], _Row | None]) -> _Row | None:
    """Insert ``row`` unless ``lookup`` finds it; return the existing row, or None if inserted.

    The SAVEPOINT confines a unique-constraint failure (another worker won
    the race) to this insert; the caller's transaction goes on.
    """
    existing = lookup()
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = lookup()
        if existing is None:
            raise  # not a duplicate: a foreign key or NOT NULL problem
        return existing
    return None


# -- references and dossiers -----------------------------------------------


def format_reference(year: int, number: int) -> str:
    """``BSC-2026-0007``; the number grows past four digits after 9999."""
    return f"{REFERENCE_PREFIX}-{year:04d}-{number:04d}"


def next_reference(*, session: Session, year: int) -> tuple[str, int]:
    """Allocate the next dossier number of ``year``; return (reference, number).

    Safe with concurrent workers: the counter row is created with ON CONFLICT
    DO NOTHING, then incremented by a single UPDATE ... RETURNING, which
    holds the row lock (PostgreSQL) or the database write lock (SQLite,
    BEGIN IMMEDIATE) until the caller's transaction ends. A rolled-back
    transaction gives its number back, so numbers have no gaps.
    """
    if isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9999:
        raise InvalidValueError(f"invalid reference year {year!r}")
    dialect = session.get_bind().dialect.name
    # Each dialect's module is imported only where it is in use.
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        insert: Any = postgresql.insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        insert = sqlite.insert
    else:
        raise StorageError(f"next_reference does not support the {dialect!r} database")
    table = ReferenceCounter.__table__  # type: ignore[attr-defined]
    session.exec(
        insert(table)
        .values(year=year, last_number=0)
        .on_conflict_do_nothing(index_elements=["year"])
    )
    number = session.exec(
        update(table)
        .where(table.c.year == year)
        .values(last_number=table.c.last_number + 1)
        .returning(table.c.last_number)
    ).scalar_one()
    return format_reference(year, number), number


def create_dossier(
    *,
    session: Session,
    year: int,
    sender: str,
    sender_name: str | None,
    fields: dict[str, Any],
    missing: Sequence[str],
    status: str,
    received_at: datetime,
    actor: str,
    evidence: dict[str, Any] | None = None,
) -> Dossier:
    """Create a dossier with a freshly allocated reference and record ``dossier.created``."""
    status = _check_choice(status, DossierStatus, "dossier status")
    reference, number = next_reference(session=session, year=year)
    now = utcnow()
    dossier = Dossier(
        reference=reference,
        year=year,
        number=number,
        status=status,
        fields=dict(fields),
        evidence=dict(evidence or {}),
        missing=list(missing),
        sender=sender,
        sender_name=sender_name,
        received_at=received_at,
        updated_at=now,
        completed_at=now if status == DossierStatus.COMPLETE else None,
    )
    session.add(dossier)
    session.flush()
    record_event(
        session=session,
        actor=actor,
        action="dossier.created",
        dossier=dossier,
        details={"reference": reference, "status": status, "missing": list(missing)},
    )
    return dossier


def get_dossier(*, session: Session, reference: str) -> Dossier | None:
    """The dossier with this reference (case and surrounding blanks ignored), or None."""
    wanted = reference.strip().upper()
    return session.exec(select(Dossier).where(Dossier.reference == wanted)).first()


def list_dossiers(*, session: Session, status: str | None = None) -> list[Dossier]:
    """Dossiers, newest first, optionally only those with ``status``."""
    query = select(Dossier)
    if status is not None:
        query = query.where(Dossier.status == _check_choice(status, DossierStatus, "status"))
    query = query.order_by(col(Dossier.received_at).desc(), col(Dossier.id).desc())
    return list(session.exec(query).all())


def list_dossier_rows(
    *, session: Session, columns: Sequence[Any], status: str | None = None
) -> list[Any]:
    """``list_dossiers`` as rows of ``columns`` (Dossier attributes), not ORM objects.

    For long read-only lists (``dossiers list``): building a thousand
    Dossier objects cost seven times the query itself.
    """
    query = select(*columns)
    if status is not None:
        query = query.where(Dossier.status == _check_choice(status, DossierStatus, "status"))
    query = query.order_by(col(Dossier.received_at).desc(), col(Dossier.id).desc())
    return list(session.exec(query).all())


def set_dossier_status(
    *, session: Session, reference: str, status: str, actor: str, note: str | None = None
) -> Dossier:
    """Change a dossier's status and record ``dossier.status_changed`` (old and new).

    ``note`` replaces the previous status note (None clears it): a note
    explains the current status. ``completed_at`` is set the first time the
    dossier becomes complete.
    """
    status = _check_choice(status, DossierStatus, "dossier status")
    wanted = reference.strip().upper()
    # Lock the row (PostgreSQL) so that two staff changes are recorded in order.
    dossier = session.exec(
        select(Dossier).where(Dossier.reference == wanted).with_for_update()
    ).first()
    if dossier is None:
        raise NotFoundError(f"no dossier {reference!r}")
    old = dossier.status
    dossier.status = status
    dossier.status_note = note
    dossier.updated_at = utcnow()
    if status == DossierStatus.COMPLETE and dossier.completed_at is None:
        dossier.completed_at = dossier.updated_at
    session.add(dossier)
    record_event(
        session=session,
        actor=actor,
        action="dossier.status_changed",
        dossier=dossier,
        details={"old": old, "new": status, "note": note},
    )
    return dossier


# -- messages and sightings ------------------------------------------------


def find_message(*, session: Session, dedup_key: str) -> Message | None:
    """The ledger entry with this dedup key (see ``storage.models.dedup_key_for``)."""
    return session.exec(select(Message).where(Message.dedup_key == dedup_key)).first()


def add_message(*, session: Session, message: Message) -> tuple[Message, bool]:
    """Insert ``message`` into the ledger unless its dedup key is already there.

    Returns (the row to use, True if ``message`` was inserted). When two
    mailboxes deliver the same message to two workers at once, one inserts
    and the other gets the existing row.
    """
    _check_choice(message.status, MessageStatus, "message status")
    existing = _insert_once(
        session, message, lambda: find_message(session=session, dedup_key=message.dedup_key)
    )
    if existing is None:
        return message, True
    return existing, False


def list_messages(*, session: Session, status: str | None = None) -> list[Message]:
    """Ledger entries, newest first, optionally only those with ``status``."""
    query = select(Message)
    if status is not None:
        query = query.where(Message.status == _check_choice(status, MessageStatus, "status"))
    query = query.order_by(col(Message.first_seen_at).desc(), col(Message.id).desc())
    return list(session.exec(query).all())


def find_sighting(
    *, session: Session, mailbox: str, folder: str, uidvalidity: int, uid: int
) -> Sighting | None:
    """The sighting at this server position, if that position was already handled."""
    return session.exec(
        select(Sighting).where(
            Sighting.mailbox == mailbox,
            Sighting.folder == folder,
            Sighting.uidvalidity == uidvalidity,
            Sighting.uid == uid,
        )
    ).first()


def add_sighting(
    *,
    session: Session,
    message: Message,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    uid: int,
    server_action: str = ServerAction.PENDING,
    seen_at: datetime | None = None,
) -> Sighting:
    """Record that ``message`` was seen at this server position; idempotent.

    Returns the existing sighting when the position is already recorded for
    the same message. The same position holding another message would mean
    the server reused a UID without changing UIDVALIDITY: DuplicateError.
    """
    server_action = _check_choice(server_action, ServerAction, "server action")
    message_pk = _id_of(session, message)
    row = Sighting(
        message_pk=message_pk,
        mailbox=mailbox,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=uid,
        server_action=server_action,
        seen_at=seen_at or utcnow(),
    )
    existing = _insert_once(
        session,
        row,
        lambda: find_sighting(
            session=session, mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid
        ),
    )
    if existing is None:
        return row
    if existing.message_pk != message_pk:
        raise DuplicateError(
            f"{mailbox}/{folder} uidvalidity={uidvalidity} uid={uid} is already recorded "
            f"for message {existing.message_pk}, not {message_pk}"
        )
    return existing


def mailboxes_for_dossier(*, session: Session, dossier: Dossier) -> list[str]:
    """Names of the mailboxes where messages of ``dossier`` were seen, sorted."""
    query = (
        select(Sighting.mailbox)
        .join(Message, col(Message.id) == col(Sighting.message_pk))
        .where(Message.dossier_id == dossier.id)
        .distinct()
        .order_by(Sighting.mailbox)
    )
    return list(session.exec(query).all())


# The drivers' positional parameter mark (sqlite3: qmark; psycopg: format and pyformat).
_PARAMETER_MARK = {"qmark": "?", "format": "%s", "pyformat": "%s"}

# Keys per IN list: under SQLite's oldest limit of bound parameters (999) and
# PostgreSQL's (65,535), few enough that a statement is prepared once per size.
_KEYS_PER_QUERY = 500


def _by_dedup_key(
    connection: sa.Connection, columns: str, dedup_keys: Collection[str]
) -> Iterator[Any]:
    """Rows (``columns`` of ``message``) of these dedup keys, in queries of at most 500 keys.

    Written for the driver: SQLAlchemy's expanding IN costs more than the
    query itself on a batch of keys.
    """
    mark = _PARAMETER_MARK[connection.dialect.paramstyle]
    keys = list(dedup_keys)
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        marks = ", ".join([mark] * len(chunk))
        yield from connection.exec_driver_sql(
            f"SELECT {columns} FROM message WHERE dedup_key IN ({marks})", tuple(chunk)
        )


def dedup_keys_present(*, connection: sa.Connection, dedup_keys: Collection[str]) -> set[str]:
    """Those of ``dedup_keys`` that are in the ledger, on ``connection`` (any transaction).

    The poller's look-up of a fetched batch, before it reads the messages:
    for a read-only connection, ``storage.db.read_scope``.
    """
    if not dedup_keys:
        return set()
    return {key for (key,) in _by_dedup_key(connection, "dedup_key", dedup_keys)}


def ledger_ids(*, session: Session, dedup_keys: Collection[str]) -> dict[str, int]:
    """The id of each of these dedup keys already in the ledger (no ORM rows)."""
    if not dedup_keys:
        return {}
    session.flush()  # as an ORM query would, so that pending rows are seen
    return dict(_by_dedup_key(session.connection(), "dedup_key, id", dedup_keys))


def insert_ledger_rows(*, session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ledger rows given as column values at once; their ids, in order.

    The rows written are those ``insert(Message)`` writes with the same
    values (each column converted by its own type for the database in use),
    through one driver-level executemany: no ORM objects, no per-row
    statement bookkeeping. The ids are read back by dedup key, unique, in
    the same transaction. A dedup key already there raises IntegrityError,
    as the ORM insert would.
    """
    if not rows:
        return []
    _bulk_insert(session, Message.__table__, rows)
    ids = ledger_ids(session=session, dedup_keys=[row["dedup_key"] for row in rows])
    return [ids[row["dedup_key"]] for row in rows]


def insert_sightings(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert sightings given as column values at once (``insert_ledger_rows``' way).

    A position already recorded raises IntegrityError: this is for
    positions seen for the first time (``add_sighting`` is the idempotent one).
    """
    if rows:
        _bulk_insert(session, Sighting.__table__, rows)


@dataclass(frozen=True)
class _InsertPlan:
    """One table's INSERT as the driver takes it, with each column's conversion."""

    sql: str
    # Column keys in the order the statement takes its parameters (when positional).
    keys: tuple[str, ...]
    positional: bool
    # (index, bind processor) of the columns whose type converts values for this dialect.
    converting: tuple[tuple[int, Callable[[Any], Any]], ...]
    # Per key: what is written when a row does not give the column, already
    # converted (the column's scalar default, else NULL as when an INSERT
    # leaves it out); _CONVERT for a converting column (its ``missing`` holds it).
    fill: tuple[Any, ...]
    missing: tuple[Any, ...]
    # Columns a plain executemany cannot fill on its own (a computed or server default).
    required: tuple[str, ...]


# Insert plans by dialect (a dialect carries its engine's JSON serialiser) and table.
_INSERT_PLANS: WeakKeyDictionary[sa.Dialect, dict[str, _InsertPlan]] = WeakKeyDictionary()

# Stands for a converting column's value a row does not give (``_bulk_insert``).
_CONVERT = object()


def _insert_plan(dialect: sa.Dialect, table: sa.Table) -> _InsertPlan:
    plans = _INSERT_PLANS.setdefault(dialect, {})
    plan = plans.get(table.name)
    if plan is not None:
        return plan
    columns = [column for column in table.columns if not column.primary_key]
    # inline: no RETURNING of the new id (PostgreSQL adds one to a one-row INSERT).
    compiled = (
        table.insert().inline().compile(dialect=dialect, column_keys=[c.key for c in columns])
    )
    positional = bool(compiled.positional)
    keys = tuple(compiled.positiontup or ()) if positional else tuple(c.key for c in columns)
    by_key = {column.key: column for column in columns}
    converting, fill, missing, required = [], [], [], []
    for index, key in enumerate(keys):
        column = by_key[key]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if column.server_default is not None or (
            column.default is not None and not column.default.is_scalar
        ):
            required.append(key)
        value = (
            column.default.arg if column.default is not None and column.default.is_scalar else None
        )
        if process is not None:
            converting.append((index, process))
            # A scalar default is converted like a given value, as SQLAlchemy does.
            missing.append(process(value) if column.default is not None else None)
            fill.append(_CONVERT)
        else:
            missing.append(value)
            fill.append(value)
    plan = _InsertPlan(
        sql=str(compiled),
        keys=keys,
        positional=positional,
        converting=tuple(converting),
        fill=tuple(fill),
        missing=tuple(missing),
        required=tuple(required),
    )
    plans[table.name] = plan
    return plan


def _bulk_insert(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """One driver executemany of ``rows`` (column values, converted here as their types do).

    A value given to many rows as the same object (the batch's timestamp, a
    rule trace shared by equal traces) is converted once: the rows hold it
    for the whole call, so its id names it, and a conversion depends on the
    value alone.
    """
    session.flush()  # what the ORM would have flushed before its own insert
    connection = session.connection()
    plan = _insert_plan(connection.dialect, table)
    fills = list(zip(plan.keys, plan.fill, strict=True))
    every_column = itemgetter(*plan.keys)
    missing = plan.missing
    converted: dict[tuple[int, int], Any] = {}
    params: list[Any] = []
    for row in rows:
        try:
            values = list(every_column(row))
        except KeyError:
            for key in plan.required:
                if key not in row:
                    raise InvalidValueError(
                        f"{table.name}.{key} must be given to a bulk insert"
                    ) from None
            values = [row.get(key, fill) for key, fill in fills]
        for index, process in plan.converting:
            value = values[index]
            if value is _CONVERT:
                values[index] = missing[index]
                continue
            seen = (index, id(value))
            if seen not in converted:
                converted[seen] = process(value)
            values[index] = converted[seen]
        params.append(
            tuple(values) if plan.positional else dict(zip(plan.keys, values, strict=True))
        )
    connection.exec_driver_sql(plan.sql, params)


# -- cursors -----------------------------------------------------------------


def get_cursor(*, session: Session, mailbox: str, folder: str) -> MailboxCursor | None:
    """How far ``folder`` of ``mailbox`` has been read, or None if never."""
    return session.exec(
        select(MailboxCursor).where(
            MailboxCursor.mailbox == mailbox, MailboxCursor.folder == folder
        )
    ).first()


def save_cursor(
    *,
    session: Session,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    last_uid: int,
    allow_rewind: bool = False,
) -> MailboxCursor:
    """Record the last UID read in a folder.

    A new UIDVALIDITY replaces the cursor outright. Under the same
    UIDVALIDITY the cursor only moves forward unless ``allow_rewind``: a
    slower worker finishing late must not make the next poll re-read mail.
    """
    if uidvalidity < 0 or last_uid < 0:
        raise InvalidValueError(f"invalid cursor uidvalidity={uidvalidity} last_uid={last_uid}")
    for _attempt in range(2):
        cursor = session.exec(
            select(MailboxCursor)
            .where(MailboxCursor.mailbox == mailbox, MailboxCursor.folder == folder)
            .with_for_update()
        ).first()
        if cursor is not None:
            if cursor.uidvalidity != uidvalidity or allow_rewind or last_uid > cursor.last_uid:
                cursor.uidvalidity = uidvalidity
                cursor.last_uid = last_uid
                cursor.updated_at = utcnow()
                session.add(cursor)
                session.flush()
            return cursor
        row = MailboxCursor(
            mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, last_uid=last_uid
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            continue  # created meanwhile by another worker: update it instead
        return row
    raise StorageError(f"could not save the cursor of {mailbox}/{folder}")  # pragma: no cover


_CURSOR = MailboxCursor.__table__.c
# save_cursor's change of an existing cursor, as one statement.
_ADVANCE_CURSOR = (
    update(MailboxCursor.__table__)
    .where(
        _CURSOR.mailbox == sa.bindparam("at_mailbox"),
        _CURSOR.folder == sa.bindparam("at_folder"),
        sa.or_(
            _CURSOR.uidvalidity != sa.bindparam("new_uidvalidity"),
            _CURSOR.last_uid < sa.bindparam("new_last_uid"),
        ),
    )
    .values(
        uidvalidity=sa.bindparam("new_uidvalidity"),
        last_uid=sa.bindparam("new_last_uid"),
        updated_at=sa.bindparam("new_updated_at", type_=_CURSOR.updated_at.type),
    )
)


def advance_cursor(
    *, session: Session, mailbox: str, folder: str, uidvalidity: int, last_uid: int
) -> None:
    """``save_cursor`` (without ``allow_rewind``) for a caller that needs no row back.

    The usual case, a cursor moving forward, is one UPDATE (a sixth of
    ``save_cursor``'s ORM load and flush). Anything else (no cursor yet, one
    already further on, a cursor held by this session's ORM, which the
    UPDATE would leave stale) is ``save_cursor``'s.
    """
    if uidvalidity < 0 or last_uid < 0:
        raise InvalidValueError(f"invalid cursor uidvalidity={uidvalidity} last_uid={last_uid}")
    session.flush()
    if not any(isinstance(row, MailboxCursor) for row in session.identity_map.values()):
        changed = session.connection().execute(
            _ADVANCE_CURSOR,
            {
                "at_mailbox": mailbox,
                "at_folder": folder,
                "new_uidvalidity": uidvalidity,
                "new_last_uid": last_uid,
                "new_updated_at": utcnow(),
            },
        )
        if changed.rowcount:
            return
    save_cursor(
        session=session,
        mailbox=mailbox,
        folder=folder,
        uidvalidity=uidvalidity,
        last_uid=last_uid,
    )


# -- pieces ------------------------------------------------------------------


def add_piece(
    *,
    session: Session,
    dossier: Dossier,
    message: Message,
    blob_sha256: str,
    filename: str | None,
    content_type: str,
    size: int,
    role: str,
    warnings: Sequence[Any] | None = None,
) -> Piece:
    """File a stored blob in a dossier; idempotent on (dossier, blob).

    The same file sent twice (e.g. again in a follow-up) stays one piece:
    the first row is returned unchanged.
    """
    role = _check_choice(role, PieceRole, "piece role")
    if not is_sha256(blob_sha256):
        raise InvalidValueError(f"invalid blob digest {blob_sha256!r}")
    dossier_id = _id_of(session, dossier)
    row = Piece(
        dossier_id=dossier_id,
        message_pk=_id_of(session, message),
        blob_sha256=blob_sha256,
        filename=filename,
        content_type=content_type,
        size=size,
        role=role,
        warnings=list(warnings or []),
    )
    existing = _insert_once(
        session,
        row,
        lambda: session.exec(
            select(Piece).where(Piece.dossier_id == dossier_id, Piece.blob_sha256 == blob_sha256)
        ).first(),
    )
    return row if existing is None else existing


def list_pieces(*, session: Session, dossier: Dossier) -> list[Piece]:
    """Pieces of ``dossier`` in the order they were added."""
    return list(
        session.exec(
            select(Piece)
            .where(Piece.dossier_id == dossier.id)
            .order_by(col(Piece.added_at), col(Piece.id))
        ).all()
    )


# -- audit trail -------------------------------------------------------------


def record_event(
    *,
    session: Session,
    actor: str,
    action: str,
    dossier: Dossier | None = None,
    message: Message | None = None,
    details: dict[str, Any] | None = None,
) -> Event:
    """Append an entry to the audit trail.

    ``actor`` says who: ``"system"``, ``"rule:<name>"``, ``"staff:<login>"``;
    ``action`` what, as ``"<object>.<verb>"`` (``"dossier.created"``).
    """
    if not actor or not action:
        raise InvalidValueError(f"an event needs an actor and an action, got {actor!r}, {action!r}")
    event = Event(
        actor=actor,
        action=action,
        dossier_id=_id_of(session, dossier),
        message_pk=_id_of(session, message),
        details=dict(details or {}),
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    *, session: Session, dossier: Dossier | None = None, message: Message | None = None
) -> list[Event]:
    """Audit entries, oldest first, optionally only those about a dossier or a message."""
    query = select(Event)
    if dossier is not None:
        query = query.where(Event.dossier_id == dossier.id)
    if message is not None:
        query = query.where(Event.message_pk == message.id)
    return list(session.exec(query.order_by(col(Event.at), col(Event.id))).all())


# -- outbox ------------------------------------------------------------------


def find_outgoing(*, session: Session, dedup_key: str) -> Outbox | None:
    """The outbox row with this dedup key, if that reply was already queued."""
    return session.exec(select(Outbox).where(Outbox.dedup_key == dedup_key)).first()


def enqueue_outgoing(
    *,
    session: Session,
    dedup_key: str,
    kind: str,
    mailbox: str,
    from_addr: str,
    to_addr: str,
    subject: str,
    message_id: str,
    raw: bytes,
    dossier: Dossier | None = None,
    trigger_message: Message | None = None,
    status: str = OutboxStatus.QUEUED,
    suppressed_reason: str | None = None,
    suppressed_details: dict[str, Any] | None = None,
    next_attempt_at: datetime | None = None,
) -> Outbox | None:
    """Queue a rendered message for sending, once per ``dedup_key``.

    Returns the new row, or None (writing nothing) when a row with this
    dedup key exists already: the reply was queued before, maybe by another
    worker. ``dedup_key`` is built by the caller as
    ``"<kind>:<dossier id>:<trigger message pk>"`` (see ``Outbox``).

    ``status`` is ``queued`` (due at ``next_attempt_at``, default now),
    ``held`` (over a global cap: ``send_outbox`` queues it when the window
    allows) or ``suppressed`` (kept for the record, never sent). A held or
    suppressed row needs a reason: a code of ``parsers.reasons.ReplyHold``,
    with the values its wording names in ``suppressed_details``.
    A different dedup key reusing ``message_id`` raises DuplicateError.
    """
    kind = _check_choice(kind, OutboxKind, "outbox kind")
    status = _check_choice(status, OutboxStatus, "outbox status")
    if status not in (OutboxStatus.QUEUED, OutboxStatus.HELD, OutboxStatus.SUPPRESSED):
        raise InvalidValueError(
            f"a new outgoing message is queued, held or suppressed, not {status!r}"
        )
    if status != OutboxStatus.QUEUED and not suppressed_reason:
        raise InvalidValueError(f"outgoing message {dedup_key!r} {status} without a reason")
    now = utcnow()
    row = Outbox(
        dedup_key=dedup_key,
        kind=kind,
        dossier_id=_id_of(session, dossier),
        trigger_message_pk=_id_of(session, trigger_message),
        mailbox=mailbox,
        from_addr=from_addr,
        to_addr=to_addr,
        subject=subject,
        message_id=message_id,
        raw=raw,
        status=status,
        suppressed_reason=suppressed_reason,
        suppressed_details=suppressed_details,
        # Due rows are found with the (status, next_attempt_at) index.
        next_attempt_at=(next_attempt_at or now) if status == OutboxStatus.QUEUED else None,
        created_at=now,
    )
    try:
        existing = _insert_once(
            session, row, lambda: find_outgoing(session=session, dedup_key=dedup_key)
        )
    except IntegrityError as err:
        clash = session.exec(select(Outbox.id).where(Outbox.message_id == message_id)).first()
        if clash is None:
            raise
        raise DuplicateError(
            f"cannot queue {dedup_key!r}: Message-ID {message_id!r} is already used"
        ) from err
    return row if existing is None else None


def mailboxes_for_message(*, session: Session, message: Message) -> list[str]:
    """Names of the mailboxes where ``message`` was seen, sorted."""
    query = (
        select(Sighting.mailbox)
        .where(Sighting.message_pk == message.id)
        .distinct()
        .order_by(Sighting.mailbox)
    )
    return list(session.exec(query).all())


# -- staff accounts (back-office logins) ------------------------------------


def get_staff_account(*, session: Session, login: str) -> StaffAccount | None:
    """The account with this login (exact, logins are stored lower-case), or None."""
    return session.exec(select(StaffAccount).where(StaffAccount.login == login)).first()


def list_staff_accounts(*, session: Session) -> list[StaffAccount]:
    """Every account, disabled ones included, by login."""
    return list(session.exec(select(StaffAccount).order_by(col(StaffAccount.login))).all())


def save_staff_account(
    *, session: Session, login: str, display_name: str | None, password_hash: str
) -> tuple[StaffAccount, bool]:
    """Create the account, or enable again a disabled one with a new password.

    Returns (the account, True if it was created). An enabled account with
    this login raises ``DuplicateError``.
    """
    account = get_staff_account(session=session, login=login)
    if account is not None and not account.disabled:
        raise DuplicateError(f"staff account {login!r} already exists")
    created = account is None
    if account is None:
        account = StaffAccount(login=login, password_hash=password_hash)
    account.display_name = display_name
    account.password_hash = password_hash
    account.disabled = False
    session.add(account)
    session.flush()
    return account, created


def disable_staff_account(*, session: Session, login: str) -> StaffAccount:
    """Disable an account (kept so that the audit trail's logins stay unambiguous)."""
    account = get_staff_account(session=session, login=login)
    if account is None or account.disabled:
        raise NotFoundError(f"no staff account {login!r}")
    account.disabled = True
    session.add(account)
    session.flush()
    return account
