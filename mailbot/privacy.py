"""Personal data (RGPD): retention purge, legal hold, access and erasure requests.

Four service functions, each recording who did it in the audit trail:

* ``purge``: deletes what the retention rules of ``[retention]`` say has
  expired: dossiers not updated for ``<status>_days`` (never one on legal
  hold) with their messages, pieces, replies, sightings and audit entries;
  ledger rows of mail whose content was never kept after ``ledger_days``;
  quarantined mail without a dossier after ``needs_review_days``. With
  ``delete_server_copies`` the IMAP copies of the deleted candidature mail go
  too (never mail that was not for us: the mailboxes belong to staff).
* ``export_person``: everything about one address (access request) as JSON,
  the original messages and the pieces, in a directory.
* ``erase_person``: deletes the person's dossiers and mail and removes the
  address from what remains; a ``person.erased`` tombstone keeps only the
  SHA-256 of the address, so staff can prove the erasure without keeping it.
* ``set_legal_hold``: the flag that makes purge and erasure leave a dossier
  (and its blobs) alone.

Rows are deleted in one transaction; blobs only after the commit, in a
second transaction that first checks again that nothing references them (on
SQLite that transaction holds the write lock, so a poller cannot be between
writing a blob and committing the row that names it). A crash in between
leaves an orphan blob, never a row pointing at nothing. Server copies are
deleted last; a server that cannot be reached is reported, not fatal.

Foreign keys have no ON DELETE: children are deleted (or detached, when they
belong to a dossier that stays) before their parents.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import json
import logging
import os
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from imap_tools import AND, H
from imap_tools.errors import UnexpectedCommandStatusError
from sqlmodel import Session, SQLModel, col, select

from mailbot.app import App
from mailbot.config import RetentionSettings, secret
from mailbot.errors import MailbotError
from mailbot.imap import ImapError, MailboxClient
from storage import repositories as repo
from storage.db import session_scope
from storage.errors import BlobError, BlobNotFoundError
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    MailboxCursor,
    Message,
    Outbox,
    Piece,
    ServerAction,
    Sighting,
    utcnow,
)

log = logging.getLogger(__name__)

# What replaces the address in the rows an erasure leaves (other people's mail
# that copied the person, audit entries...). ASCII in raw messages.
ERASED_TEXT = "[adresse effacée]"
ERASED_BYTES = b"[adresse effacee]"

# Bound on the ids in one IN (...) list: SQLite limits bound parameters.
_IN_CHUNK = 500
_MAX_NAME = 80
_EMAIL = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")


class PrivacyError(MailbotError):
    """A privacy request that cannot be carried out as asked (unknown dossier, bad address...)."""


# --------------------------------------------------------------------------
# reports


@dataclass
class ServerCopiesReport:
    """Server copies of deleted mail in one mailbox."""

    mailbox: str
    planned: int
    deleted: int = 0
    # No longer where the ledger saw them: UIDVALIDITY changed, moved or deleted by staff.
    not_found: int = 0
    error: str | None = None


@dataclass
class PurgedDossier:
    reference: str
    status: str
    updated_at: datetime
    retention_days: int
    messages: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    blobs: int = 0


@dataclass
class PurgeReport:
    """What a purge deleted, or would delete with ``dry_run``."""

    dry_run: bool
    now: datetime
    dossiers: list[PurgedDossier] = field(default_factory=list)
    # Expired, but on legal hold: kept.
    held: list[str] = field(default_factory=list)
    ledger_messages: int = 0
    quarantine_messages: int = 0
    # Every message row, those of the dossiers included.
    messages: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    sightings: int = 0
    blobs: int = 0
    bytes: int = 0
    # Server positions to clean (``delete_server_copies``), and what happened there.
    server_copies: int = 0
    server: list[ServerCopiesReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[str]:
        return [d.reference for d in self.dossiers]

    @property
    def empty(self) -> bool:
        return not (self.dossiers or self.messages or self.blobs)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        parts = [
            f"{verb} {len(self.dossiers)} dossiers"
            + (f" ({', '.join(self.references)})" if self.dossiers else ""),
            f"{self.messages} messages ({self.ledger_messages} ledger-only, "
            f"{self.quarantine_messages} quarantined)",
            f"{self.blobs} blobs ({self.bytes} bytes)",
        ]
        if self.server_copies:
            done = sum(s.deleted for s in self.server)
            parts.append(
                f"{self.server_copies} server copies"
                + ("" if self.dry_run else f" ({done} deleted)")
            )
        if self.held:
            parts.append(f"kept on legal hold: {', '.join(self.held)}")
        for copies in self.server:
            if copies.error:
                parts.append(f"mailbox {copies.mailbox}: {copies.error}")
        parts.extend(self.errors)
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class ExportReport:
    email: str
    out_dir: Path
    dossiers: list[str] = field(default_factory=list)
    messages: int = 0
    eml_files: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    # Paths written, relative to out_dir (POSIX separators).
    files: list[str] = field(default_factory=list)
    # Digests named by the database but absent from the blob store.
    missing_blobs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"exported {len(self.dossiers)} dossiers, {self.messages} messages "
            f"({self.eml_files} .eml), {self.pieces} pieces, {self.replies} replies, "
            f"{self.events} audit entries to {self.out_dir}"
            + (f"; {len(self.missing_blobs)} files missing" if self.missing_blobs else "")
        )

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class EraseReport:
    email_sha256: str
    dossiers: list[str] = field(default_factory=list)
    # On legal hold: nothing of theirs was erased.
    refused: list[str] = field(default_factory=list)
    # Other people's dossiers holding mail this person sent: kept (the raw
    # message still names the person); the address was removed from their rows.
    other_dossiers: list[str] = field(default_factory=list)
    messages: int = 0
    pieces: int = 0
    replies: int = 0
    events: int = 0
    sightings: int = 0
    # Remaining rows from which the address was removed.
    scrubbed: int = 0
    blobs: int = 0
    bytes: int = 0
    server_copies: int = 0
    server: list[ServerCopiesReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.refused and not self.errors

    def summary(self) -> str:
        parts = [
            f"erased {len(self.dossiers)} dossiers"
            + (f" ({', '.join(self.dossiers)})" if self.dossiers else ""),
            f"{self.messages} messages, {self.replies} replies, {self.blobs} blobs",
            f"address removed from {self.scrubbed} other rows",
        ]
        if self.refused:
            parts.append(f"REFUSED (legal hold): {', '.join(self.refused)}")
        if self.other_dossiers:
            parts.append(f"mail kept in other dossiers: {', '.join(self.other_dossiers)}")
        for copies in self.server:
            if copies.error:
                parts.append(f"mailbox {copies.mailbox}: {copies.error}")
        parts.extend(self.errors)
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class LegalHoldReport:
    reference: str
    hold: bool
    changed: bool


# --------------------------------------------------------------------------
# helpers shared by the requests


def email_fingerprint(email: str) -> str:
    """SHA-256 (hex) of the normalised address, as kept in ``person.erased`` tombstones."""
    return hashlib.sha256(normalise_email(email).encode("utf-8")).hexdigest()


def normalise_email(email: str) -> str:
    address = (email or "").strip().lower()
    if not _EMAIL.fullmatch(address):
        raise PrivacyError(f"not an e-mail address: {email!r}")
    return address


def _check_actor(actor: str) -> None:
    if not actor or not actor.strip():
        raise PrivacyError("an actor is required for the audit trail (e.g. 'staff:nbataillon')")


def _chunks(values: Iterable[Any], size: int = _IN_CHUNK) -> Iterator[list[Any]]:
    items = sorted(set(values), key=str)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rows_in(
    session: Session, build: Callable[[list[Any]], Any], values: Iterable[Any]
) -> list[Any]:
    """Run ``build(chunk)`` for each chunk of ``values``; the rows of all chunks."""
    rows: list[Any] = []
    for chunk in _chunks(values):
        rows.extend(session.exec(build(chunk)).all())
    return rows


@contextlib.contextmanager
def _transaction(app: App, *, commit: bool) -> Iterator[Session]:
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _lower_text(column: Any) -> Any:
    return sa.func.lower(sa.cast(column, sa.Text), type_=sa.Text)


def _mentions(column: Any, address: str) -> Any:
    """SQL: the column's text (JSON included) contains ``address``, case ignored.

    A pre-filter only (``xmarie@x`` contains ``marie@x``): callers check each row.
    """
    return _lower_text(column).contains(address, autoescape=True)


def _address_pattern(address: str) -> re.Pattern[str]:
    # Not part of a longer address: no address character just before, none after
    # (a final dot ends a sentence).
    return re.compile(r"(?<![\w.+%-])" + re.escape(address) + r"(?![\w-]|\.\w)", re.IGNORECASE)


def _address_bytes_pattern(address: str) -> re.Pattern[bytes]:
    return re.compile(
        rb"(?<![A-Za-z0-9.+%_-])"
        + re.escape(address.encode("utf-8"))
        + rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9])",
        re.IGNORECASE,
    )


def _scrub_value(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED_TEXT, value)
    if isinstance(value, dict):
        return {_scrub_value(k, pattern): _scrub_value(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, pattern) for v in value]
    return value


def _mentions_address(value: Any, pattern: re.Pattern[str]) -> bool:
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any(
            _mentions_address(k, pattern) or _mentions_address(v, pattern) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_mentions_address(v, pattern) for v in value)
    return False


# --------------------------------------------------------------------------
# what goes with a dossier or a message


@dataclass
class _Copy:
    """One server position of a message whose server copy is to be deleted."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    moved: bool
    message_id: str | None
    sha256: str


