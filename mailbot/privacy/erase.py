"""Erasure request: delete one person's data, then remove their address from what stays.

Deleted (through the shared ``DeletionPlan``): the person's dossiers, as
applicant or ``contact_email``, with all their messages, pieces, replies and
audit entries; the person's other messages (not for us, quarantined);
replies addressed to them; blobs no longer referenced. Dossiers on legal
hold are refused and listed. The address is then replaced by
``ERASED_TEXT`` in every remaining row (other people's mail that copied
them, audit entries); a ``person.erased`` tombstone keeps only the SHA-256
of the address, so staff can prove the erasure without keeping it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from mailbot.app import App
from mailbot.privacy.person import (
    address_pattern,
    column_contains,
    email_fingerprint,
    normalise_email,
    person_dossiers,
    require_actor,
    value_mentions,
)
from mailbot.privacy.plan import DeletionPlan
from mailbot.privacy.reports import EraseReport
from mailbot.privacy.rows import chunked, select_in_chunks, update_row
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Dossier, Event, MailboxCursor, Message, Outbox, Piece, Sighting

log = logging.getLogger(__name__)

# What replaces the address in the rows an erasure leaves (other people's mail
# that copied the person, audit entries...). ASCII in raw messages.
ERASED_TEXT = "[adresse effacée]"
ERASED_BYTES = b"[adresse effacee]"

# Per table searched for the address: which rows to leave alone.
ScrubTables = dict[type[SQLModel], Callable[[Any], bool]]


def erase_person(app: App, email: str, *, actor: str) -> EraseReport:
    """Erase everything about ``email`` except dossiers on legal hold (refused, listed).

    See the module docstring. Mail the person sent into someone else's
    dossier stays with that dossier (listed in ``other_dossiers``).
    """
    require_actor(actor)
    address = normalise_email(email)
    fingerprint = email_fingerprint(address)
    report = EraseReport(email_sha256=fingerprint)
    retention = app.config.settings.retention
    with session_scope(app.engine) as session:
        dossiers = person_dossiers(session, address, lock=True)
        held = [d for d in dossiers if d.legal_hold]
        erased = [d for d in dossiers if not d.legal_hold]
        held_ids = {d.id for d in held}
        mine = {d.id for d in dossiers}
        own = session.exec(
            select(Message.id, Message.dossier_id).where(sa.func.lower(Message.sender) == address)
        ).all()
        loose = {m for m, dossier_id in own if dossier_id is None}
        elsewhere = {dossier_id for _m, dossier_id in own if dossier_id not in mine and dossier_id}
        # Replies to the person outside any dossier (none in practice) go too.
        replies = session.exec(
            select(Outbox.id).where(
                sa.func.lower(Outbox.to_addr) == address, col(Outbox.dossier_id).is_(None)
            )
        ).all()
        plan = DeletionPlan.collect(
            session,
            dossiers=erased,
            message_ids=loose,
            reply_ids=replies,
            with_server_copies=retention.delete_server_copies,
        )
        plan.count_into(app, report)
        held_messages = set(
            select_in_chunks(
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

        plan.delete_rows(session)
        report.scrubbed = _scrub(session, address, _tables_to_scrub(held_ids, held_messages))
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
    plan.delete_blobs_and_server_copies(app, report)
    log.info("erase-person %s…: %s", fingerprint[:12], report.summary())
    return report


def _tables_to_scrub(held_dossiers: set[int], held_messages: set[int]) -> ScrubTables:
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


def _address_bytes_pattern(address: str) -> re.Pattern[bytes]:
    return re.compile(
        rb"(?<![A-Za-z0-9.+%_-])"
        + re.escape(address.encode("utf-8"))
        + rb"(?![A-Za-z0-9_-]|\.[A-Za-z0-9])",
        re.IGNORECASE,
    )


def _replace_address(value: Any, pattern: re.Pattern[str]) -> Any:
    """``value`` (a text or a JSON document, keys included) with the address erased."""
    if isinstance(value, str):
        return pattern.sub(ERASED_TEXT, value)
    if isinstance(value, dict):
        return {
            _replace_address(k, pattern): _replace_address(v, pattern) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_replace_address(v, pattern) for v in value]
    return value


def _scrub(session: Session, address: str, tables: ScrubTables) -> int:
    """Replace the address in every text, JSON and raw-message column left; rows changed."""
    pattern = address_pattern(address)
    changed: set[tuple[str, int]] = set()
    for model, is_protected in tables.items():
        table = model.__table__  # type: ignore[attr-defined]
        text_columns = [c for c in table.columns if isinstance(c.type, (sa.String, sa.JSON))]
        binary_columns = [c for c in table.columns if isinstance(c.type, sa.LargeBinary)]
        if text_columns:
            query = select(model).where(
                sa.or_(*(column_contains(c, address) for c in text_columns))
            )
            for row in session.exec(query).all():
                if is_protected(row):
                    continue
                values = {}
                for column in text_columns:
                    value = getattr(row, column.key)
                    if value_mentions(value, pattern):
                        values[column.key] = _replace_address(value, pattern)
                if values:
                    update_row(session, table=table, row_id=row.id, values=values)
                    changed.add((table.name, row.id))
        if binary_columns:
            for row_id in _scrub_binary(
                session,
                model=model,
                columns=binary_columns,
                address=address,
                is_protected=is_protected,
            ):
                changed.add((table.name, row_id))
    session.expunge_all()
    return len(changed)


def _scrub_binary(
    session: Session,
    *,
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
    for chunk in chunked(ids, 50):
        for row in session.exec(select(model).where(col(model.id).in_(chunk))).all():  # type: ignore[attr-defined]
            if is_protected(row):
                continue
            values = {}
            for column in columns:
                value = getattr(row, column.key)
                if isinstance(value, bytes) and pattern.search(value):
                    values[column.key] = pattern.sub(ERASED_BYTES, value)
            if values:
                update_row(session, table=table, row_id=row.id, values=values)
                changed.append(row.id)
        session.expunge_all()
    return changed
