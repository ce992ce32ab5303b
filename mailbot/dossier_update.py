"""Updating a dossier with a message: its pieces, the fields still missing, its status.

A follow-up, a retried candidature, or a message staff attach
(``attach_to_dossier``) joins a dossier here: its attachments become
pieces, its fields only fill what is still missing (or was read with
doubt), completeness is evaluated again and a status change is audited.

A follow-up's own answers count too: values the applicant typed in the body
(``Reading.answers``: ``Lieu : …`` lines, values under our quoted notice)
fill the fields still missing, with the message as evidence.

Doubts: the stored evidence of a field keeps the reading's confidence and
doubt (``stored_evidence``); ``open_doubts`` names the required fields still
read with doubt. A dossier waiting for staff only because of such doubts
(status needs_review) leaves review once none is left (answered by the
applicant, corrected by staff): it becomes complete or incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlmodel import Session, select

from mailbot.config import Config, Rules, Verdict
from mailbot.filed import SERVICE_STATUSES, Filed, Filing
from mailbot.pipeline import Analysis, Reading, store_attachment
from parsers.checks import is_required, missing_pieces
from parsers.dossier import UNCERTAIN_BELOW, DossierReading
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
    rules = filing.config.rules
    add_pieces(filing, dossier=dossier)
    fields = dict(dossier.fields or {})
    evidence = dict(dossier.evidence or {})
    doubts_before = open_doubts(fields=fields, evidence=evidence, rules=rules)
    answered: list[str] = []
    if reading is not None:
        # A later message only fills what is still missing or was read with
        # doubt: a field already read (the applicant's e-mail, structure,
        # intitulé) changes only when staff correct it, never by mail.
        _fill(
            fields,
            evidence,
            values=reading.fields,
            new_evidence=stored_evidence(reading),
            doubts=doubts_before,
        )
        new_evidence = stored_evidence(reading)
        if "_letter" in new_evidence and "_letter" not in evidence:
            evidence["_letter"] = new_evidence["_letter"]
        classification = filing.analysis.classification
        is_follow_up = classification is not None and classification.verdict is Verdict.FOLLOW_UP
        if reading.answers is not None and is_follow_up:
            answered = _fill(
                fields,
                evidence,
                values=reading.answers.fields,
                new_evidence=answer_evidence(reading.answers, message_id=filing.mail.message_id),
                doubts=open_doubts(fields=fields, evidence=evidence, rules=rules),
            )
    if answered:
        repo.record_event(
            session=session,
            actor=filing.rule_actor,
            action="dossier.answers_read",
            dossier=dossier,
            message=filing.message,
            details={"fields": answered},
        )
    roles = {
        p.role for p in session.exec(select(Piece).where(Piece.dossier_id == dossier.id)).all()
    }
    missing = list(
        missing_pieces(
            fields=fields,
            dossier_present=PieceRole.DOSSIER in roles,
            # A letter may be a page of the dossier's PDF: then only the evidence says so.
            letter_present=PieceRole.LETTER in roles or "_letter" in evidence,
            rules=rules,
        )
    )
    doubts_after = open_doubts(fields=fields, evidence=evidence, rules=rules)
    old_status = dossier.status
    dossier.fields = fields
    dossier.evidence = evidence
    dossier.missing = missing
    dossier.updated_at = now
    completed = False
    if old_status in SERVICE_STATUSES:
        if reading is not None and reading.needs_review and not reading.in_doubt:
            new_status = DossierStatus.NEEDS_REVIEW
        elif doubts_after or (old_status == DossierStatus.NEEDS_REVIEW and not doubts_before):
            # Still in doubt, or waiting for staff for another reason: staff decide.
            new_status = DossierStatus.NEEDS_REVIEW
        else:
            new_status = DossierStatus.COMPLETE if not missing else DossierStatus.INCOMPLETE
        if new_status != old_status:
            completed = set_service_status(
                session=session,
                dossier=dossier,
                status=new_status,
                actor="system",
                message=filing.message,
                now=now,
            )
    session.add(dossier)
    session.flush()
    return completed


def set_service_status(
    *,
    session: Session,
    dossier: Dossier,
    status: str,
    actor: str,
    now: Any,
    message: Message | None = None,
) -> bool:
    """Move a dossier to the status its pieces call for, audited; True when it became complete."""
    old = dossier.status
    dossier.status = status
    completed = status == DossierStatus.COMPLETE
    if completed and dossier.completed_at is None:
        dossier.completed_at = now
    repo.record_event(
        session=session,
        actor=actor,
        action="dossier.status_changed",
        dossier=dossier,
        message=message,
        details={"old": old, "new": status, "missing": list(dossier.missing or [])},
    )
    return completed


def _fill(
    fields: dict[str, Any],
    evidence: dict[str, Any],
    *,
    values: Mapping[str, Any],
    new_evidence: Mapping[str, Any],
    doubts: Sequence[str],
) -> list[str]:
    """Fill the blank or doubtful fields from ``values`` (read with certainty); the keys filled."""
    filled = []
    for key, value in values.items():
        if _is_blank(value):
            continue
        if not (_is_blank(fields.get(key)) or key in doubts):
            continue
        found = new_evidence.get(key)
        if key in doubts and _is_doubtful(found):
            continue  # a doubt does not settle a doubt
        fields[key] = value
        if found is not None:
            evidence[key] = found
        filled.append(key)
    for key, found in new_evidence.items():
        # A field still blank that this message may hold, read with doubt: the
        # doubt is kept, so that nobody is told the field is missing.
        if key not in filled and _is_blank(fields.get(key)) and _is_doubtful(found):
            evidence[key] = found
    return filled


def open_doubts(
    *, fields: Mapping[str, Any], evidence: Mapping[str, Any], rules: Rules
) -> list[str]:
    """The required fields whose stored reading is uncertain (a person must check them)."""
    return [
        key
        for key in rules.fields
        if _is_doubtful(evidence.get(key)) and is_required(key, fields, rules)
    ]


def _is_doubtful(item: Any) -> bool:
    if not isinstance(item, Mapping):
        return False
    confidence = item.get("confidence")
    return isinstance(confidence, int | float) and confidence < UNCERTAIN_BELOW


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def add_pieces(filing: Filing, *, dossier: Dossier) -> None:
    reading = filing.analysis.reading
    roles: Mapping[str, str] = reading.roles if reading else {}
    for attachment in filing.mail.attachments:
        if not attachment.data:
            continue  # over the size limit: named in the message's warnings
        sha = store_attachment(filing.blobs, attachment)
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
    """The evidence of each field read, as the dossier keeps it (JSON), and where the letter is."""
    out = _evidence_rows(reading.dossier)
    if reading.letter.letter_sha256:
        out["_letter"] = {
            "sha256": reading.letter.letter_sha256,
            "page": reading.letter.page,
            "score": reading.letter.score,
            "reasons": list(reading.letter.reasons),
        }
    return out


def answer_evidence(answers: DossierReading, *, message_id: str | None) -> dict[str, Any]:
    """The evidence of answers typed in a message's body: the message is the source."""
    out = _evidence_rows(answers)
    for row in out.values():
        row["message_id"] = message_id
    return out


def _evidence_rows(reading: DossierReading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in reading.evidence.items():
        out[key] = {
            "source": item.source,
            "raw": item.raw,
            "layer": item.layer,
            "value": item.value,
            "confidence": item.confidence,
            "page": item.page,
            "doubt": item.doubt,
            # The back-office lists dossiers whose stored evidence says so.
            "uncertain": bool(item.uncertain),
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