@dataclass
class _Doomed:
    """Rows a deletion removes (ids), and the rows it only detaches."""

    dossiers: dict[int, Dossier] = field(default_factory=dict)
    messages: dict[int, int | None] = field(default_factory=dict)  # id -> dossier_id
    message_blobs: dict[int, str] = field(default_factory=dict)
    pieces: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (dossier, sha)
    outbox: dict[int, int | None] = field(default_factory=dict)  # id -> dossier_id
    events: dict[int, int | None] = field(default_factory=dict)  # id -> dossier_id
    sightings: dict[int, int] = field(default_factory=dict)  # id -> message id
    # Children of a surviving dossier that pointed at a deleted message.
    detach_events: set[int] = field(default_factory=set)
    detach_outbox: set[int] = field(default_factory=set)
    # Messages that must stay (a surviving dossier files one of their pieces),
    # and those of them to detach from the deleted dossier they belonged to.
    kept_messages: set[int] = field(default_factory=set)
    detach_messages: set[int] = field(default_factory=set)

    def blob_candidates(self) -> set[str]:
        return set(self.message_blobs.values()) | {sha for _d, sha in self.pieces.values()}

    def per_dossier(self, table: dict[int, int | None]) -> Counter[int | None]:
        return Counter(table.values())


def _collect(session: Session, dossiers: Sequence[Dossier], message_ids: Iterable[int]) -> _Doomed:
    """The dossiers, their messages and ``message_ids``, with everything hanging on them."""
    doomed = _Doomed(dossiers={d.id: d for d in dossiers if d.id is not None})
    d_ids = set(doomed.dossiers)
    rows = _rows_in(
        session,
        lambda ids: select(Message.id, Message.dossier_id, Message.raw_blob).where(
            col(Message.dossier_id).in_(ids)
        ),
        d_ids,
    )
    rows += _rows_in(
        session,
        lambda ids: select(Message.id, Message.dossier_id, Message.raw_blob).where(
            col(Message.id).in_(ids)
        ),
        message_ids,
    )
    raw_blobs: dict[int, str | None] = {}
    for message_id, dossier_id, raw_blob in rows:
        doomed.messages[message_id] = dossier_id
        raw_blobs[message_id] = raw_blob

    # A piece of a surviving dossier keeps its message (message_pk is NOT NULL).
    for _pid, piece_dossier, message_pk in _rows_in(
        session,
        lambda ids: select(Piece.id, Piece.dossier_id, Piece.message_pk).where(
            col(Piece.message_pk).in_(ids)
        ),
        doomed.messages,
    ):
        if piece_dossier not in d_ids:
            doomed.kept_messages.add(message_pk)
    for message_id in doomed.kept_messages:
        if doomed.messages.pop(message_id, None) in d_ids:
            doomed.detach_messages.add(message_id)
    doomed.message_blobs = {m: sha for m, sha in raw_blobs.items() if sha and m in doomed.messages}
    m_ids = set(doomed.messages)

    for piece_id, piece_dossier, sha in _rows_in(
        session,
        lambda ids: select(Piece.id, Piece.dossier_id, Piece.blob_sha256).where(
            col(Piece.dossier_id).in_(ids)
        ),
        d_ids,
    ):
        doomed.pieces[piece_id] = (piece_dossier, sha)

    outbox_rows = _rows_in(
        session,
        lambda ids: select(Outbox.id, Outbox.dossier_id).where(col(Outbox.dossier_id).in_(ids)),
        d_ids,
    ) + _rows_in(
        session,
        lambda ids: select(Outbox.id, Outbox.dossier_id).where(
            col(Outbox.trigger_message_pk).in_(ids)
        ),
        m_ids,
    )
    for outbox_id, outbox_dossier in outbox_rows:
        if outbox_dossier is None or outbox_dossier in d_ids:
            doomed.outbox[outbox_id] = outbox_dossier
        else:
            doomed.detach_outbox.add(outbox_id)

    event_rows = _rows_in(
        session,
        lambda ids: select(Event.id, Event.dossier_id).where(col(Event.dossier_id).in_(ids)),
        d_ids,
    ) + _rows_in(
        session,
        lambda ids: select(Event.id, Event.dossier_id).where(col(Event.message_pk).in_(ids)),
        m_ids,
    )
    for event_id, event_dossier in event_rows:
        if event_dossier is None or event_dossier in d_ids:
            doomed.events[event_id] = event_dossier
        else:
            doomed.detach_events.add(event_id)

    for sighting_id, message_pk in _rows_in(
        session,
        lambda ids: select(Sighting.id, Sighting.message_pk).where(
            col(Sighting.message_pk).in_(ids)
        ),
        m_ids,
    ):
        doomed.sightings[sighting_id] = message_pk
    return doomed


