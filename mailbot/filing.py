"""Filing an analysed message: ledger, sightings, blobs, dossiers, pieces, audit.

``file_analysis`` runs inside the caller's transaction and writes everything
a message implies; the caller commits once, then acts on the IMAP server.
Blobs are written first (content-addressed and idempotent), so a crash
before the commit leaves at worst an unreferenced blob, never a row pointing
at nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlmodel import Session, col, select

from mailbot.config import Config, Verdict
from mailbot.open_dossiers import StoredOpenDossiers
from mailbot.pipeline import Analyser, Analysis, Reading
from mailbot.replies import choose_kind, plan_reply
from parsers.checks import describe_missing, missing_pieces
from parsers.types import ParsedMail
from storage import repositories as repo
from storage.blobs import BlobStore
from storage.models import (
    SUBJECT_MAX_LENGTH,
    Dossier,
    DossierStatus,
    Message,
    MessageStatus,
    Piece,
    PieceRole,
    ServerAction,
    Sighting,
    dedup_key_for,
    utcnow,
)

log = logging.getLogger(__name__)

# Headers kept in the ledger for every message, including those whose content is not kept.
LEDGER_HEADERS = (
    "from",
    "to",
    "cc",
    "date",
    "message-id",
    "in-reply-to",
    "return-path",
    "auto-submitted",
    "precedence",
    "list-id",
    "content-type",
)
# Dossier statuses the service may change by itself; staff decisions stay.
SERVICE_STATUSES = (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE, DossierStatus.NEEDS_REVIEW)


@dataclass(frozen=True)
class Position:
    """Where a message sits on the server."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Filed:
    message_pk: int
    status: str
    verdict: str | None
    duplicate: bool
    dossier_reference: str | None = None
    dossier_created: bool = False
    dossier_completed: bool = False
    content_kept: bool = False


def dedup_key(analysis: Analysis) -> tuple[str, str]:
    sha = hashlib.sha256(analysis.raw).hexdigest()
    message_id = analysis.mail.message_id if analysis.mail else None
    return dedup_key_for(message_id, sha), sha


def file_analysis(
    *,
    session: Session,
    blobs: BlobStore,
    config: Config,
    analysis: Analysis,
    position: Position | None,
    actor: str = "system",
    now: datetime | None = None,
    analyser: Analyser | None = None,
) -> Filed:
    """Write what ``analysis`` implies; a message already in the ledger only gains a sighting.

    The chain's second stage runs here, in the caller's transaction, so that
    it sees the dossiers filed a moment ago. ``analyser``: the one that
    analysed the message (a new one from ``config`` when not given).
    """
    key, sha = dedup_key(analysis)
    existing = repo.find_message(session=session, dedup_key=key)
    if existing is not None:
        return known_message(session=session, message=existing, position=position)

    now = now or utcnow()
    analysis = (analyser or Analyser(config)).after_reading(
        analysis, open_dossiers=StoredOpenDossiers(session)
    )
    status, verdict, error = _status_of(analysis)
    keep = status != MessageStatus.IGNORED
    raw_blob = blobs.put(analysis.raw) if keep else None
    mail = analysis.mail
    message = _ledger_row(analysis, key, sha, status, verdict, error, raw_blob, now)
    row, inserted = repo.add_message(session=session, message=message)
    if not inserted:
        # Another worker filed it a moment ago (same message, other mailbox).
        return known_message(session=session, message=row, position=position)
    _sight(session, row, position)

    outcome = Filed(row.id, status, verdict, duplicate=False, content_kept=keep)
    if analysis.failed or mail is None:
        repo.record_event(
            session=session,
            actor=actor,
            action="message.failed",
            message=row,
            details={"error": error},
        )
        return outcome
    return _file_content(session, blobs, config, analysis, row, outcome, actor, now)


def is_quiet(analysis: Analysis) -> bool:
    """Mail that is not for us: a ledger row and a sighting are all it needs."""
    return _status_of(analysis)[0] == MessageStatus.IGNORED


def file_ignored(
    *,
    session: Session,
    items: Sequence[tuple[Analysis, Position]],
    settled: bool,
    now: datetime | None = None,
) -> list[Filed]:
    """File a run of mail that is not for us (``is_quiet``) at once, in the caller's transaction.

    What ``file_analysis`` writes for each of them (ledger row, sighting, no
    content kept), with one dedup look-up and one bulk insert of each table
    instead of a savepoint and a look-up per row. A concurrent insert of the
    same dedup key or position raises IntegrityError: the caller rolls back
    and files them one by one. ``settled``: no server action is wanted.
    """
    now = now or utcnow()
    entries = []
    for analysis, position in items:
        key, sha = dedup_key(analysis)
        status, verdict, error = _status_of(analysis)
        if status != MessageStatus.IGNORED:
            raise ValueError(f"file_ignored given a message to file: {status}")
        values = _ledger_values(analysis, key, sha, status, verdict, error, None, now)
        entries.append((values, position))
    action = ServerAction.NONE if settled else ServerAction.PENDING
    return bulk_ledger(session=session, entries=entries, server_action=action, now=now)


