"""When the digest goes out: once per local day, to every recipient, through the outbox.

``digest_due`` tells the worker's scheduler whether today's digest should go
now (past ``digest.at`` local time and not yet handled); ``queue_digest``
puts it in the outbox, one row per recipient; ``send_digest`` queues and
delivers at once (``mailbot digest``); ``print_digest`` only shows it.

Once per day: the outbox's unique ``dedup_key``
(``digest:<YYYY-MM-DD>:<recipient>``) makes a second queuing impossible,
across restarts and with two workers; a day skipped because there was
nothing to report is recorded as a ``digest.skipped`` event.

What is kept of a digest: its outbox rows hold the rendered message (it
lists every open dossier) only until delivery (``mailbot.smtp`` then drops
the body); the rows (when, to whom, subject) and the ``digest.queued``
event (recipients, period, counts per section) stay until
``[retention] digest_days`` (``mailbot.privacy.purge``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from mailbot.app import App
from mailbot.digest.collect import service_zone
from mailbot.digest.render import build_digest, build_message, digest_mailbox
from mailbot.smtp import send_outbox
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Event, Outbox, OutboxKind, utcnow

log = logging.getLogger(__name__)

# How many recent "digest.skipped" events are searched for a given day.
SKIPPED_EVENTS_SEARCHED = 31


def queue_digest(app: App, *, now: datetime | None = None) -> Outbox | None:
    """Queue today's digest to every recipient, once per local day.

    One outbox row per recipient (``send_outbox`` sends each row to one
    address), all in one transaction. Returns the first row queued, or None
    when today's digest was already queued (or skipped), when there is no
    recipient, or when the digest is empty and ``skip_when_empty`` is set.
    """
    config = app.config
    settings = config.settings.digest
    now = now or utcnow()
    day = now.astimezone(service_zone(config)).date()
    if not settings.recipients:
        log.warning("digest: no recipients configured (digest.recipients); nothing queued")
        return None
    with session_scope(app.engine) as session:
        if already_handled(session, day):
            return None
    digest = build_digest(app, now=now)
    if digest.empty and settings.skip_when_empty:
        with session_scope(app.engine) as session:
            if not already_handled(session, day):
                repo.record_event(
                    session=session,
                    actor="system",
                    action="digest.skipped",
                    details={"date": day.isoformat(), "reason": "nothing to report"},
                )
        log.info("digest of %s: nothing to report, skipped (skip_when_empty)", day)
        return None
    mailbox = digest_mailbox(config)
    first: Outbox | None = None
    with session_scope(app.engine) as session:
        for to in dict.fromkeys(settings.recipients):
            message_id, raw = build_message(config, digest, mailbox=mailbox, to=to, now=now)
            row = repo.enqueue_outgoing(
                session=session,
                dedup_key=f"digest:{day.isoformat()}:{to}",
                kind=OutboxKind.DIGEST,
                mailbox=mailbox.name,
                from_addr=mailbox.address or config.settings.smtp.from_address,
                to_addr=to,
                subject=digest.subject,
                message_id=message_id,
                raw=raw,
            )
            if row is None:
                continue  # another worker queued it a moment ago
            # The next digest starts where this one's data ends.
            row.created_at = digest.until
            session.add(row)
            first = first or row
        if first is not None:
            repo.record_event(
                session=session,
                actor="system",
                action="digest.queued",
                details={
                    "date": day.isoformat(),
                    "recipients": list(settings.recipients),
                    "since": digest.since.isoformat(),
                    "until": digest.until.isoformat(),
                    "empty": digest.empty,
                    "counts": digest_counts(digest.sections),
                },
            )
    if first is not None:
        log.info("digest of %s queued for %d recipient(s)", day, len(settings.recipients))
    return first


def digest_counts(sections: dict[str, Any]) -> dict[str, int]:
    """How many items each list section held: what stays of a digest once its body is gone."""
    return {
        key: len(value)
        for key, value in sorted(sections.items())
        if isinstance(value, list) and key != "reconciliation"
    }


def send_digest(app: App, *, now: datetime | None = None) -> Outbox | None:
    """Queue today's digest (once per day) and deliver the outbox now."""
    row = queue_digest(app, now=now)
    send_outbox(app)
    return row


def digest_due(app: App, *, now: datetime) -> bool:
    """Whether today's digest should go now: past ``digest.at`` (local) and not yet done."""
    config = app.config
    settings = config.settings.digest
    if not settings.recipients:
        return False
    local = now.astimezone(service_zone(config))
    if local.time().replace(tzinfo=None) < settings.time:
        return False
    with session_scope(app.engine) as session:
        return not already_handled(session, local.date())


def print_digest(app: App, *, now: datetime | None = None, reconcile: bool = True) -> str:
    """The text of the digest as it would be sent now, for ``mailbot digest --print``."""
    return build_digest(app, now=now, reconcile=reconcile).text


def already_handled(session: Session, day: date) -> bool:
    """Whether the digest of local ``day`` was queued or deliberately skipped."""
    prefix = f"digest:{day.isoformat()}"
    queued = session.exec(
        select(Outbox.id).where(
            or_(Outbox.dedup_key == prefix, col(Outbox.dedup_key).startswith(prefix + ":"))
        )
    ).first()
    if queued is not None:
        return True
    skipped = session.exec(
        select(Event.details)
        .where(Event.action == "digest.skipped")
        .order_by(col(Event.id).desc())
        .limit(SKIPPED_EVENTS_SEARCHED)
    ).all()
    return any((details or {}).get("date") == day.isoformat() for details in skipped)