def _server_positions(session: Session, message_ids: Iterable[int]) -> list[_Copy]:
    """Where the server copies of these messages were seen (read before deleting)."""
    rows = _rows_in(
        session,
        lambda ids: (
            select(Sighting, Message.message_id, Message.sha256)
            .join(Message, col(Message.id) == col(Sighting.message_pk))
            .where(col(Sighting.message_pk).in_(ids))
        ),
        message_ids,
    )
    return [
        _Copy(
            mailbox=s.mailbox,
            folder=s.folder,
            uidvalidity=s.uidvalidity,
            uid=s.uid,
            moved=s.server_action == ServerAction.MOVED,
            message_id=message_id,
            sha256=sha,
        )
        for s, message_id, sha in sorted(rows, key=lambda r: r[0].id)
    ]


def _delete_rows(session: Session, doomed: _Doomed) -> None:
    """Delete children first: foreign keys have no ON DELETE."""

    def delete(model: type[SQLModel], ids: Iterable[int]) -> None:
        for chunk in _chunks(ids):
            session.exec(sa.delete(model).where(col(model.id).in_(chunk)))  # type: ignore[attr-defined]

    def detach(model: type[SQLModel], ids: Iterable[int], **values: Any) -> None:
        table = model.__table__  # type: ignore[attr-defined]
        for chunk in _chunks(ids):
            session.exec(
                _keep_updated_at(table, sa.update(table).where(table.c.id.in_(chunk))).values(
                    **values
                )
            )

    session.flush()
    delete(Event, doomed.events)
    detach(Event, doomed.detach_events, message_pk=None)
    delete(Outbox, doomed.outbox)
    detach(Outbox, doomed.detach_outbox, trigger_message_pk=None)
    delete(Piece, doomed.pieces)
    delete(Sighting, doomed.sightings)
    detach(Message, doomed.detach_messages, dossier_id=None)
    delete(Message, doomed.messages)
    delete(Dossier, doomed.dossiers)
    session.expunge_all()


def _keep_updated_at(table: sa.Table, statement: Any) -> Any:
    """An UPDATE that leaves ``updated_at`` as it is (no ``onupdate``).

    Retention counts from a dossier's last real change: a legal-hold flag or
    an address removed for someone else must not restart the clock.
    """
    if "updated_at" in table.c:
        return statement.values(updated_at=table.c.updated_at)
    return statement


def _unreferenced(
    session: Session,
    candidates: set[str],
    *,
    gone_pieces: Iterable[int] = (),
    gone_messages: Iterable[int] = (),
) -> set[str]:
    """The candidate digests no piece or message row (other than the gone ones) names."""
    gone_p, gone_m = set(gone_pieces), set(gone_messages)
    referenced: set[str] = set()
    for piece_id, sha in _rows_in(
        session,
        lambda shas: select(Piece.id, Piece.blob_sha256).where(col(Piece.blob_sha256).in_(shas)),
        candidates,
    ):
        if piece_id not in gone_p:
            referenced.add(sha)
    for message_id, sha in _rows_in(
        session,
        lambda shas: select(Message.id, Message.raw_blob).where(col(Message.raw_blob).in_(shas)),
        candidates,
    ):
        if message_id not in gone_m:
            referenced.add(sha)
    return candidates - referenced


def _blob_size(app: App, sha: str) -> int | None:
    try:
        return app.blobs.path_for(sha).stat().st_size
    except (OSError, BlobError):
        return None


def _sizes(app: App, shas: Iterable[str]) -> tuple[int, int]:
    """(how many of the blobs exist, their total size)."""
    count = total = 0
    for sha in shas:
        size = _blob_size(app, sha)
        if size is not None:
            count += 1
            total += size
    return count, total