def bulk_ledger(
    *,
    session: Session,
    entries: Sequence[tuple[dict[str, Any], Position]],
    server_action: str,
    now: datetime,
    known_too: bool = False,
) -> list[Filed]:
    """Ledger rows (column values) and their sightings, each table in one INSERT.

    A dedup key already in the ledger, or twice in ``entries``, gets the
    usual ``known_message`` treatment (a sighting of the existing row, its
    server action pending), or ``server_action`` too when ``known_too``.
    """
    keys = {values["dedup_key"] for values, _p in entries}
    known: dict[str, Message | int] = {
        row.dedup_key: row
        for row in session.exec(select(Message).where(col(Message.dedup_key).in_(keys)))
    }
    rows: list[dict[str, Any]] = []
    # Per message: its row in the ledger, or the index of the row to insert.
    plan: list[tuple[Message | int, Position, bool]] = []
    for values, position in entries:
        target = known.get(values["dedup_key"])
        if target is not None:
            plan.append((target, position, True))
            continue
        rows.append(values)
        known[values["dedup_key"]] = len(rows) - 1
        plan.append((len(rows) - 1, position, False))
    ids: list[int] = []
    if rows:
        inserted = insert(Message).returning(Message.id, sort_by_parameter_order=True)
        ids = list(session.execute(inserted, rows).scalars())
    sightings: list[dict[str, Any]] = []
    filed: list[Filed] = []
    for target, position, duplicate in plan:
        if duplicate:
            # Seen before (other mailbox, rescan, or twice in this run): the usual path.
            row = target if isinstance(target, Message) else session.get(Message, ids[target])
            assert row is not None
            if not known_too:
                filed.append(known_message(session=session, message=row, position=position))
                continue
            repo.add_sighting(
                session=session,
                message=row,
                mailbox=position.mailbox,
                folder=position.folder,
                uidvalidity=position.uidvalidity,
                uid=position.uid,
                server_action=server_action,
            )
            filed.append(_duplicate(session, row))
            continue
        assert isinstance(target, int)
        values = rows[target]
        sightings.append(
            {
                "message_pk": ids[target],
                "mailbox": position.mailbox,
                "folder": position.folder,
                "uidvalidity": position.uidvalidity,
                "uid": position.uid,
                "server_action": server_action,
                "seen_at": now,
            }
        )
        filed.append(Filed(ids[target], values["status"], values["verdict"], duplicate=False))
    if sightings:
        session.execute(insert(Sighting), sightings)
    return filed


def _ledger_row(
    analysis: Analysis,
    key: str,
    sha: str,
    status: str,
    verdict: str | None,
    error: str | None,
    raw_blob: str | None,
    now: datetime,
) -> Message:
    return Message(**_ledger_values(analysis, key, sha, status, verdict, error, raw_blob, now))


def _ledger_values(
    analysis: Analysis,
    key: str,
    sha: str,
    status: str,
    verdict: str | None,
    error: str | None,
    raw_blob: str | None,
    now: datetime,
) -> dict[str, Any]:
    mail = analysis.mail
    return dict(
        dedup_key=key,
        message_id=mail.message_id if mail else None,
        sha256=sha,
        raw_blob=raw_blob,
        size=len(analysis.raw),
        sender=(mail.sender if mail else "") or "",
        sender_name=mail.sender_name if mail else None,
        subject=((mail.subject if mail else "") or "")[:SUBJECT_MAX_LENGTH],
        date_header=mail.date if mail else None,
        headers=_ledger_headers(mail),
        verdict=verdict,
        rule_trace=analysis.classification.trace_as_json() if analysis.classification else [],
        status=status,
        error=error,
        warnings=list(analysis.warnings),
        first_seen_at=now,
        updated_at=now,
        attempts=1,
    )


