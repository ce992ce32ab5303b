"""Filing an analysed message: ledger, sightings, blobs, dossiers, pieces, audit.

``file_analysis`` runs inside the caller's transaction and writes everything
a message implies; the caller commits once, then acts on the IMAP server.
Blobs are written first (content-addressed and idempotent), so a crash
before the commit leaves at worst an unreferenced blob, never a row pointing
at nothing.

Filing decides nothing about a message: the chain's second stage runs first
(in the same transaction, ``Analyser.after_reading``), then ``HANDLERS``
maps the verdict to the handler that acts on it (open a dossier, join one,
keep the ledger row only). Updating a dossier with a message's pieces and
fields is ``mailbot.dossier_update``; the types filing is handed and gives
back are in ``mailbot.filed``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from datetime import datetime
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from mailbot.config import Config, Verdict
from mailbot.dossier_update import add_pieces, add_to_dossier, open_doubts, stored_evidence
from mailbot.dossier_update import attach_to_dossier as attach_to_dossier
from mailbot.filed import Filed as Filed
from mailbot.filed import Filing
from mailbot.filed import Position as Position
from mailbot.open_dossiers import StoredOpenDossiers
from mailbot.pipeline import Analyser, Analysis, Reading
from mailbot.replies import choose_kind, plan_reply
from parsers.checks import FIELD_PREFIX, describe_missing
from parsers.classify import Classification, RuleHit
from parsers.reasons import REVIEW_REASON_OF_RULE, ReviewReason
from parsers.types import ParsedMail
from storage import repositories as repo
from storage.blobs import BlobStore
from storage.models import (
    SUBJECT_MAX_LENGTH,
    Dossier,
    DossierStatus,
    Message,
    MessageStatus,
    OutboxKind,
    PieceRole,
    ServerAction,
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


# Lists of column values shared by a run's rows, by (column, source value).
_Shared = dict[tuple[str, tuple[Any, ...]], list[Any]]


def dedup_key(analysis: Analysis) -> tuple[str, str]:
    sha = _sha256(analysis)
    message_id = analysis.mail.message_id if analysis.mail else None
    return dedup_key_for(message_id, sha), sha


def _sha256(analysis: Analysis) -> str:
    if analysis.raw_path is not None and not analysis.raw:
        digest = hashlib.sha256()
        with analysis.raw_path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return hashlib.sha256(analysis.raw).hexdigest()


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
    reason = _reason_of(analysis, status)
    keep = status != MessageStatus.IGNORED
    raw_blob = None
    if keep:
        # A spooled message goes to the store from its file, not through memory.
        path = analysis.raw_path
        raw_blob = blobs.put_file(path) if path is not None else blobs.put(analysis.raw)
    mail = analysis.mail
    message = Message(
        **_ledger_values(
            analysis,
            key=key,
            sha=sha,
            status=status,
            verdict=verdict,
            error=error,
            raw_blob=raw_blob,
            now=now,
            reason=reason,
        )
    )
    row, inserted = repo.add_message(session=session, message=message)
    if not inserted:
        # Another worker filed it a moment ago (same message, other mailbox).
        return known_message(session=session, message=row, position=position)
    _sight(session, row, position)

    outcome = Filed(
        message_pk=row.id, status=status, verdict=verdict, duplicate=False, content_kept=keep
    )
    if analysis.failed or mail is None:
        repo.record_event(
            session=session,
            actor=actor,
            action="message.failed",
            message=row,
            details={"error": error},
        )
        return outcome
    return _file_content(
        Filing(
            session=session,
            blobs=blobs,
            config=config,
            analysis=analysis,
            message=row,
            outcome=outcome,
            now=now,
        )
    )


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
    # Equal traces and warnings share one value, so that it is converted once.
    shared: _Shared = {}
    for analysis, position in items:
        key, sha = dedup_key(analysis)
        status, verdict, error = _status_of(analysis)
        if status != MessageStatus.IGNORED:
            raise ValueError(f"file_ignored given a message to file: {status}")
        values = _ledger_values(
            analysis,
            key=key,
            sha=sha,
            status=status,
            verdict=verdict,
            error=error,
            raw_blob=None,
            now=now,
            shared=shared,
        )
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
    """Ledger rows (column values) and their sightings, each table in one executemany.

    A dedup key already in the ledger, or twice in ``entries``, gets the
    usual ``known_message`` treatment (a sighting of the existing row, its
    server action pending), or ``server_action`` too when ``known_too``.
    """
    keys = {values["dedup_key"] for values, _p in entries}
    known: dict[str, Message | int] = {}
    if repo.ledger_ids(session=session, dedup_keys=keys):
        # Rows only for the few already there: most runs have none.
        known = {
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
    ids = repo.insert_ledger_rows(session=session, rows=rows)
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
        filed.append(
            Filed(
                message_pk=ids[target],
                status=values["status"],
                verdict=values["verdict"],
                duplicate=False,
            )
        )
    repo.insert_sightings(session=session, rows=sightings)
    return filed


def _ledger_values(
    analysis: Analysis,
    *,
    key: str,
    sha: str,
    status: str,
    verdict: str | None,
    error: str | None,
    raw_blob: str | None,
    now: datetime,
    reason: str | None = None,
    shared: _Shared | None = None,
) -> dict[str, Any]:
    """A ledger row's column values; ``shared``: one list for equal traces, equal warnings."""
    mail = analysis.mail
    classification = analysis.classification
    return dict(
        dedup_key=key,
        message_id=mail.message_id if mail else None,
        sha256=sha,
        raw_blob=raw_blob,
        size=analysis.size,
        sender=(mail.sender if mail else "") or "",
        sender_name=mail.sender_name if mail else None,
        subject=((mail.subject if mail else "") or "")[:SUBJECT_MAX_LENGTH],
        date_header=mail.date if mail else None,
        headers=_ledger_headers(mail),
        verdict=verdict,
        rule_trace=_rule_trace(classification, shared),
        status=status,
        reason=reason,
        error=error,
        warnings=_warnings(analysis, shared),
        dossier_id=None,
        first_seen_at=now,
        updated_at=now,
        attempts=1,
    )