def _delete_blobs(app: App, shas: set[str], errors: list[str]) -> tuple[int, int]:
    """Delete blobs that are still unreferenced, after the rows' commit; (count, bytes)."""
    if not shas:
        return 0, 0
    count = total = 0
    # The reference check and the deletions share one transaction: on SQLite
    # it holds the write lock, so no poller can file one of these blobs meanwhile.
    with session_scope(app.engine) as session:
        for sha in sorted(_unreferenced(session, shas)):
            size = _blob_size(app, sha) or 0
            try:
                if app.blobs.delete(sha):
                    count += 1
                    total += size
            except BlobError as err:
                errors.append(f"blob {sha}: {err}")
                log.error("cannot delete blob %s: %s", sha, err)
    return count, total


# --------------------------------------------------------------------------
# server copies


def _delete_server_copies(app: App, copies: Sequence[_Copy]) -> list[ServerCopiesReport]:
    by_mailbox: dict[str, list[_Copy]] = defaultdict(list)
    for copy in copies:
        by_mailbox[copy.mailbox].append(copy)
    reports = []
    for name in sorted(by_mailbox):
        report = ServerCopiesReport(mailbox=name, planned=len(by_mailbox[name]))
        reports.append(report)
        try:
            settings = app.config.settings.mailbox(name)
        except KeyError:
            report.error = "mailbox no longer in the configuration; copies left on the server"
            continue
        try:
            password = secret(settings.password_env) or ""
            with MailboxClient(settings, password) as client:
                _delete_in_mailbox(client, by_mailbox[name], report)
        except (MailbotError, OSError, imaplib.IMAP4.error, UnexpectedCommandStatusError) as err:
            report.error = f"server copies not deleted: {err}"
            log.error("mailbox %s: server copies not deleted: %s", name, err)
    return reports


def _delete_in_mailbox(
    client: MailboxClient, copies: Sequence[_Copy], report: ServerCopiesReport
) -> None:
    in_place: dict[tuple[str, int], list[_Copy]] = defaultdict(list)
    moved: list[_Copy] = []
    for copy in copies:
        if copy.moved:
            moved.append(copy)
        else:
            in_place[(copy.folder, copy.uidvalidity)].append(copy)
    uidplus = _has_uidplus(client)
    for (folder, uidvalidity), group in sorted(in_place.items()):
        if not client.box.folder.exists(folder):
            report.not_found += len(group)  # folder deleted: so are the copies
            continue
        state = client.select(folder)
        if state.uidvalidity != uidvalidity:
            # UIDs of another UIDVALIDITY name other messages now: never delete by them.
            report.not_found += len(group)
            continue
        wanted = sorted({c.uid for c in group})
        present = _existing_uids(client, wanted)
        _expunge(client, present, uidplus=uidplus)
        report.deleted += len(present)
        report.not_found += len(group) - len(present)
    if moved:
        _delete_moved(client, moved, report, uidplus=uidplus)


def _delete_moved(
    client: MailboxClient, copies: Sequence[_Copy], report: ServerCopiesReport, *, uidplus: bool
) -> None:
    """Copies moved to ``processed_folder`` have new UIDs: find them by Message-ID and hash."""
    folder = client.settings.processed_folder
    if not folder or not client.box.folder.exists(folder):
        report.not_found += len(copies)
        return
    client.select(folder)
    for copy in copies:
        message_id = copy.message_id or ""
        if not message_id or not message_id.isascii() or '"' in message_id or "\\" in message_id:
            report.not_found += 1
            continue
        candidates = sorted(
            {
                int(u)
                for u in client.box.uids(
                    AND(header=H("Message-ID", message_id.strip())), charset=None
                )
            }
        )
        # Only the very same bytes: a Message-ID can be reused by a careless sender.
        matches = [
            fetched.uid
            for fetched in client.fetch(candidates, batch=50)
            if hashlib.sha256(fetched.raw).hexdigest() == copy.sha256
        ]
        if matches:
            _expunge(client, matches, uidplus=uidplus)
            report.deleted += 1
        else:
            report.not_found += 1


def _existing_uids(client: MailboxClient, uids: Sequence[int]) -> list[int]:
    present: set[int] = set()
    for chunk in _chunks(uids):
        found = client.box.uids("UID " + ",".join(str(u) for u in chunk), charset=None)
        present.update(int(u) for u in found)
    return sorted(present & set(uids))


def _has_uidplus(client: MailboxClient) -> bool:
    """Ask again: imaplib keeps the pre-login list, which often lacks UIDPLUS (Dovecot)."""
    status, data = client.box.client.capability()
    if status != "OK":
        return False
    words = b" ".join(d for d in data if isinstance(d, bytes)).upper().split()
    return b"UIDPLUS" in words


def _expunge(client: MailboxClient, uids: Sequence[int], *, uidplus: bool) -> None:
    """Delete exactly these UIDs.

    With UIDPLUS, UID EXPUNGE removes only them; a plain EXPUNGE (imap-tools'
    ``delete``, the fallback) also removes whatever the mailbox owner had
    marked \\Deleted without expunging yet.
    """
    if not uids:
        return
    box = client.box
    for chunk in _chunks(uids):
        uid_set = ",".join(str(u) for u in chunk)
        if uidplus:
            for command in (
                ("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)"),
                ("EXPUNGE", uid_set),
            ):
                status, data = box.client.uid(*command)
                if status != "OK":
                    raise ImapError(f"{client.settings.name}: UID {command[0]} failed: {data!r}")
        else:
            box.delete(uid_set)


# --------------------------------------------------------------------------
# purge


