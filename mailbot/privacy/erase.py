"""Erasure request: delete one person's data, then remove them from what stays.

The person is the address the service exchanged mail with (sender of the
mail we received, recipient of our replies). Dossiers where the address was
only typed in the form's contact field are listed, and acted on only with
``include_form_addresses`` (staff checked the request comes from them).

Deleted (through the shared ``DeletionPlan``): the person's dossiers with
all their messages, pieces, replies and audit entries; their other mail
(not for us, quarantined); replies addressed to them; blobs no longer
referenced; with ``erase_server_copies`` (on by default) the copies of
their mail in the staff's folders and of our replies in the Sent folder.
Dossiers on legal hold are refused and listed.

Then the person (address, full name, phone number: ``Mentions``) is removed
from what stays: every text and JSON column, other people's stored messages
that name them (every MIME part decoded, the message rebuilt) and those
messages' server copies (a redacted copy replaces the original), the Sent
copies of digests. The database is then compacted so nothing is left in
free pages or the journal (``compact.py``), and a ``person.erased``
tombstone keeps only an HMAC of the address (``tombstone.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from mailbot.app import App
from mailbot.privacy.compact import compact, secure_delete_on
from mailbot.privacy.mentions import ERASED_BYTES, ERASED_TEXT, Mentions
from mailbot.privacy.person import (
    form_only_dossiers,
    normalise_email,
    person_dossiers,
    require_actor,
)
from mailbot.privacy.plan import DeletionPlan, delete_unreferenced_blobs
from mailbot.privacy.reports import EraseReport, ErasurePreview
from mailbot.privacy.rows import chunked, select_in_chunks, transaction, update_row
from mailbot.privacy.server_copies import ServerCopy, find_server_copies
from mailbot.privacy.server_rewrite import (
    Rewritten,
    SentCopy,
    delete_sent_copies,
    redact_sent_copies,
    redact_server_copies,
)
from mailbot.privacy.tombstone import keyed_fingerprint, tombstone_key
from storage import repositories as repo
from storage.db import session_scope
from storage.errors import BlobError
from storage.models import (
    Dossier,
    Event,
    MailboxCursor,
    Message,
    Outbox,
    OutboxKind,
    Piece,
    Sighting,
)

log = logging.getLogger(__name__)

__all__ = ["ERASED_BYTES", "ERASED_TEXT", "erase_person", "preview_erasure"]

# Per table searched for the person: which rows to leave alone.
ScrubTables = dict[type[SQLModel], Callable[[Any], bool]]


@dataclass
class _OtherMail:
    """Someone else's message that names the person."""

    message_id: int
    reference: str | None
    raw_blob: str | None
    server: list[ServerCopy] = field(default_factory=list)

    def label(self) -> str:
        where = f"dossier {self.reference}" if self.reference else "no dossier"
        return f"message {self.message_id} ({where})"


@dataclass
class _Erasure:
    """Everything an erasure will do, read in the request's transaction."""

    erased: list[Dossier]
    held: list[Dossier]
    form_only: list[Dossier]
    plan: DeletionPlan
    mentions: Mentions
    other_dossiers: list[str]
    # Messages of the dossiers left alone (legal hold, form-only).
    kept_messages: set[int]
    others: list[_OtherMail]
    sent_deleted: list[SentCopy]
    sent_to_check: list[SentCopy]
    with_server: bool

    @property
    def kept_ids(self) -> set[int]:
        """Dossiers left as they are: on legal hold, or naming the address only in
        their form (listed for staff, never acted on without their confirmation)."""
        return {d.id for d in self.held + self.form_only}  # type: ignore[misc]