# The fields of a trace line, all of them: equal keys, equal JSON. Hashing
# them as a plain tuple costs half what hashing the RuleHit objects does.
_TRACE_LINE = attrgetter(*(field.name for field in fields(RuleHit)))


def _rule_trace(
    classification: Classification | None,
    shared: _Shared | None,
) -> list[Any]:
    if classification is None:
        return []
    if shared is None:
        return classification.trace_as_json()
    key = ("trace", tuple(map(_TRACE_LINE, classification.trace)))
    found = shared.get(key)
    if found is None:
        found = shared[key] = classification.trace_as_json()
    return found


def _warnings(analysis: Analysis, shared: _Shared | None) -> list[Any]:
    if shared is None:
        return list(analysis.warnings)
    key = ("warnings", analysis.warnings)
    found = shared.get(key)
    if found is None:
        found = shared[key] = list(analysis.warnings)
    return found


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
    message.reason = _reason_of(analysis, status)
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
    outcome = Filed(
        message_pk=message.id, status=status, verdict=verdict, duplicate=False, content_kept=True
    )
    if analysis.failed or analysis.mail is None:
        return outcome
    return _file_content(
        Filing(
            session=session,
            blobs=blobs,
            config=config,
            analysis=analysis,
            message=message,
            outcome=outcome,
            now=now,
        )
    )


# The ledger status of a message, by the verdict of its analysis.
STATUS_OF_VERDICT: dict[Verdict, MessageStatus] = {
    Verdict.CANDIDATURE: MessageStatus.FILED,
    Verdict.FOLLOW_UP: MessageStatus.FILED,
    Verdict.NEEDS_REVIEW: MessageStatus.NEEDS_REVIEW,
    Verdict.NOT_CANDIDATURE: MessageStatus.IGNORED,
    Verdict.AUTO_REPLY: MessageStatus.IGNORED,
}


def _status_of(analysis: Analysis) -> tuple[str, str | None, str | None]:
    """(status, verdict recorded, error detail) of an analysed message."""
    if analysis.failed or analysis.verdict is None:
        return MessageStatus.FAILED, None, _error_detail(analysis.error)
    verdict = analysis.verdict
    status = STATUS_OF_VERDICT[Verdict(verdict)]
    classification = analysis.classification
    if classification is not None and classification.verdict is Verdict.FOLLOW_UP:
        # Joined to a dossier: recorded as a follow-up even when its reading
        # needs review (then its status says so).
        verdict = Verdict.FOLLOW_UP
    return status, verdict, None


# Prefixes of ``Analysis.error`` that the reason code now says.
_ERROR_PREFIXES = ("parse error: ", "analysis error: ", "filing error: ")