def purge(
    app: App, *, now: datetime | None = None, dry_run: bool = False, actor: str
) -> PurgeReport:
    """Delete what the retention rules say has expired (see the module docstring).

    ``dry_run`` computes the same report and changes nothing (no audit entry
    either). Dossiers expired but on legal hold are listed in ``held``.
    """
    _check_actor(actor)
    now = now or utcnow()
    retention = app.config.settings.retention
    report = PurgeReport(dry_run=dry_run, now=now)
    with _transaction(app, commit=not dry_run) as session:
        expired = _expired_dossiers(session, retention, now, report)
        ledger = _expired_messages(session, retention.ledger_days, now, content=False)
        quarantine = _expired_messages(session, retention.needs_review_days, now, content=True)
        doomed = _collect(session, [d for d, _days in expired], ledger | quarantine)
        copies: list[_Copy] = []
        if retention.delete_server_copies:
            # Only mail the service kept: what was not for us stays in the staff's mailbox.
            with_content = {m for m in doomed.messages if m in doomed.message_blobs}
            copies = _server_positions(session, with_content)
        blobs = _unreferenced(
            session,
            doomed.blob_candidates(),
            gone_pieces=doomed.pieces,
            gone_messages=doomed.messages,
        )
        report.blobs, report.bytes = _sizes(app, blobs)
        report.ledger_messages = len(ledger & set(doomed.messages))
        report.quarantine_messages = len(quarantine & set(doomed.messages))
        report.messages = len(doomed.messages)
        report.pieces = len(doomed.pieces)
        report.replies = len(doomed.outbox)
        report.events = len(doomed.events)
        report.sightings = len(doomed.sightings)
        report.server_copies = len(copies)
        report.dossiers = _dossier_counts(app, doomed, expired, blobs)
        if dry_run:
            return report
        _delete_rows(session, doomed)
        for item in report.dossiers:
            repo.record_event(
                session=session,
                actor=actor,
                action="dossier.purged",
                details={
                    "reference": item.reference,
                    "status": item.status,
                    "updated_at": _iso(item.updated_at),
                    "retention_days": item.retention_days,
                    "counts": {
                        "messages": item.messages,
                        "pieces": item.pieces,
                        "replies": item.replies,
                        "events": item.events,
                        "blobs": item.blobs,
                    },
                },
            )
        if report.ledger_messages or report.quarantine_messages:
            repo.record_event(
                session=session,
                actor=actor,
                action="messages.purged",
                details={
                    "ledger_messages": report.ledger_messages,
                    "quarantine_messages": report.quarantine_messages,
                    "ledger_days": retention.ledger_days,
                    "quarantine_days": retention.needs_review_days,
                },
            )
    # What was really deleted: a blob filed again meanwhile stays.
    report.blobs, report.bytes = _delete_blobs(app, blobs, report.errors)
    if copies:
        report.server = _delete_server_copies(app, copies)
    if not report.empty:
        log.info("retention purge: %s", report.summary())
    return report


def _expired_dossiers(
    session: Session, retention: RetentionSettings, now: datetime, report: PurgeReport
) -> list[tuple[Dossier, int]]:
    expired: list[tuple[Dossier, int]] = []
    for status in DossierStatus:
        days = getattr(retention, f"{status.value}_days", 0)
        if days <= 0:
            continue  # kept forever
        cutoff = now - timedelta(days=days)
        rows = session.exec(
            select(Dossier)
            .where(Dossier.status == status.value, col(Dossier.updated_at) < cutoff)
            .order_by(col(Dossier.year), col(Dossier.number))
            # PostgreSQL: a legal hold set meanwhile waits for this transaction.
            .with_for_update()
        ).all()
        for dossier in rows:
            if dossier.legal_hold:
                report.held.append(dossier.reference)
            else:
                expired.append((dossier, days))
    expired.sort(key=lambda item: (item[0].year, item[0].number))
    report.held.sort()
    return expired


def _expired_messages(session: Session, days: int, now: datetime, *, content: bool) -> set[int]:
    """Messages in no dossier, whose content is (quarantine) or is not (ledger) kept."""
    if days <= 0:
        return set()
    cutoff = now - timedelta(days=days)
    kept = col(Message.raw_blob).is_not(None) if content else col(Message.raw_blob).is_(None)
    return set(
        session.exec(
            select(Message.id).where(
                col(Message.dossier_id).is_(None), kept, col(Message.updated_at) < cutoff
            )
        ).all()
    )


def _dossier_counts(
    app: App, doomed: _Doomed, expired: Sequence[tuple[Dossier, int]], blobs: set[str]
) -> list[PurgedDossier]:
    messages = doomed.per_dossier(doomed.messages)
    replies = doomed.per_dossier(doomed.outbox)
    events = doomed.per_dossier(doomed.events)
    pieces = Counter(d for d, _sha in doomed.pieces.values())
    shas: dict[int, set[str]] = defaultdict(set)
    for d, sha in doomed.pieces.values():
        shas[d].add(sha)
    for message_id, sha in doomed.message_blobs.items():
        dossier_id = doomed.messages.get(message_id)
        if dossier_id is not None:
            shas[dossier_id].add(sha)
    out = []
    for dossier, days in expired:
        out.append(
            PurgedDossier(
                reference=dossier.reference,
                status=dossier.status,
                updated_at=dossier.updated_at,
                retention_days=days,
                messages=messages.get(dossier.id, 0),
                pieces=pieces.get(dossier.id, 0),  # type: ignore[arg-type]
                replies=replies.get(dossier.id, 0),
                events=events.get(dossier.id, 0),
                blobs=_sizes(app, shas[dossier.id] & blobs)[0],  # type: ignore[index]
            )
        )
    return out


# --------------------------------------------------------------------------
# legal hold


def set_legal_hold(
    app: App, reference: str, hold: bool, *, actor: str, note: str | None = None
) -> LegalHoldReport:
    """Set or clear a dossier's legal hold, with an audit entry.

    The dossier's ``updated_at`` is left alone: the hold suspends retention,
    it does not restart it.
    """
    _check_actor(actor)
    wanted = (reference or "").strip().upper()
    with session_scope(app.engine) as session:
        dossier = session.exec(
            select(Dossier).where(Dossier.reference == wanted).with_for_update()
        ).first()
        if dossier is None:
            raise PrivacyError(f"no dossier {reference!r}")
        previous = bool(dossier.legal_hold)
        table = Dossier.__table__  # type: ignore[attr-defined]
        session.exec(
            _keep_updated_at(table, sa.update(table).where(table.c.id == dossier.id)).values(
                legal_hold=bool(hold)
            )
        )
        repo.record_event(
            session=session,
            actor=actor,
            action="dossier.legal_hold_set" if hold else "dossier.legal_hold_cleared",
            dossier=dossier,
            details={"reference": dossier.reference, "previous": previous, "note": note},
        )
        return LegalHoldReport(
            reference=dossier.reference, hold=bool(hold), changed=previous != hold
        )


# --------------------------------------------------------------------------
# finding a person's data


