"""Database tables of the mail-intake service (SQLModel, SQLAlchemy 2).

The schema is the durable memory of the service:

* ``MailboxCursor``: how far each IMAP folder has been read;
* ``Message`` and ``Sighting``: the ledger of every distinct message seen and
  of every server position (mailbox, folder, UIDVALIDITY, UID) it was seen at,
  so that a message is never processed twice;
* ``Dossier``, ``ReferenceCounter`` and ``Piece``: the candidatures, their
  ``BSC-YYYY-NNNN`` references and the files that make them up (the bytes live
  in the blob store, see ``storage.blobs``);
* ``Outbox``: replies to send, with a dedup key so that a reply is queued once;
* ``Event``: the audit trail;
* ``StaffAccount``: who may log in to the back-office (``mailbot web``).

Conventions: every timestamp is time-zone aware and stored in UTC
(``UTCDateTime``); status-like columns are plain strings whose allowed values
are the ``StrEnum`` classes below (no database enum type, so adding a value
needs no migration). JSON columns do not notice in-place changes: assign a new
value (``dossier.missing = [*dossier.missing, "letter"]``) or call
``sqlalchemy.orm.attributes.flag_modified`` after mutating.

Changing a table means writing an Alembic revision in
``storage/migrations/versions`` (``tests/test_storage_migrations.py`` fails
when models and migrations disagree).
"""

from __future__ import annotations

import enum
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.errors import InvalidValueError

# Named constraints are needed to alter or drop them later (SQLite batch
# migrations recreate tables and must know every constraint by name). This
# has to be set before the first table is declared.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# RFC 5322 limit for a header line; longer subjects are cut on assignment.
SUBJECT_MAX_LENGTH = 998
# Above this length a Message-ID is hashed into the dedup key: a B-tree index
# entry on PostgreSQL must stay under ~2.7 kB and legitimate IDs are far shorter.
MESSAGE_ID_KEY_MAX_LENGTH = 512

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# What is inside the first <...> of a Message-ID header.
_ANGLE_ADDR = re.compile(r"<([^<>]*)>")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def is_sha256(value: object) -> bool:
    """Tell whether ``value`` is a sha256 hex digest as stored here (64 lowercase hex)."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def dedup_key_for(message_id: str | None, sha256: str) -> str:
    """Build the ledger key of a message.

    ``"mid:<normalised Message-ID>"`` when the message has a usable Message-ID
    (angle brackets and whitespace removed, lowercased, so that the same
    message relayed by two mailboxes gets the same key), otherwise
    ``"sha:<sha256 of the raw bytes>"``. An abnormally long Message-ID is
    hashed (``"mid-sha:<hex>"``) to keep the unique index usable.
    """
    if not is_sha256(sha256):
        raise InvalidValueError(f"sha256 must be 64 lowercase hex characters, got {sha256!r}")
    normalised = normalise_message_id(message_id)
    if normalised is None:
        return f"sha:{sha256}"
    if len(normalised) > MESSAGE_ID_KEY_MAX_LENGTH:
        return "mid-sha:" + hashlib.sha256(normalised.encode("utf-8")).hexdigest()
    return f"mid:{normalised}"


def normalise_message_id(message_id: str | None) -> str | None:
    """Return the comparable form of a Message-ID header, or None if it is empty.

    Keeps what is inside the first ``<...>`` when there is one (header values
    may carry comments), drops all whitespace (folding) and lowercases.
    """
    if message_id is None:
        return None
    value = message_id.strip()
    match = _ANGLE_ADDR.search(value)
    if match is not None:
        value = match.group(1)
    value = "".join(value.split()).strip("<>").lower()
    return value or None


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamp column that only accepts aware datetimes and returns them in UTC.

    PostgreSQL stores ``timestamp with time zone``. SQLite has no time-zone
    type, so values are stored as naive UTC text and marked UTC again on load.
    Naive datetimes are refused because their meaning depends on the host
    clock and they would compare wrongly with aware ones.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise InvalidValueError(f"expected an aware datetime, got {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidValueError(
                f"naive datetime {value.isoformat()} refused: attach a time zone (e.g. UTC)"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Column factories: a Column object belongs to one table, so each field needs
# a fresh one.


def _timestamp(*, nullable: bool = False, onupdate: bool = False, index: bool = False) -> Any:
    column = sa.Column(
        UTCDateTime(), nullable=nullable, onupdate=utcnow if onupdate else None, index=index
    )
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


def _json_list() -> Any:
    return Field(
        default_factory=list,
        sa_column=sa.Column(sa.JSON(), nullable=False),
    )


def _json_dict() -> Any:
    return Field(
        default_factory=dict,
        sa_column=sa.Column(sa.JSON(), nullable=False),
    )


# Allowed values of the status-like columns. Stored as their string value.


class Verdict(enum.StrEnum):
    """What the classifier decided a message is."""

    CANDIDATURE = "candidature"
    FOLLOW_UP = "follow_up"
    NOT_CANDIDATURE = "not_candidature"
    AUTO_REPLY = "auto_reply"
    NEEDS_REVIEW = "needs_review"


class MessageStatus(enum.StrEnum):
    """Outcome of processing a message."""

    FILED = "filed"
    IGNORED = "ignored"
    SKIPPED = "skipped"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"


class ServerAction(enum.StrEnum):
    """What was done to the message on the IMAP server at a given position."""

    PENDING = "pending"
    MOVED = "moved"
    FLAGGED = "flagged"
    NONE = "none"


class DossierStatus(enum.StrEnum):
    """Life cycle of a candidature dossier."""

    INCOMPLETE = "incomplete"
    COMPLETE = "complete"
    NEEDS_REVIEW = "needs_review"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class PieceRole(enum.StrEnum):
    """Part a stored file plays in a dossier."""

    DOSSIER = "dossier"
    LETTER = "letter"
    SUPPORTING = "supporting"
    IGNORED = "ignored"


class OutboxKind(enum.StrEnum):
    """Kind of outgoing message."""

    ACKNOWLEDGEMENT = "acknowledgement"
    MISSING_PIECES = "missing_pieces"
    COMPLETED = "completed"
    # Neutral acknowledgement: received, being checked by the service (a doubtful reading).
    UNDER_REVIEW = "under_review"
    # A follow-up with nothing the service could read: passed on to staff.
    PASSED_ON = "passed_on"
    DIGEST = "digest"


class OutboxStatus(enum.StrEnum):
    """Delivery state of an outgoing message."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    # Over a global cap (replies.global_hourly_cap / global_daily_cap): kept,
    # queued by ``send_outbox`` as soon as the window allows.
    HELD = "held"