def preview_erasure(
    app: App,
    email: str,
    *,
    include_form_addresses: bool = False,
    server_copies: bool | None = None,
) -> ErasurePreview:
    """What ``erase_person`` would do with the same arguments; changes nothing."""
    address = normalise_email(email)
    with_server = _with_server(app, server_copies)
    with transaction(app, commit=False) as session:
        work = _prepare(
            app, session, address, include_form=include_form_addresses, with_server=with_server
        )
        return ErasurePreview(
            dossiers=[d.reference for d in work.erased],
            refused=[d.reference for d in work.held],
            form_only=[d.reference for d in work.form_only],
            messages=len(work.plan.messages),
            replies=len(work.plan.outbox),
            server_copies=len(work.plan.server_copies),
            sent_copies=len(work.sent_deleted),
            sent_to_check=len(work.sent_to_check),
            others=[o.label() for o in work.others],
            server_enabled=with_server,
        )


def erase_person(
    app: App,
    email: str,
    *,
    actor: str,
    include_form_addresses: bool = False,
    server_copies: bool | None = None,
) -> EraseReport:
    """Erase everything about ``email`` except dossiers on legal hold (refused, listed).

    See the module docstring. ``server_copies`` overrides
    ``[retention] erase_server_copies``. Refused (``PrivacyError``) when the
    tombstone secret is unset or a placeholder outside demo mode.
    """
    require_actor(actor)
    address = normalise_email(email)
    fingerprint = keyed_fingerprint(address, tombstone_key(app))
    with_server = _with_server(app, server_copies)
    report = EraseReport(email_hmac=fingerprint)
    with session_scope(app.engine) as session:
        secure_delete_on(session)
        work = _prepare(
            app, session, address, include_form=include_form_addresses, with_server=with_server
        )
        work.plan.count_into(app, report)
        report.dossiers = [d.reference for d in work.erased]
        report.refused = [d.reference for d in work.held]
        report.form_only = [d.reference for d in work.form_only]
        report.other_dossiers = work.other_dossiers
        report.others = [o.label() for o in work.others]
        replaced_blobs = _redact_stored_messages(app, session, work=work, report=report)
        work.plan.delete_rows(session)
        replaced_blobs |= _redact_text_pieces(app, session, work=work, report=report)
        report.scrubbed = _scrub(session, work.mentions, _tables_to_scrub(work))
        _record_tombstone(session, report=report, actor=actor)
    work.plan.delete_blobs_and_server_copies(app, report)
    count, size = delete_unreferenced_blobs(app, replaced_blobs, report.errors)
    report.blobs += count
    report.bytes += size
    if with_server:
        _clean_server(app, work, report)
    report.errors += compact(app.engine, [m.__tablename__ for m in _tables_to_scrub(work)])  # type: ignore[attr-defined]
    log.info("erase-person %s…: %s", fingerprint[:12], report.summary())
    return report


def _with_server(app: App, override: bool | None) -> bool:
    return app.config.settings.retention.erase_server_copies if override is None else override


# -- what the erasure takes --------------------------------------------------------


def _prepare(
    app: App, session: Session, address: str, *, include_form: bool, with_server: bool
) -> _Erasure:
    dossiers = person_dossiers(session, address, lock=True, include_form=include_form)
    held = [d for d in dossiers if d.legal_hold]
    erased = [d for d in dossiers if not d.legal_hold]
    mine = {d.id for d in dossiers}
    own = session.exec(select(Message).where(sa.func.lower(Message.sender) == address)).all()
    loose = {m.id for m in own if m.dossier_id is None}
    elsewhere = {m.dossier_id for m in own if m.dossier_id and m.dossier_id not in mine}
    # Replies to the person outside any dossier (none in practice) go too.
    replies = session.exec(
        select(Outbox.id).where(
            sa.func.lower(Outbox.to_addr) == address, col(Outbox.dossier_id).is_(None)
        )
    ).all()
    plan = DeletionPlan.collect(
        session,
        dossiers=erased,
        message_ids=loose,  # type: ignore[arg-type]
        reply_ids=replies,  # type: ignore[arg-type]
        with_server_copies=with_server,
        server_copies_of_ledger=True,
    )
    form_only = [] if include_form else form_only_dossiers(session, address)
    kept_ids = {d.id for d in held + form_only}
    kept_messages = set(
        select_in_chunks(
            session,
            lambda ids: select(Message.id).where(col(Message.dossier_id).in_(ids)),
            kept_ids,
        )
    )
    mentions = _person_mentions(address, dossiers=dossiers, messages=own)
    gone = set(plan.messages)
    others = _other_mail(app, session, mentions, skip=gone | kept_messages, kept_dossiers=kept_ids)
    if with_server:
        for other in others:
            other.server = find_server_copies(session, [other.message_id])
    sent_deleted, sent_to_check = _sent_copies(session, plan, mentions) if with_server else ([], [])
    return _Erasure(
        erased=erased,
        held=held,
        form_only=form_only,
        plan=plan,
        mentions=mentions,
        other_dossiers=sorted(
            d.reference for d in (session.get(Dossier, i) for i in elsewhere) if d is not None
        ),
        kept_messages=kept_messages,
        others=others,
        sent_deleted=sent_deleted,
        sent_to_check=sent_to_check,
        with_server=with_server,
    )