@dataclass
class _Person:
    address: str
    dossiers: list[Dossier]
    messages: list[Message]
    outbox: list[Outbox]
    events: list[Event]


def _person_dossiers(session: Session, address: str, *, lock: bool = False) -> list[Dossier]:
    """Dossiers whose applicant (sender) or contact_email field is ``address``."""
    query = select(Dossier).where(
        sa.or_(sa.func.lower(Dossier.sender) == address, _mentions(Dossier.fields, address))
    )
    if lock:
        query = query.with_for_update()
    found = []
    for dossier in session.exec(query.order_by(col(Dossier.year), col(Dossier.number))).all():
        contact = str((dossier.fields or {}).get("contact_email") or "").strip().lower()
        if (dossier.sender or "").strip().lower() == address or contact == address:
            found.append(dossier)
    return found


def _find_person(session: Session, address: str) -> _Person:
    dossiers = _person_dossiers(session, address)
    d_ids = {d.id for d in dossiers}
    messages = {
        m.id: m
        for m in session.exec(select(Message).where(sa.func.lower(Message.sender) == address)).all()
    }
    for chunk in _chunks(d_ids):
        for m in session.exec(select(Message).where(col(Message.dossier_id).in_(chunk))).all():
            messages[m.id] = m
    outbox = {
        o.id: o
        for o in session.exec(select(Outbox).where(sa.func.lower(Outbox.to_addr) == address)).all()
    }
    for chunk in _chunks(d_ids):
        for o in session.exec(select(Outbox).where(col(Outbox.dossier_id).in_(chunk))).all():
            outbox[o.id] = o
    events: dict[int, Event] = {}
    for chunk in _chunks(d_ids):
        for e in session.exec(select(Event).where(col(Event.dossier_id).in_(chunk))).all():
            events[e.id] = e  # type: ignore[index]
    for chunk in _chunks(messages):
        for e in session.exec(select(Event).where(col(Event.message_pk).in_(chunk))).all():
            events[e.id] = e  # type: ignore[index]
    pattern = _address_pattern(address)
    for e in session.exec(
        select(Event).where(
            sa.or_(_mentions(Event.details, address), _mentions(Event.actor, address))
        )
    ).all():
        if _mentions_address(e.details, pattern) or _mentions_address(e.actor, pattern):
            events[e.id] = e  # type: ignore[index]
    return _Person(
        address=address,
        dossiers=dossiers,
        messages=sorted(messages.values(), key=lambda m: (m.first_seen_at, m.id)),
        outbox=sorted(outbox.values(), key=lambda o: (o.created_at, o.id)),
        events=sorted(events.values(), key=lambda e: (e.at, e.id)),
    )


# --------------------------------------------------------------------------
# access request


_README = """\
Export des données personnelles — label Béthune Smart City
==========================================================

Adresse concernée : {email}
Date de l'export : {date}
Responsable du traitement : {controller}
Contact pour exercer vos droits : {contact}

Ce dossier contient toutes les données que le service de candidature au
label « Béthune Smart City » conserve au sujet de cette adresse
électronique :

- person.json : les dossiers de candidature (référence, statut, informations
  lues dans le dossier d'intention, dates), les messages reçus (date, objet,
  décision du tri automatique et ses raisons), les réponses envoyées (date,
  objet) et le journal des opérations les concernant. Fichier texte au
  format JSON, lisible avec un éditeur de texte.
- messages/ : les messages reçus, tels qu'ils sont arrivés (fichiers .eml,
  à ouvrir avec un logiciel de messagerie).
- pieces/ : les pièces jointes classées dans chaque dossier, un
  sous-dossier par référence. Les noms de fichiers ont été simplifiés et
  numérotés ; le nom d'origine figure dans person.json.
- reponses/ : les réponses envoyées par le service (fichiers .eml).

L'empreinte SHA-256 indiquée pour chaque fichier dans person.json permet de
vérifier qu'il est identique à celui que conserve le service.

Durée de conservation : {retention}.
"""


