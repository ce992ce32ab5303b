"""Plain views of stored dossiers and messages, shared by the CLI and exports.

These dicts are the shapes promised in ``interfaces.md`` (``dossiers list
--json`` and friends); keeping them in one place keeps the JSON, the
terminal tables and the spreadsheets in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from storage import repositories as repo
from storage.models import Dossier, Event, Message, Outbox, Piece


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def dossier_summary(session: Session, dossier: Dossier) -> dict[str, Any]:
    fields = dossier.fields or {}
    return {
        "reference": dossier.reference,
        "status": dossier.status,
        "intitule": fields.get("intitule"),
        "porteur_structure": fields.get("porteur_structure"),
        "thematique": fields.get("thematique"),
        "sender": dossier.sender,
        "received_at": iso(dossier.received_at),
        "updated_at": iso(dossier.updated_at),
        "completed_at": iso(dossier.completed_at),
        "missing": list(dossier.missing or []),
        "mailboxes": repo.mailboxes_for_dossier(session=session, dossier=dossier),
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
    detail["replies"] = [
        {
            "kind": r.kind,
            "to": r.to_addr,
            "subject": r.subject,
            "status": r.status,
            "suppressed_reason": r.suppressed_reason,
            "created_at": iso(r.created_at),
            "sent_at": iso(r.sent_at),
            "last_error": r.last_error,
        }
        for r in replies
    ]
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
        "status": message.status,
        "error": message.error,
        "warnings": list(message.warnings or []),
        "rule_trace": list(message.rule_trace or []),
        "dossier": dossier_ref,
        "sha256": message.sha256,
        "mailboxes": repo.mailboxes_for_message(session=session, message=message),
    }