def _error_detail(error: str | None) -> str | None:
    """The free-text detail of a failure, without the words its reason code says."""
    if error is None:
        return None
    for prefix in _ERROR_PREFIXES:
        if error.startswith(prefix):
            return error[len(prefix) :]
    return error


def _reason_of(analysis: Analysis, status: str) -> ReviewReason | None:
    """The reason code of a message that waits for staff (needs_review or failed)."""
    if status == MessageStatus.FAILED:
        return analysis.failure or ReviewReason.ANALYSIS_ERROR
    if status != MessageStatus.NEEDS_REVIEW:
        return None
    classification, reading = analysis.classification, analysis.reading
    if classification is not None:
        code = REVIEW_REASON_OF_RULE.get(classification.decided_by)
        if code is not None and classification.verdict is Verdict.NEEDS_REVIEW:
            return code
    if reading is not None and reading.needs_review:
        if reading.over_budget:
            return ReviewReason.OVER_BUDGET
        if reading.dossier.needs_review:
            return ReviewReason.DOSSIER_UNCERTAIN
        return ReviewReason.UNREADABLE_ATTACHMENT
    if analysis.mail is not None and analysis.mail.over_limits:
        return ReviewReason.OVER_LIMITS
    return ReviewReason.UNCERTAIN_SCORE


def _file_content(filing: Filing) -> Filed:
    """Act on the chain's verdict: one handler per verdict, none of them deciding."""
    return HANDLERS[filing.classification.verdict](filing)


def _ledger_only(filing: Filing) -> Filed:
    """Not for us, or for staff to review: the ledger row (and the raw message) is all."""
    return filing.outcome


def _join_dossier(filing: Filing) -> Filed:
    """A follow-up: its pieces, fields and body answers join the dossier the chain named.

    A follow-up that brings nothing the service can read (no attachment, no
    answer in its body) is joined to the dossier but waits for staff
    (``FOLLOW_UP_UNREAD``): a person reads it, and the applicant is told it
    was passed on to the service.
    """
    session, message, reference = filing.session, filing.message, filing.classification.reference
    dossier = repo.get_dossier(session=session, reference=reference) if reference else None
    if dossier is None:
        message.status = MessageStatus.NEEDS_REVIEW
        message.reason = ReviewReason.UNKNOWN_DOSSIER
        message.error = reference or ""
        session.add(message)
        return replace(filing.outcome, status=MessageStatus.NEEDS_REVIEW)
    previous_missing = list(dossier.missing or [])
    asked = _asked_fields(filing, dossier=dossier)
    completed = add_to_dossier(filing, dossier=dossier)
    message.dossier_id = dossier.id
    session.add(message)
    repo.record_event(
        session=session,
        actor=filing.rule_actor,
        action="dossier.follow_up",
        dossier=dossier,
        message=message,
        details={"missing": list(dossier.missing), "status": dossier.status},
    )
    outcome = replace(
        filing.outcome, dossier_reference=dossier.reference, dossier_completed=completed
    )
    if message.status == MessageStatus.FILED and not _brings_anything(filing, asked=asked):
        message.status = MessageStatus.NEEDS_REVIEW
        message.reason = ReviewReason.FOLLOW_UP_UNREAD
        session.add(message)
        repo.record_event(
            session=session,
            actor=filing.rule_actor,
            action="message.passed_on",
            dossier=dossier,
            message=message,
            details={"reason": ReviewReason.FOLLOW_UP_UNREAD},
        )
        _plan(filing, dossier=dossier, kind=OutboxKind.PASSED_ON)
        return replace(outcome, status=MessageStatus.NEEDS_REVIEW)
    _reply(filing, dossier=dossier, completed=completed, previous_missing=previous_missing)
    return outcome


def _asked_fields(filing: Filing, *, dossier: Dossier) -> set[str]:
    """The fields a follow-up may answer: those the dossier lacks or holds with doubt."""
    fields, evidence = dossier.fields or {}, dossier.evidence or {}
    missing = {
        code.removeprefix(FIELD_PREFIX)
        for code in dossier.missing or []
        if code.startswith(FIELD_PREFIX)
    }
    return missing | set(open_doubts(fields=fields, evidence=evidence, rules=filing.config.rules))


