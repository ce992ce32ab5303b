"""Retention purge: delete what the rules of ``[retention]`` say has expired.

Expired are dossiers not updated for ``<status>_days`` (never one on legal
hold: those are listed as kept) with their messages, pieces, replies,
sightings and audit entries; ledger rows of mail whose content was never
kept, after ``ledger_days``; quarantined mail without a dossier, after
``needs_review_days``; digests (their summary row, or an undelivered
digest) after ``digest_days``, except the last one delivered (the next
digest starts where it ends); replies outside any dossier after
``ledger_days``. With ``delete_server_copies`` the IMAP copies of the
deleted candidature mail and the Sent copies of the deleted digests go too.
Deleted rows are overwritten in the SQLite file (``secure_delete``). The
deletion itself is the shared ``DeletionPlan``; this module decides what
has expired and writes the audit entries.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.config import RetentionSettings
from mailbot.privacy.compact import secure_delete_on
from mailbot.privacy.person import require_actor
from mailbot.privacy.plan import DeletionPlan, blob_sizes
from mailbot.privacy.reports import PurgedDossier, PurgeReport, isoformat_or_none
from mailbot.privacy.rows import transaction
from mailbot.privacy.server_rewrite import SentCopy, delete_sent_copies
from storage import repositories as repo
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    Message,
    Outbox,
    OutboxKind,
    OutboxStatus,
    utcnow,
)

log = logging.getLogger(__name__)


def purge(
    app: App, *, now: datetime | None = None, dry_run: bool = False, actor: str
) -> PurgeReport:
    """Delete what the retention rules say has expired (see the module docstring).

    ``dry_run`` computes the same report and changes nothing (no audit entry
    either). Dossiers expired but on legal hold are listed in ``held``.
    """
    require_actor(actor)
    now = now or utcnow()
    retention = app.config.settings.retention
    report = PurgeReport(dry_run=dry_run, now=now)
    with transaction(app, commit=not dry_run) as session:
        secure_delete_on(session)
        expired = _expired_dossiers(session, retention=retention, now=now, report=report)
        digests = _expired_digests(session, days=retention.digest_days, now=now)
        loose_replies = _expired_loose_replies(session, days=retention.ledger_days, now=now)
        ledger = _expired_messages(session, days=retention.ledger_days, now=now, content=False)
        quarantine = _expired_messages(
            session, days=retention.needs_review_days, now=now, content=True
        )
        plan = DeletionPlan.collect(
            session,
            dossiers=[d for d, _days in expired],
            message_ids=ledger | quarantine,
            reply_ids=set(digests) | loose_replies,
            with_server_copies=retention.delete_server_copies,
        )
        # The digests' audit entries (recipients, counts) go with them.
        plan.events.update(
            dict.fromkeys(_expired_digest_events(session, days=retention.digest_days, now=now))
        )
        plan.count_into(app, report)
        report.ledger_messages = len(ledger & set(plan.messages))
        report.quarantine_messages = len(quarantine & set(plan.messages))
        report.dossiers = _purged_dossiers(app, plan, expired)
        report.digests = len(digests)
        report.loose_replies = len(loose_replies)
        if dry_run:
            return report
        plan.delete_rows(session)
        _record_purge(session, report=report, retention=retention, actor=actor)
    plan.delete_blobs_and_server_copies(app, report)
    if retention.delete_server_copies and digests:
        report.server += delete_sent_copies(app, list(digests.values()))
    if not report.empty:
        log.info("retention purge: %s", report.summary())
    return report


def _record_purge(
    session: Session, *, report: PurgeReport, retention: RetentionSettings, actor: str
) -> None:
    """One audit entry per purged dossier, one for the loose messages."""
    for item in report.dossiers:
        repo.record_event(
            session=session,
            actor=actor,
            action="dossier.purged",
            details={
                "reference": item.reference,
                "status": item.status,
                "updated_at": isoformat_or_none(item.updated_at),
                "retention_days": item.retention_days,
                "counts": {
                    "messages": item.messages,
                    "pieces": item.pieces,
                    "replies": item.replies,
                    "events": item.events,
                    "blobs": item.blobs,
                },
            },
        )
    if (
        report.ledger_messages
        or report.quarantine_messages
        or report.digests
        or report.loose_replies
    ):
        repo.record_event(
            session=session,
            actor=actor,
            action="messages.purged",
            details={
                "ledger_messages": report.ledger_messages,
                "quarantine_messages": report.quarantine_messages,
                "digests": report.digests,
                "loose_replies": report.loose_replies,
                "ledger_days": retention.ledger_days,
                "quarantine_days": retention.needs_review_days,
                "digest_days": retention.digest_days,
            },
        )


def _expired_dossiers(
    session: Session, *, retention: RetentionSettings, now: datetime, report: PurgeReport
) -> list[tuple[Dossier, int]]:
    """Expired dossiers with their retention in days; those on legal hold go to ``held``."""
    expired: list[tuple[Dossier, int]] = []
    for status in DossierStatus:
        days = getattr(retention, f"{status.value}_days", 0)
        if days <= 0:
            continue  # kept forever
        cutoff = now - timedelta(days=days)
        rows = session.exec(
            select(Dossier)
            .where(Dossier.status == status.value, col(Dossier.updated_at) < cutoff)
            .order_by(col(Dossier.year), col(Dossier.number))
            # PostgreSQL: a legal hold set meanwhile waits for this transaction.
            .with_for_update()
        ).all()
        for dossier in rows:
            if dossier.legal_hold:
                report.held.append(dossier.reference)
            else:
                expired.append((dossier, days))
    expired.sort(key=lambda item: (item[0].year, item[0].number))
    report.held.sort()
    return expired


def _expired_messages(session: Session, *, days: int, now: datetime, content: bool) -> set[int]:
    """Messages in no dossier, whose content is (quarantine) or is not (ledger) kept."""
    if days <= 0:
        return set()
    cutoff = now - timedelta(days=days)
    kept = col(Message.raw_blob).is_not(None) if content else col(Message.raw_blob).is_(None)
    return set(
        session.exec(
            select(Message.id).where(
                col(Message.dossier_id).is_(None), kept, col(Message.updated_at) < cutoff
            )
        ).all()
    )


def _expired_digests(session: Session, *, days: int, now: datetime) -> dict[int, SentCopy]:
    """Digest rows older than ``days`` (id -> their Sent copy), but the last one delivered."""
    if days <= 0:
        return {}
    last_sent = session.exec(
        select(Outbox.id)
        .where(Outbox.kind == OutboxKind.DIGEST, Outbox.status == OutboxStatus.SENT)
        .order_by(col(Outbox.created_at).desc(), col(Outbox.id).desc())
        .limit(1)
    ).first()
    cutoff = now - timedelta(days=days)
    rows = session.exec(
        select(Outbox.id, Outbox.mailbox, Outbox.message_id).where(
            Outbox.kind == OutboxKind.DIGEST, col(Outbox.created_at) < cutoff
        )
    ).all()
    return {
        row_id: SentCopy(mailbox=mailbox, message_id=message_id)
        for row_id, mailbox, message_id in rows
        if row_id != last_sent
    }


def _expired_digest_events(session: Session, *, days: int, now: datetime) -> set[int]:
    """``digest.queued`` and ``digest.skipped`` audit entries older than ``days``."""
    if days <= 0:
        return set()
    cutoff = now - timedelta(days=days)
    return set(
        session.exec(
            select(Event.id).where(
                col(Event.action).in_(("digest.queued", "digest.skipped")),
                col(Event.dossier_id).is_(None),
                col(Event.at) < cutoff,
            )
        ).all()
    )


def _expired_loose_replies(session: Session, *, days: int, now: datetime) -> set[int]:
    """Replies in no dossier and triggered by no message left, older than ``days``."""
    if days <= 0:
        return set()
    cutoff = now - timedelta(days=days)
    return set(
        session.exec(
            select(Outbox.id).where(
                Outbox.kind != OutboxKind.DIGEST,
                col(Outbox.dossier_id).is_(None),
                col(Outbox.trigger_message_pk).is_(None),
                col(Outbox.created_at) < cutoff,
            )
        ).all()
    )


def _purged_dossiers(
    app: App, plan: DeletionPlan, expired: Sequence[tuple[Dossier, int]]
) -> list[PurgedDossier]:
    """What goes with each expired dossier (blobs: those no other row names)."""
    messages = plan.per_dossier(plan.messages)
    replies = plan.per_dossier(plan.outbox)
    events = plan.per_dossier(plan.events)
    pieces = Counter(d for d, _sha in plan.pieces.values())
    shas: dict[int, set[str]] = defaultdict(set)
    for d, sha in plan.pieces.values():
        shas[d].add(sha)
    for message_id, sha in plan.message_blobs.items():
        dossier_id = plan.messages.get(message_id)
        if dossier_id is not None:
            shas[dossier_id].add(sha)
    out = []
    for dossier, days in expired:
        out.append(
            PurgedDossier(
                reference=dossier.reference,
                status=dossier.status,
                updated_at=dossier.updated_at,
                retention_days=days,
                messages=messages.get(dossier.id, 0),
                pieces=pieces.get(dossier.id, 0),  # type: ignore[arg-type]
                replies=replies.get(dossier.id, 0),
                events=events.get(dossier.id, 0),
                blobs=blob_sizes(app, shas[dossier.id] & plan.blobs)[0],  # type: ignore[index]
            )
        )
    return out