# Short controlled values (enum values, references, digests) get a bounded
# VARCHAR; free text coming from mail gets an unbounded one, so that PostgreSQL
# never rejects what SQLite would accept.
_ENUM = sa.String(32)
_TEXT = sa.String()
# The condition of the partial index on pending sightings (migration 0002).
_PENDING_SIGHTING = "server_action = 'pending'"


class _Table(SQLModel):
    """Base of the tables: their validation schema is built on first use, not at import.

    Rows loaded from the database are not validated; only code that builds
    a model from outside data (``model_validate``) needs the schema, and gets
    it then. Every command imports these models: deferring saves about 20 ms
    of each start (bench.startup).
    """

    model_config = {"defer_build": True}


class MailboxCursor(_Table, table=True):
    """Highest UID already read in one folder of one configured mailbox."""

    __tablename__ = "mailbox_cursor"
    __table_args__ = (sa.UniqueConstraint("mailbox", "folder"),)

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(sa_type=_TEXT, nullable=False)  # name in the configuration
    folder: str = Field(sa_type=_TEXT, nullable=False)
    # IMAP UIDs and UIDVALIDITY are unsigned 32-bit: too big for INTEGER on PostgreSQL.
    uidvalidity: int = Field(sa_type=sa.BigInteger, nullable=False)
    last_uid: int = Field(sa_type=sa.BigInteger, nullable=False)
    updated_at: datetime = _timestamp(onupdate=True)