def _brings_anything(filing: Filing, *, asked: set[str]) -> bool:
    """Whether a follow-up carries a piece, or an answer to a field the dossier lacked.

    A value typed in the body for a field already known (a phone number in a
    signature) does not make a question to the service something to file.
    """
    reading = filing.analysis.reading
    if reading is None:
        return bool(filing.mail.attachments)
    if reading.answers is not None and asked & set(reading.answers.fields):
        return True
    return any(
        reading.roles.get(attachment.sha256, PieceRole.SUPPORTING) != PieceRole.IGNORED
        for attachment in filing.mail.attachments
    )


def _open_dossier(filing: Filing) -> Filed:
    """A candidature opens a dossier (a retried one updates the dossier it opened)."""
    reading, message = filing.analysis.reading, filing.message
    if reading is None:
        return filing.outcome
    if message.dossier_id is not None:
        dossier = filing.session.get(Dossier, message.dossier_id)
        assert dossier is not None
        previous_missing = list(dossier.missing or [])
        completed = add_to_dossier(filing, dossier=dossier)
        _reply(filing, dossier=dossier, completed=completed, previous_missing=previous_missing)
        return replace(
            filing.outcome, dossier_reference=dossier.reference, dossier_completed=completed
        )
    mail = filing.mail
    dossier = repo.create_dossier(
        session=filing.session,
        year=_year(filing.now, filing.config),
        sender=mail.sender,
        sender_name=mail.sender_name or None,
        fields=reading.fields,
        evidence=stored_evidence(reading),
        missing=list(reading.missing),
        status=_new_dossier_status(reading),
        received_at=filing.now,
        actor=filing.rule_actor,
    )
    message.dossier_id = dossier.id
    filing.session.add(message)
    add_pieces(filing, dossier=dossier)
    _reply(filing, dossier=dossier, created=True)
    return replace(filing.outcome, dossier_reference=dossier.reference, dossier_created=True)


# What filing does for each verdict of the chain.
HANDLERS: dict[Verdict, Callable[[Filing], Filed]] = {
    Verdict.CANDIDATURE: _open_dossier,
    Verdict.FOLLOW_UP: _join_dossier,
    Verdict.NEEDS_REVIEW: _ledger_only,
    Verdict.NOT_CANDIDATURE: _ledger_only,
    Verdict.AUTO_REPLY: _ledger_only,
}


def _new_dossier_status(reading: Reading) -> str:
    if reading.needs_review:
        return DossierStatus.NEEDS_REVIEW
    return DossierStatus.INCOMPLETE if reading.missing else DossierStatus.COMPLETE


def _reply(
    filing: Filing,
    *,
    dossier: Dossier,
    created: bool = False,
    completed: bool = False,
    previous_missing: list[str] | None = None,
) -> None:
    """Queue the reply the event calls for; staff, not the applicant, hear of reviews.

    A dossier waiting for staff because required fields were read with doubt
    is the one review the applicant hears of: a neutral acknowledgement.
    """
    in_doubt = dossier.status == DossierStatus.NEEDS_REVIEW and bool(
        open_doubts(
            fields=dossier.fields or {}, evidence=dossier.evidence or {}, rules=filing.config.rules
        )
    )
    if dossier.status not in (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE) and not in_doubt:
        return
    missing = list(dossier.missing or [])
    kind = choose_kind(
        created=created,
        completed=completed,
        missing=missing,
        previous_missing=previous_missing,
        in_doubt=in_doubt,
    )
    _plan(filing, dossier=dossier, kind=kind)


def _plan(filing: Filing, *, dossier: Dossier, kind: str | None) -> None:
    config = filing.config
    missing = list(dossier.missing or [])
    plan_reply(
        session=filing.session,
        config=config,
        mailbox_name=filing.analysis.mailbox,
        mail=filing.mail,
        message=filing.message,
        dossier=dossier,
        kind=kind,
        missing_text=describe_missing(missing, rules=config.rules),
        now=filing.now,
    )


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
        message_pk=message.id,
        status=message.status,
        verdict=message.verdict,
        duplicate=True,
        dossier_reference=reference,
        content_kept=message.raw_blob is not None,
    )


def _ledger_headers(mail: ParsedMail | None) -> dict[str, Any]:
    if mail is None:
        return {}
    headers = mail.headers
    return {name: list(headers[name][:5]) for name in LEDGER_HEADERS if name in headers}


def _year(now: datetime, config: Config) -> int:
    return now.astimezone(ZoneInfo(config.settings.service.timezone)).year
