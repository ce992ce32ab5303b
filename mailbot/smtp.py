"""Delivering the outbox over SMTP: each reply at most once, retried with backoff.

A worker *claims* due rows in a short transaction (status ``sending``,
attempt counted; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on
SQLite), commits, then talks SMTP, then records the result. Two workers
never claim the same row. A transient refusal (4xx, connection trouble)
puts the row back in the queue with exponential backoff and jitter; a
permanent one (5xx) or too many attempts marks it ``failed`` for the
digest. Replies held by the global caps (status ``held``) are queued here,
oldest first, as soon as the hourly and daily windows allow. A row left
``sending`` by a crash is never sent again (it may have reached the
server): it is marked failed for staff to check. A delivered digest keeps
its row without its body. Log lines name outbox rows and
dossiers by id, never a recipient.
"""

from __future__ import annotations

import logging
import random
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select

from mailbot.app import App
from mailbot.config import SmtpSettings, secret
from mailbot.replies import release_held_replies
from parsers.reasons import DeliveryFailure
from storage.db import session_scope
from storage.models import Outbox, OutboxKind, OutboxStatus, utcnow

log = logging.getLogger(__name__)

# A claimed row older than this was interrupted mid-send.
STALE_SENDING = timedelta(minutes=15)
CLAIM_BATCH = 20


class TransientError(Exception):
    """Try again later: 4xx, connection refused or lost, timeout."""


class PermanentError(Exception):
    """Never retried: 5xx (e.g. the recipient does not exist)."""


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    released: int = 0  # held replies queued by this run
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"outbox: {self.sent} sent, {self.retrying} to retry, {self.failed} failed"


def send_outbox(app: App, *, now: datetime | None = None, limit: int | None = None) -> SendReport:
    """Deliver every due reply; returns what happened."""
    report = SendReport()
    _fail_stale_claims(app, now or utcnow())
    with session_scope(app.engine) as session:
        report.released = release_held_replies(session, config=app.config, now=now or utcnow())
    settings = app.config.settings.smtp
    sent_copies: list[Outbox] = []
    while limit is None or report.sent + report.retrying + report.failed < limit:
        claimed = _claim(app, now or utcnow())
        if not claimed:
            break
        try:
            with SmtpConnection(settings) as connection:
                for row in claimed:
                    _deliver(
                        app,
                        connection=connection,
                        row=row,
                        report=report,
                        copies=sent_copies,
                        now=now,
                    )
        except TransientError as err:
            # The server is unreachable: every claimed row goes back to the queue.
            for row in claimed:
                if row.status == OutboxStatus.SENDING:
                    _record(app, row, transient=str(err), report=report, now=now)
            report.errors.append(str(err))
            break
    if sent_copies:
        _save_sent_copies(app, sent_copies)
    return report


def _claim(app: App, now: datetime) -> list[Outbox]:
    with session_scope(app.engine) as session:
        query = (
            select(Outbox)
            .where(Outbox.status == OutboxStatus.QUEUED, col(Outbox.next_attempt_at) <= now)
            .order_by(col(Outbox.next_attempt_at), col(Outbox.id))
            .limit(CLAIM_BATCH)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.exec(query).all())
        for row in rows:
            row.status = OutboxStatus.SENDING
            row.attempts += 1
            row.next_attempt_at = now
            session.add(row)
        return rows


def _fail_stale_claims(app: App, now: datetime) -> None:
    with session_scope(app.engine) as session:
        stale = session.exec(
            select(Outbox).where(
                Outbox.status == OutboxStatus.SENDING,
                col(Outbox.next_attempt_at) < now - STALE_SENDING,
            )
        ).all()
        for row in stale:
            row.status = OutboxStatus.FAILED
            row.failure_reason = DeliveryFailure.INTERRUPTED
            row.last_error = (
                "interrupted while sending; not sent again to avoid a duplicate: "
                "check with the applicant"
            )
            session.add(row)
            log.error(
                "outbox %s (%s, dossier %s) was interrupted mid-send",
                row.id,
                row.kind,
                row.dossier_id,
            )


def _deliver(
    app: App,
    *,
    connection: SmtpConnection,
    row: Outbox,
    report: SendReport,
    copies: list[Outbox],
    now: datetime | None,
) -> None:
    try:
        response = connection.send(row.from_addr, row.to_addr, row.raw)
    except PermanentError as err:
        _record(app, row, permanent=str(err), report=report, now=now)
        return
    except TransientError as err:
        if connection.broken:
            raise
        _record(app, row, transient=str(err), report=report, now=now)
        return
    _record(app, row, sent=response, report=report, now=now)
    if app.config.settings.mailbox(row.mailbox).save_sent:
        copies.append(row)