def export_person(app: App, email: str, out_dir: Path | str) -> ExportReport:
    """Write everything stored about ``email`` (case ignored) into ``out_dir``.

    ``out_dir`` is created (mode 0700) and must be empty if it exists.
    File names are built from a counter and a sanitised form of the original
    name, never from the name itself.
    """
    address = normalise_email(email)
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PrivacyError(f"{target} exists and is not an empty directory")
    settings = app.config.settings
    report = ExportReport(email=address, out_dir=target)
    with _transaction(app, commit=False) as session:
        person = _find_person(session, address)
        references = {d.id: d.reference for d in person.dossiers}
        for m in person.messages:
            if m.dossier_id is not None and m.dossier_id not in references:
                other = session.get(Dossier, m.dossier_id)
                if other is not None:
                    references[other.id] = other.reference
        pieces_by_dossier: dict[int, list[Piece]] = {
            d.id: repo.list_pieces(session=session, dossier=d)  # type: ignore[misc]
            for d in person.dossiers
        }
        mailboxes = {
            m.id: repo.mailboxes_for_message(session=session, message=m) for m in person.messages
        }
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    writer = _ExportWriter(app, target, report)

    dossiers_json = []
    for dossier in person.dossiers:
        pieces_json = []
        folder = f"pieces/{_safe_part(dossier.reference, 'dossier')}"
        for number, piece in enumerate(pieces_by_dossier[dossier.id], start=1):  # type: ignore[index]
            path = writer.blob(
                folder, safe_filename(piece.filename, counter=number), piece.blob_sha256
            )
            report.pieces += 1
            pieces_json.append(
                {
                    "file": path,
                    "original_name": piece.filename,
                    "role": piece.role,
                    "content_type": piece.content_type,
                    "size": piece.size,
                    "sha256": piece.blob_sha256,
                    "added_at": _iso(piece.added_at),
                }
            )
        dossiers_json.append(
            {
                "reference": dossier.reference,
                "status": dossier.status,
                "status_note": dossier.status_note,
                "legal_hold": dossier.legal_hold,
                "sender": dossier.sender,
                "sender_name": dossier.sender_name,
                "received_at": _iso(dossier.received_at),
                "updated_at": _iso(dossier.updated_at),
                "completed_at": _iso(dossier.completed_at),
                "fields": dossier.fields,
                "missing": dossier.missing,
                "evidence": dossier.evidence,
                "pieces": pieces_json,
            }
        )
        report.dossiers.append(dossier.reference)

    messages_json = []
    for number, message in enumerate(person.messages, start=1):
        path = None
        if message.raw_blob:
            name = safe_filename(
                (message.subject or "message") + ".eml", counter=number, default="message.eml"
            )
            path = writer.blob("messages", name, message.raw_blob)
            if path:
                report.eml_files += 1
        messages_json.append(
            {
                "file": path,
                "sha256": message.raw_blob,
                "message_id": message.message_id,
                "sender": message.sender,
                "sender_name": message.sender_name,
                "subject": message.subject,
                "date": _iso(message.date_header),
                "received_at": _iso(message.first_seen_at),
                "verdict": message.verdict,
                "status": message.status,
                "rule_trace": message.rule_trace,
                "warnings": message.warnings,
                "error": message.error,
                "headers": message.headers,
                "dossier": references.get(message.dossier_id),  # type: ignore[arg-type]
                "mailboxes": mailboxes.get(message.id, []),
                "content_kept": message.raw_blob is not None,
            }
        )
    report.messages = len(person.messages)

    replies_json = []
    for number, reply in enumerate(person.outbox, start=1):
        path = writer.data(
            "reponses", safe_filename(f"{reply.kind}.eml", counter=number), reply.raw
        )
        replies_json.append(
            {
                "file": path,
                "sha256": hashlib.sha256(reply.raw).hexdigest(),
                "kind": reply.kind,
                "to": reply.to_addr,
                "from": reply.from_addr,
                "subject": reply.subject,
                "status": reply.status,
                "created_at": _iso(reply.created_at),
                "sent_at": _iso(reply.sent_at),
                "dossier": references.get(reply.dossier_id),  # type: ignore[arg-type]
            }
        )
    report.replies = len(person.outbox)

    events_json = [
        {
            "at": _iso(event.at),
            "actor": event.actor,
            "action": event.action,
            "dossier": references.get(event.dossier_id),  # type: ignore[arg-type]
            "details": event.details,
        }
        for event in person.events
    ]
    report.events = len(person.events)

    exported_at = utcnow()
    document = {
        "email": address,
        "exported_at": _iso(exported_at),
        "controller": settings.replies.privacy_controller,
        "contact": settings.replies.privacy_contact,
        "retention": settings.replies.privacy_retention,
        "dossiers": dossiers_json,
        "messages": messages_json,
        "replies": replies_json,
        "events": events_json,
        "missing_files": report.missing_blobs,
    }
    text = json.dumps(_jsonable(document), ensure_ascii=False, indent=2) + "\n"
    writer.data("", "person.json", text.encode("utf-8"))
    readme = _README.format(
        email=address,
        date=exported_at.isoformat(timespec="seconds"),
        controller=settings.replies.privacy_controller,
        contact=settings.replies.privacy_contact,
        retention=settings.replies.privacy_retention,
    )
    writer.data("", "LISEZMOI.txt", readme.encode("utf-8"))
    log.info("export-person: %s", report.summary().replace(address, "<address>"))
    return report