def refile(
    *,
    session: Session,
    blobs: BlobStore,
    config: Config,
    message: Message,
    analysis: Analysis,
    actor: str,
    analyser: Analyser | None = None,
) -> Filed:
    """Run a quarantined message through filing again (``mailbot messages retry``)."""
    now = utcnow()
    own = session.get(Dossier, message.dossier_id) if message.dossier_id is not None else None
    analysis = (analyser or Analyser(config)).after_reading(
        analysis,
        open_dossiers=StoredOpenDossiers(session),
        filed_in=own.reference if own is not None else None,
    )
    status, verdict, error = _status_of(analysis)
    message.status = status
    message.verdict = verdict
    message.error = error
    message.warnings = list(analysis.warnings)
    message.rule_trace = analysis.classification.trace_as_json() if analysis.classification else []
    message.attempts += 1
    message.updated_at = now
    if status == MessageStatus.IGNORED:
        # Not for us after all: forget the content, as for any other such mail.
        message.raw_blob = None
    session.add(message)
    session.flush()
    repo.record_event(
        session=session,
        actor=actor,
        action="message.retried",
        message=message,
        details={"status": status, "verdict": verdict, "error": error},
    )
    outcome = Filed(message.id, status, verdict, duplicate=False, content_kept=True)
    if analysis.failed or analysis.mail is None:
        return outcome
    return _file_content(session, blobs, config, analysis, message, outcome, actor, now)


def _status_of(analysis: Analysis) -> tuple[str, str | None, str | None]:
    if analysis.failed:
        return MessageStatus.FAILED, None, analysis.error
    verdict = analysis.verdict
    if verdict in (Verdict.AUTO_REPLY, Verdict.NOT_CANDIDATURE):
        return MessageStatus.IGNORED, verdict, None
    joined = analysis.classification and analysis.classification.verdict == Verdict.FOLLOW_UP
    if verdict == Verdict.NEEDS_REVIEW:
        # A message joined to a dossier is recorded as a follow-up even when
        # its reading needs review.
        return MessageStatus.NEEDS_REVIEW, Verdict.FOLLOW_UP if joined else verdict, None
    return MessageStatus.FILED, verdict, None


def _file_content(
    session: Session,
    blobs: BlobStore,
    config: Config,
    analysis: Analysis,
    message: Message,
    outcome: Filed,
    actor: str,
    now: datetime,
) -> Filed:
    mail = analysis.mail
    assert mail is not None and analysis.classification is not None
    reading = analysis.reading
    classification = analysis.classification
    rule_actor = f"rule:{classification.decided_by}"

    if classification.verdict == Verdict.FOLLOW_UP:
        dossier = (
            repo.get_dossier(session=session, reference=classification.reference)
            if classification.reference
            else None
        )
        if dossier is None:
            message.status = MessageStatus.NEEDS_REVIEW
            message.error = f"follow-up names an unknown dossier {classification.reference!r}"
            session.add(message)
            return _replace(outcome, status=MessageStatus.NEEDS_REVIEW)
        previous_missing = list(dossier.missing or [])
        completed = _add_to_dossier(session, blobs, config, dossier, message, mail, reading, now)
        message.dossier_id = dossier.id
        session.add(message)
        repo.record_event(
            session=session,
            actor=rule_actor,
            action="dossier.follow_up",
            dossier=dossier,
            message=message,
            details={"missing": list(dossier.missing), "status": dossier.status},
        )
        _reply(session, config, analysis, message, dossier, False, completed, previous_missing, now)
        return _replace(outcome, dossier_reference=dossier.reference, dossier_completed=completed)

    if classification.verdict == Verdict.CANDIDATURE and reading is not None:
        if message.dossier_id is not None:
            # A retried message that already opened a dossier updates it.
            dossier = session.get(Dossier, message.dossier_id)
            assert dossier is not None
            previous_missing = list(dossier.missing or [])
            completed = _add_to_dossier(
                session, blobs, config, dossier, message, mail, reading, now
            )
            _reply(
                session, config, analysis, message, dossier, False, completed, previous_missing, now
            )
            return _replace(
                outcome, dossier_reference=dossier.reference, dossier_completed=completed
            )
        status = (
            DossierStatus.NEEDS_REVIEW
            if reading.needs_review
            else (DossierStatus.INCOMPLETE if reading.missing else DossierStatus.COMPLETE)
        )
        dossier = repo.create_dossier(
            session=session,
            year=_year(now, config),
            sender=mail.sender,
            sender_name=mail.sender_name or None,
            fields=reading.fields,
            evidence=_evidence(reading),
            missing=list(reading.missing),
            status=status,
            received_at=now,
            actor=rule_actor,
        )
        message.dossier_id = dossier.id
        session.add(message)
        _add_pieces(session, blobs, dossier, message, mail, reading)
        _reply(session, config, analysis, message, dossier, True, False, None, now)
        return _replace(outcome, dossier_reference=dossier.reference, dossier_created=True)

    # needs_review without a dossier: the raw message is kept for staff.
    return outcome


