"""The data of one dossier page, read with six keyed SELECTs on one connection.

The page shows what ``views.dossier_detail`` gives the CLI (fields and their
evidence, pieces, messages, replies, history) but is read on every click, so
it is read the cheap way: SQLAlchemy Core statements built once at import,
run on one pooled read-only connection (on SQLite: no write lock, see
``storage.db.read_scope``), only the columns the page shows (an outbox row
carries the whole message as sent, which the page never shows), rows used as
they come. Profiled on the 5,000-dossier bench (``bench/web.py``), the ORM
path spent most of its time building statements, identity-mapped objects and
sessions (nine queries in four sessions for one page), not in the database.

The labels (statuses, reasons, times) are worded by the templates through
``mailbot.wording``, as for the CLI. Records are namespaces, not dicts:
Jinja2 reads ``piece.filename`` with ``getattr`` first, and on a dict every
such read raised and caught an ``AttributeError`` (about 600 a page).
"""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mailbot import wording
from storage.db import read_scope
from storage.models import Dossier, Event, Message, Outbox, OutboxStatus, Piece, Sighting

_dossier = Dossier.__table__
_piece = Piece.__table__
_message = Message.__table__
_sighting = Sighting.__table__
_outbox = Outbox.__table__
_event = Event.__table__
_ID = sa.bindparam("dossier_id")

DOSSIER = sa.select(
    _dossier.c.id,
    _dossier.c.reference,
    _dossier.c.status,
    _dossier.c.fields,
    _dossier.c.evidence,
    _dossier.c.missing,
    _dossier.c.sender,
    _dossier.c.sender_name,
    _dossier.c.received_at,
    _dossier.c.updated_at,
    _dossier.c.legal_hold,
    _dossier.c.status_note,
    _dossier.c.version,
).where(_dossier.c.reference == sa.bindparam("reference"))
PIECES = (
    sa.select(
        _piece.c.id,
        _piece.c.filename,
        _piece.c.role,
        _piece.c.size,
        _piece.c.content_type,
        _piece.c.warnings,
    )
    .where(_piece.c.dossier_id == _ID)
    .order_by(_piece.c.id)
)
MESSAGES = (
    sa.select(
        _message.c.id,
        _message.c.first_seen_at,
        _message.c.sender,
        _message.c.subject,
        _message.c.warnings,
        _message.c.verdict,
        _message.c.status,
    )
    .where(_message.c.dossier_id == _ID)
    .order_by(_message.c.id)
)
# The mailboxes of the dossier: those its messages were seen in.
MAILBOXES = (
    sa.select(_sighting.c.mailbox)
    .join(_message, _message.c.id == _sighting.c.message_pk)
    .where(_message.c.dossier_id == _ID)
    .distinct()
    .order_by(_sighting.c.mailbox)
)
REPLIES = (
    sa.select(
        _outbox.c.kind,
        _outbox.c.to_addr,
        _outbox.c.subject,
        _outbox.c.status,
        _outbox.c.created_at,
        _outbox.c.sent_at,
        # What wording.reply_reason reads to say why a reply was not sent.
        _outbox.c.suppressed_reason,
        _outbox.c.suppressed_details,
        _outbox.c.failure_reason,
        _outbox.c.attempts,
        _outbox.c.last_error,
    )
    .where(_outbox.c.dossier_id == _ID)
    .order_by(_outbox.c.id)
)
EVENTS = (
    sa.select(_event.c.at, _event.c.actor, _event.c.action, _event.c.details)
    .where(_event.c.dossier_id == _ID)
    .order_by(_event.c.id)
)
_HELD_BACK = (OutboxStatus.SUPPRESSED, OutboxStatus.HELD, OutboxStatus.FAILED)


def _is_pdf(filename: str | None, content_type: str | None) -> bool:
    return content_type == "application/pdf" or (filename or "").lower().endswith(".pdf")


def read_dossier_page(engine: Engine, *, reference: str) -> SimpleNamespace | None:
    """Everything the page of dossier ``reference`` shows, or None when there is no such dossier."""
    with read_scope(engine) as connection:
        row = connection.execute(DOSSIER, {"reference": reference}).first()
        if row is None:
            return None
        key = {"dossier_id": row.id}
        pieces = connection.execute(PIECES, key).all()
        messages = connection.execute(MESSAGES, key).all()
        mailboxes = connection.execute(MAILBOXES, key).scalars().all()
        replies = connection.execute(REPLIES, key).all()
        events = connection.execute(EVENTS, key).all()
    fields = row.fields or {}
    return SimpleNamespace(
        # Read in the same snapshot as the rest: the key of the page body kept
        # by ``mailbot.web.page_cache`` is never newer than what was read.
        stamp=(row.id, row.version),
        reference=row.reference,
        status=row.status,
        intitule=fields.get("intitule"),
        sender=row.sender,
        sender_name=row.sender_name,
        received_at=row.received_at,
        updated_at=row.updated_at,
        missing=list(row.missing or []),
        mailboxes=list(mailboxes),
        legal_hold=row.legal_hold,
        status_note=row.status_note,
        fields=fields,
        evidence=row.evidence or {},
        pieces=[
            SimpleNamespace(
                id=p.id,
                filename=p.filename or f"piece-{p.id}",
                role=p.role,
                size=p.size,
                content_type=p.content_type,
                pdf=_is_pdf(p.filename, p.content_type),
                warnings=list(p.warnings or []),
            )
            for p in pieces
        ],
        messages=[
            SimpleNamespace(
                id=m.id,
                first_seen_at=m.first_seen_at,
                sender=m.sender,
                subject=m.subject,
                warnings=list(m.warnings or []),
                verdict=m.verdict,
                status=m.status,
            )
            for m in messages
        ],
        replies=[
            SimpleNamespace(
                kind=r.kind,
                to=r.to_addr,
                subject=r.subject,
                status=r.status,
                created_at=r.created_at,
                sent_at=r.sent_at,
                reason_label=wording.reply_reason(r, reference=row.reference)
                if r.status in _HELD_BACK
                else None,
            )
            for r in replies
        ],
        events=[
            SimpleNamespace(at=e.at, actor=e.actor, action=e.action, details=e.details or {})
            for e in events
        ],
    )