class _ExportWriter:
    """Writes files strictly inside the export directory, never over an existing one."""

    def __init__(self, app: App, root: Path, report: ExportReport) -> None:
        self.app = app
        self.root = root
        self.real_root = root.resolve()
        self.report = report

    def blob(self, folder: str, name: str, sha: str) -> str | None:
        try:
            data = self.app.blobs.get(sha)
        except BlobNotFoundError:
            self.report.missing_blobs.append(sha)
            return None
        return self.data(folder, name, data)

    def data(self, folder: str, name: str, data: bytes) -> str:
        directory = self.root / folder if folder else self.root
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / name
        # Belt and braces: the name is sanitised, and the result must still be ours.
        if path.resolve().parent != directory.resolve() or not path.resolve().is_relative_to(
            self.real_root
        ):
            raise PrivacyError(f"refusing to write outside {self.root}: {name!r}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        relative = path.relative_to(self.root).as_posix()
        self.report.files.append(relative)
        return relative


def _safe_part(text: str | None, default: str) -> str:
    value = unicodedata.normalize("NFKD", text or "")
    value = "".join(ch for ch in value if not unicodedata.combining(ch))
    value = value.encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", value)
    value = re.sub(r"\.{2,}", ".", value)
    value = re.sub(r"_{2,}", "_", value).strip("._-")
    return value or default


def safe_filename(name: str | None, *, counter: int, default: str = "piece") -> str:
    """``0007-nom_du_fichier.pdf``: ASCII letters, digits, ``._-`` only, no ``..``.

    The counter prefix keeps names unique and makes hidden or reserved names
    (``.htaccess``, ``CON``) impossible; the extension survives when short.
    """
    cleaned = _safe_part(name, default)
    stem, dot, ext = cleaned.rpartition(".")
    if dot and stem and 0 < len(ext) <= 10:
        cleaned = f"{stem[: _MAX_NAME - len(ext) - 1].rstrip('._-') or default}.{ext}"
    else:
        cleaned = cleaned[:_MAX_NAME].rstrip("._-") or default
    return f"{counter:04d}-{cleaned}"


# --------------------------------------------------------------------------
# erasure request


def _protected(
    held_dossiers: set[int], held_messages: set[int]
) -> dict[type[SQLModel], Callable[[Any], bool]]:
    """The tables searched for the address after an erasure, each with a test
    for the rows to leave alone (they belong to a dossier on legal hold)."""
    return {
        Dossier: lambda r: r.id in held_dossiers,
        Message: lambda r: r.dossier_id in held_dossiers,
        Piece: lambda r: r.dossier_id in held_dossiers,
        Outbox: lambda r: r.dossier_id in held_dossiers or r.trigger_message_pk in held_messages,
        Event: lambda r: r.dossier_id in held_dossiers or r.message_pk in held_messages,
        Sighting: lambda r: r.message_pk in held_messages,
        MailboxCursor: lambda r: False,
    }


def erase_person(app: App, email: str, *, actor: str) -> EraseReport:
    """Erase everything about ``email`` except dossiers on legal hold (refused, listed).

    Deleted: the person's dossiers (as applicant or ``contact_email``) with
    all their messages, pieces, replies and audit entries; the person's other
    messages (not for us, quarantined); replies addressed to them; blobs no
    longer referenced. The address is then replaced by ``ERASED_TEXT`` in
    every remaining row (other people's mail that copied them, audit
    entries). A ``person.erased`` event keeps the SHA-256 of the address,
    the references and the counts. Mail the person sent into someone else's
    dossier stays with that dossier (listed in ``other_dossiers``).
    """
    _check_actor(actor)
    address = normalise_email(email)
    fingerprint = hashlib.sha256(address.encode("utf-8")).hexdigest()
    report = EraseReport(email_sha256=fingerprint)
    retention = app.config.settings.retention
    with session_scope(app.engine) as session:
        dossiers = _person_dossiers(session, address, lock=True)
        held = [d for d in dossiers if d.legal_hold]
        erased = [d for d in dossiers if not d.legal_hold]
        held_ids = {d.id for d in held}
        mine = {d.id for d in dossiers}
        own = session.exec(
            select(Message.id, Message.dossier_id).where(sa.func.lower(Message.sender) == address)
        ).all()
        free = {m for m, dossier_id in own if dossier_id is None}
        elsewhere = {dossier_id for _m, dossier_id in own if dossier_id not in mine and dossier_id}
        doomed = _collect(session, erased, free)
        # Replies to the person outside any dossier (none in practice) go too.
        for outbox_id in session.exec(
            select(Outbox.id).where(
                sa.func.lower(Outbox.to_addr) == address, col(Outbox.dossier_id).is_(None)
            )
        ).all():
            doomed.outbox.setdefault(outbox_id, None)
        copies: list[_Copy] = []
        if retention.delete_server_copies:
            copies = _server_positions(session, set(doomed.message_blobs))
        blobs = _unreferenced(
            session,
            doomed.blob_candidates(),
            gone_pieces=doomed.pieces,
            gone_messages=doomed.messages,
        )
        report.blobs, report.bytes = _sizes(app, blobs)
        held_messages = set(
            _rows_in(
                session,
                lambda ids: select(Message.id).where(col(Message.dossier_id).in_(ids)),
                held_ids,
            )
        )
        report.dossiers = [d.reference for d in erased]
        report.refused = [d.reference for d in held]
        report.other_dossiers = sorted(
            d.reference for d in (session.get(Dossier, i) for i in elsewhere) if d is not None
        )
        report.messages = len(doomed.messages)
        report.pieces = len(doomed.pieces)
        report.replies = len(doomed.outbox)
        report.events = len(doomed.events)
        report.sightings = len(doomed.sightings)
        report.server_copies = len(copies)

        _delete_rows(session, doomed)
        report.scrubbed = _scrub(session, address, _protected(held_ids, held_messages))
        repo.record_event(
            session=session,
            actor=actor,
            action="person.erased",
            details={
                "email_sha256": fingerprint,
                "dossiers": report.dossiers,
                "refused": report.refused,
                "counts": {
                    "dossiers": len(report.dossiers),
                    "messages": report.messages,
                    "pieces": report.pieces,
                    "replies": report.replies,
                    "events": report.events,
                    "blobs": report.blobs,
                    "scrubbed_rows": report.scrubbed,
                },
            },
        )
    report.blobs, report.bytes = _delete_blobs(app, blobs, report.errors)
    if copies:
        report.server = _delete_server_copies(app, copies)
    log.info("erase-person %s…: %s", fingerprint[:12], report.summary())
    return report


def _scrub(
    session: Session, address: str, protected: dict[type[SQLModel], Callable[[Any], bool]]
) -> int:
    """Replace the address in every text, JSON and raw-message column left; rows changed."""
    pattern = _address_pattern(address)
    changed: set[tuple[str, int]] = set()
    for model, is_protected in protected.items():
        table = model.__table__  # type: ignore[attr-defined]
        text_columns = [c for c in table.columns if isinstance(c.type, (sa.String, sa.JSON))]
        binary_columns = [c for c in table.columns if isinstance(c.type, sa.LargeBinary)]
        if text_columns:
            query = select(model).where(sa.or_(*(_mentions(c, address) for c in text_columns)))
            for row in session.exec(query).all():
                if is_protected(row):
                    continue
                values = {}
                for column in text_columns:
                    value = getattr(row, column.key)
                    if _mentions_address(value, pattern):
                        values[column.key] = _scrub_value(value, pattern)
                if values:
                    _update_row(session, table, row.id, values)
                    changed.add((table.name, row.id))
        if binary_columns:
            for row_id in _scrub_binary(session, model, binary_columns, address, is_protected):
                changed.add((table.name, row_id))
    session.expunge_all()
    return len(changed)


def _scrub_binary(
    session: Session,
    model: type[SQLModel],
    columns: Sequence[sa.Column[Any]],
    address: str,
    is_protected: Callable[[Any], bool],
) -> list[int]:
    """Scan raw messages (our replies, digests) here: LIKE on bytes is not portable."""
    pattern = _address_bytes_pattern(address)
    table = model.__table__  # type: ignore[attr-defined]
    changed: list[int] = []
    ids = session.exec(select(model.id)).all()  # type: ignore[attr-defined]
    for chunk in _chunks(ids, 50):
        for row in session.exec(select(model).where(col(model.id).in_(chunk))).all():  # type: ignore[attr-defined]
            if is_protected(row):
                continue
            values = {}
            for column in columns:
                value = getattr(row, column.key)
                if isinstance(value, bytes) and pattern.search(value):
                    values[column.key] = pattern.sub(ERASED_BYTES, value)
            if values:
                _update_row(session, table, row.id, values)
                changed.append(row.id)
        session.expunge_all()
    return changed


def _update_row(session: Session, table: sa.Table, row_id: int, values: dict[str, Any]) -> None:
    session.exec(
        _keep_updated_at(table, sa.update(table).where(table.c.id == row_id)).values(**values)
    )