def _record(
    app: App,
    row: Outbox,
    *,
    report: SendReport,
    now: datetime | None,
    sent: str | None = None,
    transient: str | None = None,
    permanent: str | None = None,
) -> None:
    replies = app.config.settings.replies
    now = now or utcnow()
    with session_scope(app.engine) as session:
        current = session.get(Outbox, row.id)
        assert current is not None
        if sent is not None:
            current.status = OutboxStatus.SENT
            current.sent_at = now
            current.smtp_response = sent
            current.last_error = None
            current.failure_reason = None
            if current.kind == OutboxKind.DIGEST:
                # Delivered: the row stays as a summary (when, to whom, subject),
                # the body (every open dossier) is not kept.
                current.raw = b""
            report.sent += 1
        elif permanent is not None or current.attempts >= replies.max_attempts:
            current.status = OutboxStatus.FAILED
            current.failure_reason = (
                DeliveryFailure.REFUSED if permanent else DeliveryFailure.GAVE_UP
            )
            current.last_error = permanent or transient
            report.failed += 1
            log.error(
                "outbox %s (%s, dossier %s) failed (%s after %d attempts): %s",
                current.id,
                current.kind,
                current.dossier_id,
                current.failure_reason,
                current.attempts,
                current.last_error,
            )
        else:
            delay = min(
                replies.retry_base_seconds * 2 ** (current.attempts - 1), replies.retry_max_seconds
            )
            delay *= random.uniform(0.8, 1.2)
            current.status = OutboxStatus.QUEUED
            current.next_attempt_at = now + timedelta(seconds=delay)
            current.last_error = transient
            report.retrying += 1
            log.warning(
                "outbox %s (%s, dossier %s) will be retried: %s",
                current.id,
                current.kind,
                current.dossier_id,
                transient,
            )
        session.add(current)
        row.status = current.status


def _save_sent_copies(app: App, rows: list[Outbox]) -> None:
    """Append a copy of each sent reply to its mailbox's Sent folder (best effort)."""
    from mailbot.imap import ImapError, MailboxClient

    by_mailbox: dict[str, list[Outbox]] = {}
    for row in rows:
        by_mailbox.setdefault(row.mailbox, []).append(row)
    for name, items in by_mailbox.items():
        mailbox = app.config.settings.mailbox(name)
        try:
            with MailboxClient(mailbox, secret(mailbox.password_env) or "") as client:
                client.ensure_folder(mailbox.sent_folder)
                for row in items:
                    client.append(row.raw, mailbox.sent_folder)
        except (ImapError, OSError) as err:
            log.warning("could not copy replies to %s/%s: %s", name, mailbox.sent_folder, err)


class SmtpConnection:
    """One SMTP session; classifies failures as transient or permanent."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None
        self.broken = False

    def __enter__(self) -> SmtpConnection:
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.tls_ca_file)
            if s.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout_seconds, context=context
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
                if s.security == "starttls":
                    client.starttls(context=context)
            if s.username:
                try:
                    client.login(s.username, secret(s.password_env) or "")
                except BaseException:
                    client.close()
                    raise
        except smtplib.SMTPAuthenticationError as err:
            raise TransientError(f"SMTP login refused: {err.smtp_code} {err.smtp_error!r}") from err
        except (smtplib.SMTPException, OSError) as err:
            raise TransientError(f"cannot connect to SMTP {s.host}:{s.port}: {err}") from err
        self.client = client
        return self

    def __exit__(self, *exc_info) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def send(self, from_addr: str, to_addr: str, raw: bytes) -> str:
        assert self.client is not None
        try:
            refused = self.client.sendmail(from_addr, [to_addr], raw)
        except smtplib.SMTPRecipientsRefused as err:
            code, text = next(iter(err.recipients.values()))
            raise _by_code(code, text) from err
        except smtplib.SMTPResponseException as err:
            raise _by_code(err.smtp_code, err.smtp_error) from err
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as err:
            self.broken = True
            raise TransientError(f"SMTP connection lost: {err}") from err
        if refused:
            code, text = next(iter(refused.values()))
            raise _by_code(code, text)
        return "250 accepted"


def _by_code(code: int, text: bytes | str) -> Exception:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    if 400 <= code < 500:
        return TransientError(f"{code} {message}")
    return PermanentError(f"{code} {message}")
