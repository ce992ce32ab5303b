"""Updating a dossier with a message: its pieces, the fields still missing, its status.

A follow-up, a retried candidature, or a message staff attach
(``attach_to_dossier``) joins a dossier here: its attachments become
pieces, its fields only fill what is still missing, completeness is
evaluated again and a status change is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlmodel import Session, select

from mailbot.config import Config, Verdict
from mailbot.filed import SERVICE_STATUSES, Filed, Filing
from mailbot.pipeline import Analysis, Reading
from parsers.checks import missing_pieces
from storage import repositories as repo
from storage.blobs import BlobStore
from storage.models import (
    Dossier,
    DossierStatus,
    Message,
    MessageStatus,
    Piece,
    PieceRole,
    utcnow,
)


def add_to_dossier(filing: Filing, *, dossier: Dossier) -> bool:
    """Join a message's pieces and fields to a dossier; True when it became complete."""
    session, reading, now = filing.session, filing.analysis.reading, filing.now
    add_pieces(filing, dossier=dossier)
    fields = dict(dossier.fields or {})
    evidence = dict(dossier.evidence or {})
    if reading is not None:
        # A later message only fills what is still missing: a field already
        # read (the applicant's e-mail, structure, intitulé) changes only
        # when staff correct it, never by mail.
        new_evidence = stored_evidence(reading)
        for key, value in reading.fields.items():
            if _is_blank(fields.get(key)) and not _is_blank(value):
                fields[key] = value
                if key in new_evidence:
                    evidence[key] = new_evidence[key]
        if "_letter" in new_evidence and "_letter" not in evidence:
            evidence["_letter"] = new_evidence["_letter"]
    roles = {
        p.role for p in session.exec(select(Piece).where(Piece.dossier_id == dossier.id)).all()
    }
    missing = list(
        missing_pieces(
            fields=fields,
            dossier_present=PieceRole.DOSSIER in roles,
            # A letter may be a page of the dossier's PDF: then only the evidence says so.
            letter_present=PieceRole.LETTER in roles or "_letter" in evidence,
            rules=filing.config.rules,
        )
    )
    old_status = dossier.status
    dossier.fields = fields
    dossier.evidence = evidence
    dossier.missing = missing
    dossier.updated_at = now
    completed = False
    if old_status in SERVICE_STATUSES:
        if reading is not None and reading.needs_review:
            new_status = DossierStatus.NEEDS_REVIEW
        else:
            new_status = DossierStatus.COMPLETE if not missing else DossierStatus.INCOMPLETE
        if new_status != old_status:
            dossier.status = new_status
            completed = new_status == DossierStatus.COMPLETE
            if completed:
                dossier.completed_at = now
            repo.record_event(
                session=session,
                actor="system",
                action="dossier.status_changed",
                dossier=dossier,
                message=filing.message,
                details={"old": old_status, "new": new_status, "missing": missing},
            )
    session.add(dossier)
    session.flush()
    return completed


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def add_pieces(filing: Filing, *, dossier: Dossier) -> None:
    reading = filing.analysis.reading
    roles: Mapping[str, str] = reading.roles if reading else {}
    for attachment in filing.mail.attachments:
        if not attachment.data:
            continue  # over the size limit: named in the message's warnings
        sha = filing.blobs.put(attachment.data)
        repo.add_piece(
            session=filing.session,
            dossier=dossier,
            message=filing.message,
            blob_sha256=sha,
            filename=attachment.filename,
            content_type=attachment.content_type,
            size=attachment.size,
            role=roles.get(attachment.sha256, PieceRole.SUPPORTING),
            warnings=list(attachment.warnings),
        )


def stored_evidence(reading: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in reading.dossier.evidence.items():
        out[key] = {
            "source": getattr(item, "source", None),
            "raw": getattr(item, "raw", None),
            "layer": getattr(item, "layer", None),
            # How sure the reading is, where, and why not surer: staff see
            # them beside the value (the back-office's "Lu dans" column).
            "confidence": getattr(item, "confidence", None),
            "page": getattr(item, "page", None),
            "doubt": getattr(item, "doubt", None),
            "uncertain": bool(getattr(item, "uncertain", False)),
        }
    if reading.letter.letter_sha256:
        out["_letter"] = {
            "sha256": reading.letter.letter_sha256,
            "page": reading.letter.page,
            "score": reading.letter.score,
            "reasons": list(reading.letter.reasons),
        }
    return out


def attach_to_dossier(
    *,
    session: Session,
    blobs: BlobStore,
    config: Config,
    message: Message,
    analysis: Analysis,
    dossier: Dossier,
    actor: str,
    note: str | None = None,
) -> Filed:
    """Staff attach a message waiting for review to a dossier (``mailbot messages attach``).

    Its pieces and fields join the dossier as a follow-up's would (fields
    only fill what is missing), completeness is evaluated again, and the
    decision is audited with ``actor`` and ``note``. Nobody is answered:
    staff write to whom they choose.
    """
    now = utcnow()
    previous = {"status": message.status, "reason": message.reason, "verdict": message.verdict}
    message.status = MessageStatus.FILED
    message.verdict = Verdict.FOLLOW_UP
    message.reason = None
    message.error = None
    message.dossier_id = dossier.id
    message.updated_at = now
    session.add(message)
    outcome = Filed(
        message_pk=message.id,
        status=MessageStatus.FILED,
        verdict=Verdict.FOLLOW_UP,
        duplicate=False,
        dossier_reference=dossier.reference,
        content_kept=True,
    )
    filing = Filing(
        session=session,
        blobs=blobs,
        config=config,
        analysis=analysis,
        message=message,
        outcome=outcome,
        now=now,
    )
    completed = add_to_dossier(filing, dossier=dossier)
    repo.record_event(
        session=session,
        actor=actor,
        action="message.attached",
        dossier=dossier,
        message=message,
        details={
            "previous": previous,
            "note": note,
            "missing": list(dossier.missing or []),
            "status": dossier.status,
        },
    )
    return replace(outcome, dossier_completed=completed)