class Dossier(_Table, table=True):
    """One candidature, identified by its ``BSC-YYYY-NNNN`` reference."""

    __tablename__ = "dossier"
    __table_args__ = (sa.UniqueConstraint("year", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(sa_type=sa.String(32), nullable=False, unique=True)
    year: int = Field(nullable=False)
    number: int = Field(nullable=False)
    status: str = Field(sa_type=_ENUM, nullable=False, index=True)
    # Normalised field values, and for each field where it was found.
    fields: dict[str, Any] = _json_dict()
    evidence: dict[str, Any] = _json_dict()
    # What is still expected, e.g. ["letter", "field:description"].
    missing: list[str] = _json_list()
    sender: str = Field(sa_type=_TEXT, nullable=False, index=True)  # applicant address
    sender_name: str | None = Field(default=None, sa_type=_TEXT, nullable=True)
    received_at: datetime = _timestamp()
    updated_at: datetime = _timestamp(onupdate=True)
    completed_at: datetime | None = _timestamp(nullable=True)
    # Retention jobs must leave a dossier on legal hold (and its blobs) alone.
    legal_hold: bool = Field(default=False, nullable=False)
    status_note: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    # Raised by database triggers (migration 0005) on every change the
    # dossier's back-office page shows; never written by the code.
    version: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": "0"})


class Message(_Table, table=True):
    """Ledger entry: one row per distinct message, wherever it was seen."""

    __tablename__ = "message"

    id: int | None = Field(default=None, primary_key=True)
    # Built by dedup_key_for(); unique so that a message is filed once.
    dedup_key: str = Field(sa_type=_TEXT, nullable=False, unique=True)
    message_id: str | None = Field(default=None, sa_type=_TEXT, nullable=True, index=True)
    # Hex digest of the raw bytes; not unique: the same bytes may have been
    # recorded under a Message-ID key and, later, a different one.
    sha256: str = Field(sa_type=sa.String(64), nullable=False, index=True)
    # sha256 of the raw message in the blob store when it is kept (candidatures),
    # None when the content is not kept.
    raw_blob: str | None = Field(default=None, sa_type=sa.String(64), nullable=True, index=True)
    size: int = Field(sa_type=sa.BigInteger, nullable=False)
    sender: str = Field(sa_type=_TEXT, nullable=False)
    sender_name: str | None = Field(default=None, sa_type=_TEXT, nullable=True)
    subject: str = Field(default="", sa_type=sa.String(SUBJECT_MAX_LENGTH), nullable=False)
    date_header: datetime | None = _timestamp(nullable=True)
    headers: dict[str, Any] = _json_dict()  # a few selected headers
    verdict: str | None = Field(default=None, sa_type=_ENUM, nullable=True)
    rule_trace: list[Any] = _json_list()
    status: str = Field(sa_type=_ENUM, nullable=False, index=True)
    # Why it waits for staff (needs_review, failed): a code of
    # parsers.reasons.ReviewReason; ``error`` holds the free-text detail.
    reason: str | None = Field(default=None, sa_type=_ENUM, nullable=True)
    error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    warnings: list[Any] = _json_list()
    dossier_id: int | None = Field(
        default=None, foreign_key="dossier.id", nullable=True, index=True
    )
    first_seen_at: datetime = _timestamp()
    updated_at: datetime = _timestamp(onupdate=True)
    attempts: int = Field(default=0, nullable=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Subjects come from untrusted mail: cut rather than fail the insert.
        # (SQLModel table models skip validation and overwrite what an ORM
        # @validates hook returns, hence the override.)
        if name == "subject" and isinstance(value, str):
            value = value[:SUBJECT_MAX_LENGTH]
        super().__setattr__(name, value)


class Sighting(_Table, table=True):
    """A message seen at one server position: the processed-message ledger.

    Unique on (mailbox, folder, uidvalidity, uid): a position is handled once.
    """

    __tablename__ = "sighting"
    __table_args__ = (
        sa.UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
        # Each poll asks whether a server action is pending in its folder: a
        # handful of rows among every message ever seen (2 ms per poll on
        # 20,000 sightings without it). Query it through pending_action().
        # Its PostgreSQL condition is added by _partial_on_postgresql: passing
        # postgresql_where here would import SQLAlchemy's PostgreSQL dialect
        # (to validate the keyword) in every process, SQLite ones included.
        sa.Index(
            "ix_sighting_pending",
            "mailbox",
            "folder",
            "uidvalidity",
            sqlite_where=sa.text(_PENDING_SIGHTING),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", nullable=False, index=True)
    mailbox: str = Field(sa_type=_TEXT, nullable=False)
    folder: str = Field(sa_type=_TEXT, nullable=False)
    uidvalidity: int = Field(sa_type=sa.BigInteger, nullable=False)
    uid: int = Field(sa_type=sa.BigInteger, nullable=False)
    seen_at: datetime = _timestamp()
    server_action: str = Field(default=ServerAction.PENDING, sa_type=_ENUM, nullable=False)


def _partial_on_postgresql(table: sa.Table, connection: sa.Connection, **_kw: Any) -> None:
    """Give ix_sighting_pending its PostgreSQL condition before the table is created there.

    The dialect is loaded then anyway. Migration 0002 creates the same
    partial index on both databases.
    """
    if connection.dialect.name == "postgresql":
        for index in table.indexes:
            if index.name == "ix_sighting_pending":
                index.dialect_kwargs["postgresql_where"] = sa.text(_PENDING_SIGHTING)


sa.event.listen(Sighting.__table__, "before_create", _partial_on_postgresql)


class ReferenceCounter(_Table, table=True):
    """Last dossier number handed out for a year (see repositories.next_reference)."""

    __tablename__ = "reference_counter"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_number: int = Field(default=0, nullable=False)


def pending_action() -> Any:
    """``server_action = 'pending'`` with the value written literally.

    A query planner can only use the partial index ``ix_sighting_pending``
    when it can prove the query's condition implies the index's WHERE; with
    a literal that holds on every SQLite and PostgreSQL version (a bound
    parameter depends on the planner looking at bound values).
    """
    return Sighting.server_action == sa.literal_column(f"'{ServerAction.PENDING.value}'")


class Piece(_Table, table=True):
    """A file (attachment or body) filed in a dossier; bytes live in the blob store."""

    __tablename__ = "piece"
    __table_args__ = (sa.UniqueConstraint("dossier_id", "blob_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    # No separate index on dossier_id: the unique constraint starts with it.
    dossier_id: int = Field(foreign_key="dossier.id", nullable=False)
    message_pk: int = Field(foreign_key="message.id", nullable=False, index=True)
    blob_sha256: str = Field(sa_type=sa.String(64), nullable=False, index=True)
    # The name the sender gave. Data only: never used to build a path.
    filename: str | None = Field(default=None, sa_type=_TEXT, nullable=True)
    content_type: str = Field(sa_type=_TEXT, nullable=False)
    size: int = Field(sa_type=sa.BigInteger, nullable=False)
    role: str = Field(sa_type=_ENUM, nullable=False)
    warnings: list[Any] = _json_list()
    added_at: datetime = _timestamp()


class Outbox(_Table, table=True):
    """An outgoing message, fully rendered, with its delivery state.

    ``dedup_key`` says which logical reply this is so that it is queued at
    most once. Callers build it as ``"<kind>:<dossier id>:<trigger message
    pk>"`` (e.g. ``"acknowledgement:12:345"``); a digest uses
    ``"digest:<mailbox>:<period>"``.
    """

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(sa_type=_TEXT, nullable=False, unique=True)
    kind: str = Field(sa_type=_ENUM, nullable=False)
    dossier_id: int | None = Field(
        default=None, foreign_key="dossier.id", nullable=True, index=True
    )
    trigger_message_pk: int | None = Field(
        default=None, foreign_key="message.id", nullable=True, index=True
    )
    mailbox: str = Field(sa_type=_TEXT, nullable=False)  # configured mailbox it is sent from
    from_addr: str = Field(sa_type=_TEXT, nullable=False)
    to_addr: str = Field(sa_type=_TEXT, nullable=False)
    subject: str = Field(sa_type=sa.Text, nullable=False)
    message_id: str = Field(sa_type=_TEXT, nullable=False, unique=True)  # ours
    raw: bytes = Field(sa_type=sa.LargeBinary, nullable=False)  # the message as sent
    status: str = Field(default=OutboxStatus.QUEUED, sa_type=_ENUM, nullable=False)
    # Why it was not sent: a code of parsers.reasons.ReplyHold (rows written
    # before codes may hold an English sentence), and the values its wording
    # names (e.g. {"count": 3, "cap": 3} for a cap).
    suppressed_reason: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    suppressed_details: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime | None = _timestamp(nullable=True)
    # Why delivery was given up (status failed): a code of
    # parsers.reasons.DeliveryFailure; ``last_error`` holds the server's words.
    failure_reason: str | None = Field(default=None, sa_type=_ENUM, nullable=True)
    last_error: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    smtp_response: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    created_at: datetime = _timestamp()
    sent_at: datetime | None = _timestamp(nullable=True)


class Event(_Table, table=True):
    """Audit trail entry: who did what, to which dossier or message."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _timestamp(index=True)
    # e.g. "rule:dossier_reference", "staff:alice", "system"
    actor: str = Field(sa_type=_TEXT, nullable=False)
    # e.g. "dossier.created", "dossier.status_changed"
    action: str = Field(sa_type=_TEXT, nullable=False)
    dossier_id: int | None = Field(
        default=None, foreign_key="dossier.id", nullable=True, index=True
    )
    message_pk: int | None = Field(
        default=None, foreign_key="message.id", nullable=True, index=True
    )
    details: dict[str, Any] = _json_dict()


class StaffAccount(_Table, table=True):
    """A back-office login: the password is kept only as an argon2 hash.

    A removed account is disabled rather than deleted, so that ``staff:LOGIN``
    in the audit trail keeps naming one person.
    """

    __tablename__ = "staff_account"

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    display_name: str | None = Field(default=None, sa_type=_TEXT, nullable=True)
    password_hash: str = Field(sa_type=_TEXT, nullable=False)
    created_at: datetime = _timestamp()
    disabled: bool = Field(default=False, nullable=False)