def _reply(
    session: Session,
    config: Config,
    analysis: Analysis,
    message: Message,
    dossier: Dossier,
    created: bool,
    completed: bool,
    previous_missing: list[str] | None,
    now: datetime,
) -> None:
    """Queue the reply the event calls for; staff, not the applicant, hear of reviews."""
    if dossier.status not in (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE):
        return
    missing = list(dossier.missing or [])
    kind = choose_kind(
        created=created, completed=completed, missing=missing, previous_missing=previous_missing
    )
    assert analysis.mail is not None
    plan_reply(
        session=session,
        config=config,
        mailbox_name=analysis.mailbox,
        mail=analysis.mail,
        message=message,
        dossier=dossier,
        kind=kind,
        missing_text=describe_missing(missing, rules=config.rules),
        now=now,
    )


def _add_to_dossier(
    session: Session,
    blobs: BlobStore,
    config: Config,
    dossier: Dossier,
    message: Message,
    mail: ParsedMail,
    reading: Reading | None,
    now: datetime,
) -> bool:
    """Join a message's pieces and fields to a dossier; True when it became complete."""
    _add_pieces(session, blobs, dossier, message, mail, reading)
    fields = dict(dossier.fields or {})
    evidence = dict(dossier.evidence or {})
    if reading is not None:
        # The latest document wins for the fields it states (a corrected dossier).
        fields.update(reading.fields)
        evidence.update(_evidence(reading))
    roles = {
        p.role for p in session.exec(select(Piece).where(Piece.dossier_id == dossier.id)).all()
    }
    missing = list(
        missing_pieces(
            fields=fields,
            dossier_present=PieceRole.DOSSIER in roles,
            # A letter may be a page of the dossier's PDF: then only the evidence says so.
            letter_present=PieceRole.LETTER in roles or "_letter" in evidence,
            rules=config.rules,
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
                message=message,
                details={"old": old_status, "new": new_status, "missing": missing},
            )
    session.add(dossier)
    session.flush()
    return completed


def _add_pieces(
    session: Session,
    blobs: BlobStore,
    dossier: Dossier,
    message: Message,
    mail: ParsedMail,
    reading: Reading | None,
) -> None:
    roles: Mapping[str, str] = reading.roles if reading else {}
    for attachment in mail.attachments:
        if not attachment.data:
            continue  # over the size limit: named in the message's warnings
        sha = blobs.put(attachment.data)
        repo.add_piece(
            session=session,
            dossier=dossier,
            message=message,
            blob_sha256=sha,
            filename=attachment.filename,
            content_type=attachment.content_type,
            size=attachment.size,
            role=roles.get(attachment.sha256, PieceRole.SUPPORTING),
            warnings=list(attachment.warnings),
        )


def _evidence(reading: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in reading.dossier.evidence.items():
        out[key] = {
            "source": getattr(item, "source", None),
            "raw": getattr(item, "raw", None),
            "layer": getattr(item, "layer", None),
        }
    if reading.letter.letter_sha256:
        out["_letter"] = {
            "sha256": reading.letter.letter_sha256,
            "page": reading.letter.page,
            "score": reading.letter.score,
            "reasons": list(reading.letter.reasons),
        }
    return out


def _sight(session: Session, message: Message, position: Position | None) -> None:
    if position is None:
        return
    repo.add_sighting(
        session=session,
        message=message,
        mailbox=position.mailbox,
        folder=position.folder,
        uidvalidity=position.uidvalidity,
        uid=position.uid,
    )


def known_message(*, session: Session, message: Message, position: Position | None) -> Filed:
    """A message already in the ledger (other mailbox, rescan): record where it was seen."""
    _sight(session, message, position)
    return _duplicate(session, message)


def _duplicate(session: Session, message: Message) -> Filed:
    reference = None
    if message.dossier_id is not None:
        dossier = session.get(Dossier, message.dossier_id)
        reference = dossier.reference if dossier else None
    return Filed(
        message.id,
        message.status,
        message.verdict,
        duplicate=True,
        dossier_reference=reference,
        content_kept=message.raw_blob is not None,
    )


def _ledger_headers(mail: ParsedMail | None) -> dict[str, Any]:
    if mail is None:
        return {}
    return {name: list(mail.headers[name])[:5] for name in LEDGER_HEADERS if name in mail.headers}


def _year(now: datetime, config: Config) -> int:
    return now.astimezone(ZoneInfo(config.settings.service.timezone)).year


def _replace(outcome: Filed, **changes: Any) -> Filed:
    return replace(outcome, **changes)
