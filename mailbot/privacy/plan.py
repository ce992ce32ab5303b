"""The one deletion plan behind purge and erasure: collect, then execute.

``DeletionPlan.collect`` reads, in the caller's transaction, everything a
deletion takes with it: dossiers, their messages (and the loose messages
named), pieces, replies, audit entries and sightings; the rows of a
surviving dossier that only need detaching; the blobs nothing will name
any more; and, when asked, the server positions of the deleted mail.

Executing goes in three steps, in this order:

1. ``delete_rows``, in the caller's transaction (children first: foreign
   keys have no ON DELETE);
2. after that commit, ``delete_blobs_and_server_copies`` deletes the blobs
   in a second transaction that first checks again that nothing references
   them (on SQLite that transaction holds the write lock, so a poller cannot
   be between writing a blob and committing the row that names it); a crash
   in between leaves an orphan blob, never a row pointing at nothing;
3. then the server copies; a server that cannot be reached is reported,
   not fatal.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from mailbot.app import App
from mailbot.privacy.reports import DeletionReport
from mailbot.privacy.rows import chunked, keep_updated_at, select_in_chunks
from mailbot.privacy.server_copies import (
    ServerCopy,
    delete_server_copies,
    find_server_copies,
)
from storage.db import session_scope
from storage.errors import BlobError
from storage.models import Dossier, Event, Message, Outbox, Piece, Sighting

log = logging.getLogger(__name__)


@dataclass
class DeletionPlan:
    """Rows a deletion removes (ids), the rows it only detaches, the blobs and
    server copies that go after the commit."""

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
    # Digests no row names once the rows above are gone.
    blobs: set[str] = field(default_factory=set)
    server_copies: list[ServerCopy] = field(default_factory=list)

    # -- collect ------------------------------------------------------------------

    @classmethod
    def collect(
        cls,
        session: Session,
        *,
        dossiers: Sequence[Dossier],
        message_ids: Iterable[int],
        reply_ids: Iterable[int] = (),
        with_server_copies: bool,
        server_copies_of_ledger: bool = False,
    ) -> DeletionPlan:
        """The dossiers, their messages, ``message_ids`` and the replies
        ``reply_ids`` (outside any dossier), with everything hanging on them.

        With ``with_server_copies``, also where the server copies of the
        deleted mail whose content was kept were seen: mail that was not for
        us (no content kept) stays in the staff's mailbox, unless
        ``server_copies_of_ledger`` (an erasure takes the person's mail).
        """
        plan = cls(dossiers={d.id: d for d in dossiers if d.id is not None})
        plan._collect_messages(session, message_ids)
        plan._collect_children(session)
        for reply_id in reply_ids:
            plan.outbox.setdefault(reply_id, None)
        if with_server_copies:
            wanted = set(plan.messages) if server_copies_of_ledger else set(plan.message_blobs)
            plan.server_copies = find_server_copies(session, wanted)
        plan.blobs = unreferenced_blobs(
            session, plan.blob_candidates(), gone_pieces=plan.pieces, gone_messages=plan.messages
        )
        return plan

    def _collect_messages(self, session: Session, message_ids: Iterable[int]) -> None:
        dossier_ids = set(self.dossiers)
        rows = select_in_chunks(
            session,
            lambda ids: select(Message.id, Message.dossier_id, Message.raw_blob).where(
                col(Message.dossier_id).in_(ids)
            ),
            dossier_ids,
        )
        rows += select_in_chunks(
            session,
            lambda ids: select(Message.id, Message.dossier_id, Message.raw_blob).where(
                col(Message.id).in_(ids)
            ),
            message_ids,
        )
        raw_blobs: dict[int, str | None] = {}
        for message_id, dossier_id, raw_blob in rows:
            self.messages[message_id] = dossier_id
            raw_blobs[message_id] = raw_blob

        # A piece of a surviving dossier keeps its message (message_pk is NOT NULL).
        for _piece_id, piece_dossier, message_pk in select_in_chunks(
            session,
            lambda ids: select(Piece.id, Piece.dossier_id, Piece.message_pk).where(
                col(Piece.message_pk).in_(ids)
            ),
            self.messages,
        ):
            if piece_dossier not in dossier_ids:
                self.kept_messages.add(message_pk)
        for message_id in self.kept_messages:
            if self.messages.pop(message_id, None) in dossier_ids:
                self.detach_messages.add(message_id)
        self.message_blobs = {m: sha for m, sha in raw_blobs.items() if sha and m in self.messages}

    def _collect_children(self, session: Session) -> None:
        """Pieces, replies, audit entries and sightings of the doomed dossiers and messages."""
        dossier_ids, message_ids = set(self.dossiers), set(self.messages)
        for piece_id, piece_dossier, sha in select_in_chunks(
            session,
            lambda ids: select(Piece.id, Piece.dossier_id, Piece.blob_sha256).where(
                col(Piece.dossier_id).in_(ids)
            ),
            dossier_ids,
        ):
            self.pieces[piece_id] = (piece_dossier, sha)

        self.outbox, self.detach_outbox = _rows_hanging_on(
            session, model=Outbox, message_column=Outbox.trigger_message_pk, plan=self
        )
        self.events, self.detach_events = _rows_hanging_on(
            session, model=Event, message_column=Event.message_pk, plan=self
        )
        for sighting_id, message_pk in select_in_chunks(
            session,
            lambda ids: select(Sighting.id, Sighting.message_pk).where(
                col(Sighting.message_pk).in_(ids)
            ),
            message_ids,
        ):
            self.sightings[sighting_id] = message_pk

    def blob_candidates(self) -> set[str]:
        return set(self.message_blobs.values()) | {sha for _d, sha in self.pieces.values()}

    def per_dossier(self, table: dict[int, int | None]) -> Counter[int | None]:
        return Counter(table.values())

    def count_into(self, app: App, report: DeletionReport) -> None:
        """What the plan will delete; blobs and bytes are those present in the store now."""
        report.messages = len(self.messages)
        report.pieces = len(self.pieces)
        report.replies = len(self.outbox)
        report.events = len(self.events)
        report.sightings = len(self.sightings)
        report.server_copies = len(self.server_copies)
        report.blobs, report.bytes = blob_sizes(app, self.blobs)

    # -- execute ------------------------------------------------------------------

    def delete_rows(self, session: Session) -> None:
        """Delete children first: foreign keys have no ON DELETE."""

        def delete(model: type[SQLModel], ids: Iterable[int]) -> None:
            for chunk in chunked(ids):
                session.exec(sa.delete(model).where(col(model.id).in_(chunk)))  # type: ignore[attr-defined]

        def detach(model: type[SQLModel], ids: Iterable[int], **values: Any) -> None:
            table = model.__table__  # type: ignore[attr-defined]
            for chunk in chunked(ids):
                session.exec(
                    keep_updated_at(table, sa.update(table).where(table.c.id.in_(chunk))).values(
                        **values
                    )
                )

        session.flush()
        delete(Event, self.events)
        detach(Event, self.detach_events, message_pk=None)
        delete(Outbox, self.outbox)
        detach(Outbox, self.detach_outbox, trigger_message_pk=None)
        delete(Piece, self.pieces)
        delete(Sighting, self.sightings)
        detach(Message, self.detach_messages, dossier_id=None)
        delete(Message, self.messages)
        delete(Dossier, self.dossiers)
        session.expunge_all()

    def delete_blobs_and_server_copies(self, app: App, report: DeletionReport) -> None:
        """After the rows' commit: blobs still unreferenced, then server copies."""
        # What was really deleted: a blob filed again meanwhile stays.
        report.blobs, report.bytes = delete_unreferenced_blobs(app, self.blobs, report.errors)
        if self.server_copies:
            report.server = delete_server_copies(app, self.server_copies)


def _rows_hanging_on(
    session: Session, *, model: type[Outbox] | type[Event], message_column: Any, plan: DeletionPlan
) -> tuple[dict[int, int | None], set[int]]:
    """Replies or audit entries naming one of the plan's dossiers or messages.

    Those of a deleted dossier, or of none, go (id -> dossier id); those of a
    surviving dossier only pointed at a deleted message: they are detached.
    """
    dossier_ids, message_ids = set(plan.dossiers), set(plan.messages)
    rows = select_in_chunks(
        session,
        lambda ids: select(model.id, model.dossier_id).where(col(model.dossier_id).in_(ids)),
        dossier_ids,
    ) + select_in_chunks(
        session,
        lambda ids: select(model.id, model.dossier_id).where(col(message_column).in_(ids)),
        message_ids,
    )
    deleted: dict[int, int | None] = {}
    detached: set[int] = set()
    for row_id, dossier_id in rows:
        if dossier_id is None or dossier_id in dossier_ids:
            deleted[row_id] = dossier_id
        else:
            detached.add(row_id)
    return deleted, detached


def unreferenced_blobs(
    session: Session,
    candidates: set[str],
    *,
    gone_pieces: Iterable[int] = (),
    gone_messages: Iterable[int] = (),
) -> set[str]:
    """The candidate digests no piece or message row (other than the gone ones) names."""
    referenced: set[str] = set()
    for model, column, gone in (
        (Piece, Piece.blob_sha256, set(gone_pieces)),
        (Message, Message.raw_blob, set(gone_messages)),
    ):
        for row_id, sha in select_in_chunks(
            session, partial(_rows_naming, model=model, column=column), candidates
        ):
            if row_id not in gone:
                referenced.add(sha)
    return candidates - referenced


def _rows_naming(shas: list[str], *, model: type[Piece] | type[Message], column: Any) -> Any:
    """SQL: (id, digest) of the rows of ``model`` whose ``column`` names one of ``shas``."""
    return select(model.id, column).where(col(column).in_(shas))


def _blob_size(app: App, sha: str) -> int | None:
    try:
        return app.blobs.path_for(sha).stat().st_size
    except (OSError, BlobError):
        return None


def blob_sizes(app: App, shas: Iterable[str]) -> tuple[int, int]:
    """(how many of the blobs exist, their total size)."""
    count = total = 0
    for sha in shas:
        size = _blob_size(app, sha)
        if size is not None:
            count += 1
            total += size
    return count, total


def delete_unreferenced_blobs(app: App, shas: set[str], errors: list[str]) -> tuple[int, int]:
    """Delete blobs that are still unreferenced, after the rows' commit; (count, bytes)."""
    if not shas:
        return 0, 0
    count = total = 0
    # The reference check and the deletions share one transaction: on SQLite
    # it holds the write lock, so no poller can file one of these blobs meanwhile.
    with session_scope(app.engine) as session:
        for sha in sorted(unreferenced_blobs(session, shas)):
            size = _blob_size(app, sha) or 0
            try:
                if app.blobs.delete(sha):
                    count += 1
                    total += size
            except BlobError as err:
                errors.append(f"blob {sha}: {err}")
                log.error("cannot delete blob %s: %s", sha, err)
    return count, total