def _person_mentions(address: str, *, dossiers: list[Dossier], messages: list[Message]) -> Mentions:
    """The person's address, full names and phone numbers, from their own dossiers and mail.

    A dossier's contact name and phone count only when its contact address
    is the person's (or empty): an office may name someone else as contact.
    """
    names: list[Any] = [d.sender_name for d in dossiers] + [m.sender_name for m in messages]
    phones: list[Any] = []
    for dossier in dossiers:
        fields = dossier.fields or {}
        contact = str(fields.get("contact_email") or "").strip().lower()
        if contact in ("", address):
            names.append(fields.get("contact_nom"))
            phones.append(fields.get("contact_telephone"))
    return Mentions.of(address, names=names, phones=phones)


def _other_mail(
    app: App, session: Session, mentions: Mentions, *, skip: set[int], kept_dossiers: set[int]
) -> list[_OtherMail]:
    """Messages that stay (someone else's, or hers in someone else's dossier) naming the person.

    Their rows (sender, headers...) and their stored copy, every MIME part
    decoded, are searched.
    """
    found: list[_OtherMail] = []
    references: dict[int, str] = {}
    ids = session.exec(select(Message.id)).all()
    for chunk in chunked(set(ids) - skip, 200):
        for message in session.exec(select(Message).where(col(Message.id).in_(chunk))).all():
            if message.dossier_id in kept_dossiers:
                continue
            named = any(
                mentions.found_in_value(getattr(message, key))
                for key in ("sender", "sender_name", "subject", "headers")
            )
            if not named and message.raw_blob:
                try:
                    named = mentions.found_in_message(app.blobs.get(message.raw_blob))
                except BlobError:
                    named = False
            if not named:
                continue
            if message.dossier_id is not None and message.dossier_id not in references:
                dossier = session.get(Dossier, message.dossier_id)
                references[message.dossier_id] = dossier.reference if dossier else "?"
            found.append(
                _OtherMail(
                    message_id=message.id,  # type: ignore[arg-type]
                    reference=references.get(message.dossier_id),  # type: ignore[arg-type]
                    raw_blob=message.raw_blob,
                )
            )
    return sorted(found, key=lambda o: o.message_id)


def _sent_copies(
    session: Session, plan: DeletionPlan, mentions: Mentions
) -> tuple[list[SentCopy], list[SentCopy]]:
    """Our sent messages in the Sent folder: replies to the person (to delete), and
    digests and other replies that may name them (to check and redact)."""
    deleted, to_check = [], []
    for row in session.exec(select(Outbox.id, Outbox.mailbox, Outbox.message_id)).all():
        if row[0] in plan.outbox:
            deleted.append(SentCopy(mailbox=row[1], message_id=row[2]))
    for chunk in chunked(set(session.exec(select(Outbox.id)).all()) - set(plan.outbox), 50):
        for outbox in session.exec(select(Outbox).where(col(Outbox.id).in_(chunk))).all():
            # A delivered digest keeps no body: its Sent copy is always checked.
            if outbox.kind == OutboxKind.DIGEST or mentions.found_in_message(outbox.raw or b""):
                to_check.append(SentCopy(mailbox=outbox.mailbox, message_id=outbox.message_id))
        session.expunge_all()
    return deleted, to_check


