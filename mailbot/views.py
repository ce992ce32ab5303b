"""Plain views of stored dossiers and messages, shared by the CLI and exports.

These dicts are the shapes promised in ``interfaces.md`` (``dossiers list
--json`` and friends); keeping them in one place keeps the JSON, the
terminal tables and the spreadsheets in step. Codes (statuses, verdicts,
reasons) are given as stored, each with its French ``*_label`` from
``mailbot/wording.py`` next to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from mailbot import wording
from storage import repositories as repo
from storage.models import (
    Dossier,
    Event,
    Message,
    MessageStatus,
    Outbox,
    OutboxStatus,
    Piece,
    Sighting,
)

# Dossier ids per query of ``dossier_list``: under every back end's
# limit of bound parameters (SQLite before 3.32 allowed 999).
_IDS_PER_QUERY = 500


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def dossier_summary(session: Session, dossier: Dossier) -> dict[str, Any]:
    mailboxes = repo.mailboxes_for_dossier(session=session, dossier=dossier)
    return _summary(dossier, mailboxes=mailboxes)


# What a summary reads of a dossier (``_summary``).
_SUMMARY_COLUMNS = (
    Dossier.id,
    Dossier.reference,
    Dossier.status,
    Dossier.fields,
    Dossier.sender,
    Dossier.received_at,
    Dossier.updated_at,
    Dossier.completed_at,
    Dossier.missing,
    Dossier.legal_hold,
)


def dossier_list(session: Session, *, status: str | None = None) -> list[dict[str, Any]]:
    """``dossier_summary`` of every dossier (or those with ``status``), newest first.

    Read as rows of the columns a summary shows, not as Dossier objects
    (building a thousand of them cost seven times the query); their
    mailboxes in one query per 500 (not one per dossier).
    """
    rows = repo.list_dossier_rows(session=session, columns=_SUMMARY_COLUMNS, status=status)
    mailboxes = _mailboxes_of_dossiers(session, [row.id for row in rows])
    return [_summary(row, mailboxes=mailboxes.get(row.id, [])) for row in rows]


def _mailboxes_of_dossiers(session: Session, ids: list[int]) -> dict[int, list[str]]:
    """Dossier id -> names of the mailboxes its messages came through, sorted as
    ``repo.mailboxes_for_dossier`` sorts them (by the database)."""
    found: dict[int, list[str]] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        query = (
            select(Message.dossier_id, Sighting.mailbox)
            .join(Message, col(Message.id) == col(Sighting.message_pk))
            .where(col(Message.dossier_id).in_(ids[start : start + _IDS_PER_QUERY]))
            .distinct()
            .order_by(col(Message.dossier_id), col(Sighting.mailbox))
        )
        for dossier_id, mailbox in session.exec(query):
            found.setdefault(dossier_id, []).append(mailbox)
    return found


def _summary(dossier: Any, *, mailboxes: list[str]) -> dict[str, Any]:
    """A dossier's summary; ``dossier`` is a Dossier or a row of ``_SUMMARY_COLUMNS``."""
    fields = dossier.fields or {}
    return {
        "reference": dossier.reference,
        "status": dossier.status,
        "status_label": wording.label(wording.DOSSIER_STATUS_LABELS, dossier.status),
        "intitule": fields.get("intitule"),
        "porteur_structure": fields.get("porteur_structure"),
        "thematique": fields.get("thematique"),
        "sender": dossier.sender,
        "received_at": iso(dossier.received_at),
        "updated_at": iso(dossier.updated_at),
        "completed_at": iso(dossier.completed_at),
        "missing": list(dossier.missing or []),
        "mailboxes": mailboxes,
        "legal_hold": dossier.legal_hold,
    }


def dossier_detail(session: Session, dossier: Dossier) -> dict[str, Any]:
    detail = dossier_summary(session, dossier)
    detail["sender_name"] = dossier.sender_name
    detail["status_note"] = dossier.status_note
    detail["fields"] = dict(dossier.fields or {})
    detail["evidence"] = dict(dossier.evidence or {})
    pieces = session.exec(select(Piece).where(Piece.dossier_id == dossier.id).order_by(Piece.id))
    detail["pieces"] = [
        {
            "filename": p.filename,
            "role": p.role,
            "content_type": p.content_type,
            "size": p.size,
            "sha256": p.blob_sha256,
            "added_at": iso(p.added_at),
            "warnings": list(p.warnings or []),
        }
        for p in pieces
    ]
    messages = session.exec(
        select(Message).where(Message.dossier_id == dossier.id).order_by(Message.id)
    )
    detail["messages"] = [message_summary(session, m) for m in messages]
    replies = session.exec(
        select(Outbox).where(Outbox.dossier_id == dossier.id).order_by(Outbox.id)
    )
    detail["replies"] = [reply_summary(r, reference=dossier.reference) for r in replies]
    events = session.exec(select(Event).where(Event.dossier_id == dossier.id).order_by(Event.id))
    detail["events"] = [
        {"at": iso(e.at), "actor": e.actor, "action": e.action, "details": e.details}
        for e in events
    ]
    return detail


def message_summary(session: Session, message: Message) -> dict[str, Any]:
    dossier_ref = None
    if message.dossier_id is not None:
        dossier = session.get(Dossier, message.dossier_id)
        dossier_ref = dossier.reference if dossier else None
    return {
        "id": message.id,
        "message_id": message.message_id,
        "sender": message.sender,
        "subject": message.subject,
        "date": iso(message.date_header),
        "first_seen_at": iso(message.first_seen_at),
        "verdict": message.verdict,
        "verdict_label": wording.label(wording.VERDICT_LABELS, message.verdict),
        "status": message.status,
        "status_label": wording.label(wording.MESSAGE_STATUS_LABELS, message.status),
        "reason": message.reason,
        "reason_label": _message_reason_label(message),
        "error": message.error,
        "warnings": list(message.warnings or []),
        "rule_trace": list(message.rule_trace or []),
        "dossier": dossier_ref,
        "sha256": message.sha256,
        "mailboxes": repo.mailboxes_for_message(session=session, message=message),
    }


def _message_reason_label(message: Message) -> str | None:
    """Why the message waits for staff, in French; None for a message that does not."""
    if message.status not in (MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED):
        return None
    return wording.message_reason(message)


def reply_summary(reply: Outbox, *, reference: str | None) -> dict[str, Any]:
    """One outgoing reply; ``reason_label`` says why it was not sent or not delivered."""
    held_back = reply.status in (OutboxStatus.SUPPRESSED, OutboxStatus.HELD, OutboxStatus.FAILED)
    return {
        "kind": reply.kind,
        "kind_label": wording.label(wording.REPLY_KIND_LABELS, reply.kind),
        "to": reply.to_addr,
        "subject": reply.subject,
        "status": reply.status,
        "status_label": wording.label(wording.OUTBOX_STATUS_LABELS, reply.status),
        "suppressed_reason": reply.suppressed_reason,
        "suppressed_details": reply.suppressed_details,
        "failure_reason": reply.failure_reason,
        "reason_label": wording.reply_reason(reply, reference=reference) if held_back else None,
        "created_at": iso(reply.created_at),
        "sent_at": iso(reply.sent_at),
        "last_error": reply.last_error,
    }