# -- rewriting what stays ----------------------------------------------------------


def _redact_stored_messages(
    app: App, session: Session, *, work: _Erasure, report: EraseReport
) -> set[str]:
    """Rewrite the stored copies of other people's mail naming the person.

    The redacted bytes become a new blob; the row names it (and its hash,
    which is what the server copy will hash to once replaced). Returns the
    digests of the replaced blobs, deleted after commit when unreferenced.
    """
    replaced: set[str] = set()
    table = Message.__table__  # type: ignore[attr-defined]
    for other in work.others:
        if not other.raw_blob:
            continue
        try:
            raw = app.blobs.get(other.raw_blob)
        except BlobError as err:
            report.errors.append(f"message {other.message_id}: stored copy unreadable: {err}")
            continue
        redacted = work.mentions.redact_message(raw)
        if redacted == raw:
            continue
        new_sha = app.blobs.put(redacted)
        message = session.get(Message, other.message_id)
        assert message is not None
        values: dict[str, Any] = {"raw_blob": new_sha, "sha256": new_sha, "size": len(redacted)}
        if message.dedup_key == f"sha:{message.sha256}":
            values["dedup_key"] = f"sha:{new_sha}"
        update_row(session, table=table, row_id=other.message_id, values=values)
        replaced.add(other.raw_blob)
        report.redacted_messages += 1
    session.expunge_all()
    return replaced


def _redact_text_pieces(
    app: App, session: Session, *, work: _Erasure, report: EraseReport
) -> set[str]:
    """Text pieces (CSV, plain text) of the remaining dossiers that name the person,
    rewritten without them (PDFs and images cannot be: they stay as filed).

    Runs after the plan's rows are gone. Returns the replaced digests.
    """
    replaced: set[str] = set()
    table = Piece.__table__  # type: ignore[attr-defined]
    pieces = session.exec(
        select(Piece.id, Piece.dossier_id, Piece.blob_sha256).where(
            col(Piece.content_type).startswith("text/")
        )
    ).all()
    for piece_id, dossier_id, sha in pieces:
        if dossier_id in work.kept_ids:
            continue
        try:
            data = app.blobs.get(sha)
        except BlobError:
            continue
        text = data.decode("utf-8", "replace")
        if not work.mentions.found_in(text):
            continue
        redacted = work.mentions.redact(text).encode("utf-8")
        new_sha = app.blobs.put(redacted)
        update_row(
            session,
            table=table,
            row_id=piece_id,
            values={"blob_sha256": new_sha, "size": len(redacted)},
        )
        replaced.add(sha)
        report.redacted_pieces += 1
    return replaced


def _tables_to_scrub(work: _Erasure) -> ScrubTables:
    """The tables searched for the person after an erasure, each with a test
    for the rows to leave alone (they belong to a dossier left as it is)."""
    kept_dossiers, kept_messages = work.kept_ids, work.kept_messages
    return {
        Dossier: lambda r: r.id in kept_dossiers,
        Message: lambda r: r.dossier_id in kept_dossiers,
        Piece: lambda r: r.dossier_id in kept_dossiers,
        Outbox: lambda r: r.dossier_id in kept_dossiers or r.trigger_message_pk in kept_messages,
        Event: lambda r: r.dossier_id in kept_dossiers or r.message_pk in kept_messages,
        Sighting: lambda r: r.message_pk in kept_messages,
        MailboxCursor: lambda r: False,
    }


def _scrub(session: Session, mentions: Mentions, tables: ScrubTables) -> int:
    """Remove the person from every text, JSON and raw-message column left; rows changed.

    Every row is read: a phone number or a name has no SQL pre-filter
    (raw messages are decoded part by part in Python anyway).
    """
    changed: set[tuple[str, int]] = set()
    for model, is_protected in tables.items():
        table = model.__table__  # type: ignore[attr-defined]
        text_columns = [c for c in table.columns if isinstance(c.type, (sa.String, sa.JSON))]
        binary_columns = [c for c in table.columns if isinstance(c.type, sa.LargeBinary)]
        ids = session.exec(select(table.c.id)).all()
        for chunk in chunked(ids, 100):
            for row in session.exec(select(model).where(table.c.id.in_(chunk))).all():
                if is_protected(row):
                    continue
                values: dict[str, Any] = {}
                for column in text_columns:
                    value = getattr(row, column.key)
                    if mentions.found_in_value(value):
                        values[column.key] = mentions.redact_value(value)
                for column in binary_columns:
                    value = getattr(row, column.key)
                    if isinstance(value, bytes) and value:
                        redacted = mentions.redact_message(value)
                        if redacted != value:
                            values[column.key] = redacted
                if values:
                    update_row(session, table=table, row_id=row.id, values=values)
                    changed.add((table.name, row.id))
            session.expunge_all()
    return len(changed)


def _record_tombstone(session: Session, *, report: EraseReport, actor: str) -> None:
    repo.record_event(
        session=session,
        actor=actor,
        action="person.erased",
        details={
            "email_hmac": report.email_hmac,
            "dossiers": report.dossiers,
            "refused": report.refused,
            "form_only": report.form_only,
            "counts": {
                "dossiers": len(report.dossiers),
                "messages": report.messages,
                "pieces": report.pieces,
                "replies": report.replies,
                "events": report.events,
                "blobs": report.blobs,
                "scrubbed_rows": report.scrubbed,
                "redacted_messages": report.redacted_messages,
                "redacted_pieces": report.redacted_pieces,
            },
        },
    )


# -- the server, after the commit --------------------------------------------------


def _clean_server(app: App, work: _Erasure, report: EraseReport) -> None:
    """Our replies to the person out of Sent; other people's mail and digests redacted."""
    if work.sent_deleted:
        report.server += delete_sent_copies(app, work.sent_deleted)
    copies = [copy for other in work.others for copy in other.server]
    if copies:
        reports, rewritten = redact_server_copies(app, copies, work.mentions)
        report.server += reports
        _follow_rewritten(app, rewritten)
    if work.sent_to_check:
        report.server += redact_sent_copies(app, work.sent_to_check, work.mentions)


def _follow_rewritten(app: App, rewritten: list[Rewritten]) -> None:
    """Point the ledger at the redacted copies, so the poller knows them.

    A message whose content was not kept takes the redacted copy's hash (a
    moved copy is found by it).
    """
    with session_scope(app.engine) as session:
        for item in rewritten:
            copy = item.copy
            message = session.get(Message, copy.message_pk) if copy.message_pk else None
            if message is not None and message.raw_blob is None:
                if message.dedup_key == f"sha:{message.sha256}":
                    message.dedup_key = f"sha:{item.new_sha256}"
                message.sha256 = item.new_sha256
                session.add(message)
            if copy.moved or item.new_uid is None:
                continue
            sighting = session.exec(
                select(Sighting).where(
                    Sighting.mailbox == copy.mailbox,
                    Sighting.folder == copy.folder,
                    Sighting.uidvalidity == copy.uidvalidity,
                    Sighting.uid == copy.uid,
                )
            ).first()
            taken = session.exec(
                select(Sighting.id).where(
                    Sighting.mailbox == copy.mailbox,
                    Sighting.folder == copy.folder,
                    Sighting.uidvalidity == copy.uidvalidity,
                    Sighting.uid == item.new_uid,
                )
            ).first()
            if sighting is None:
                continue
            if taken is not None:  # the poller saw the new copy first
                session.delete(sighting)
            else:
                sighting.uid = item.new_uid
                session.add(sighting)
