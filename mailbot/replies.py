"""What we answer applicants, and whether we may answer at all.

``plan_reply`` runs inside the filing transaction: it decides the kind of
reply (acknowledgement, missing_pieces, completed), applies every "do not
auto-reply" rule of reliability.md that the classifier has not already
applied (own addresses, Authentication-Results policy, caps, one reply per
kind and event), renders the templates and writes ONE outbox row, queued or
suppressed with its reason (a ``parsers.reasons.ReplyHold`` code, worded for
staff by ``mailbot/wording.py``). The outbox's unique key makes a second
queuing of the same reply impossible, even with two workers.

``common_template_context`` and ``template_error_line`` are shared with the
digest, which renders its own templates the same way.

Applicant text (names, subjects, field values) never reaches a header
unsanitised: headers are built from our own values, ``header_safe`` text and
Message-IDs that match a strict pattern, with ``email.policy.SMTP``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import jinja2
from sqlalchemy import func
from sqlmodel import Session, col, select

from mailbot.config import Config, MailboxSettings
from mailbot.errors import ConfigError, ConfigProblem
from mailbot.headers import encoded_header
from parsers.classify import make_reply_message_id
from parsers.reasons import ReplyHold
from parsers.text import header_safe
from parsers.types import ParsedMail
from storage import repositories as repo
from storage.models import Dossier, Message, Outbox, OutboxKind, OutboxStatus, utcnow

_MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,250}>")
_AUTH_RESULT = re.compile(r"\b(dmarc|spf|dkim)\s*=\s*([a-z]+)", re.IGNORECASE)
# Statuses that count against the caps: what was or will be sent.
_COUNTED = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.SENT)
KINDS = ("acknowledgement", "missing_pieces", "completed")


@dataclass(frozen=True)
class RenderedReply:
    """One reply rendered for one recipient: its texts and the raw message to send."""

    kind: str
    to: str
    from_addr: str
    subject: str
    text: str
    html: str
    message_id: str
    raw: bytes


def sample_context(config: Config) -> dict[str, Any]:
    """Template variables with sample values, for `config check` and previews."""
    return {
        "reference": "BSC-2026-0007",
        "intitule": "Potager solidaire du quartier du Perroy",
        "applicant_name": "Alice Martin",
        "missing": [
            config.rules.letter.notice,
            config.rules.fields["description"].notice_text,
        ],
        **common_template_context(config),
    }


def common_template_context(config: Config) -> dict[str, Any]:
    """What every template of the service may name: service name, signature, privacy notice."""
    replies = config.settings.replies
    return {
        "service_name": replies.service_name,
        "signature": replies.signature.strip(),
        "privacy_controller": replies.privacy_controller,
        "privacy_contact": replies.privacy_contact,
        "privacy_retention": replies.privacy_retention,
        "title": replies.service_name,
    }


def check_templates(config: Config) -> None:
    """Render every reply template with sample data; raise ConfigError naming file and line."""
    problems: list[ConfigProblem] = []
    directory = config.directory / "templates"
    for kind in KINDS:
        for part in ("subject", "txt", "html"):
            name = f"{kind}.{part}.j2"
            if name not in config.template_names:
                problems.append(ConfigProblem(str(directory / name), "", "template missing"))
                continue
            try:
                config.templates.get_template(name).render(
                    {**common_template_context(config), **sample_context(config)}
                )
            except jinja2.TemplateError as err:
                line = template_error_line(err, name)
                problems.append(
                    ConfigProblem(str(directory / name), "", f"cannot render: {err}", line)
                )
    if problems:
        raise ConfigError(problems)


def template_error_line(err: Exception, name: str) -> int | None:
    """The line in ``name`` where rendering failed, from the traceback."""
    line = getattr(err, "lineno", None)
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(config: Config, kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of one kind of reply."""
    env = config.templates
    full = {**common_template_context(config), **context}
    subject = header_safe(env.get_template(f"{kind}.subject.j2").render(full), max_length=300)
    text = env.get_template(f"{kind}.txt.j2").render(full)
    html = env.get_template(f"{kind}.html.j2").render(full)
    return subject, text, html


def build_reply(
    *,
    config: Config,
    mailbox: MailboxSettings,
    kind: str,
    reference: str,
    to: str,
    applicant_name: str | None,
    intitule: str | None,
    missing_text: Sequence[str],
    in_reply_to: str | None,
    references: Sequence[str] = (),
    now: datetime | None = None,
) -> RenderedReply:
    context = {
        "reference": reference,
        "intitule": intitule,
        "applicant_name": header_safe(applicant_name or "", max_length=100) or None,
        "missing": list(missing_text),
    }
    subject, text, html = render(config, kind, context)
    domain = config.settings.smtp.message_id_domain
    message_id = make_reply_message_id(reference=reference, kind=kind, domain=domain)
    replies = config.settings.replies
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(
        display_name=header_safe(mailbox.display_name), addr_spec=mailbox.address
    )
    message["To"] = Address(addr_spec=to)
    message.set_raw("Subject", encoded_header("Subject", subject))
    message["Date"] = format_datetime(now or utcnow())
    message["Message-ID"] = message_id
    thread = [m for m in (*references, in_reply_to) if m and _MESSAGE_ID.fullmatch(m)]
    if in_reply_to and _MESSAGE_ID.fullmatch(in_reply_to):
        message["In-Reply-To"] = in_reply_to
    if thread:
        # Keep the References header bounded: first and last few ids.
        kept = thread if len(thread) <= 10 else [thread[0], *thread[-9:]]
        message["References"] = " ".join(dict.fromkeys(kept))
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message[replies.loop_header] = replies.loop_value
    message["Precedence"] = "auto_reply"
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return RenderedReply(
        kind=kind,
        to=to,
        from_addr=mailbox.address or "",
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        raw=message.as_bytes(policy=SMTP),
    )


def choose_kind(
    *,
    created: bool,
    completed: bool,
    missing: Sequence[str],
    previous_missing: Sequence[str] | None,
) -> str | None:
    """Which reply an event calls for, if any."""
    if created:
        return OutboxKind.MISSING_PIECES if missing else OutboxKind.ACKNOWLEDGEMENT
    if completed:
        return OutboxKind.COMPLETED
    if missing and previous_missing is not None and list(missing) != list(previous_missing):
        # Still incomplete, but the list changed: an updated notice.
        return OutboxKind.MISSING_PIECES
    return None


def authentication_verdict(mail: ParsedMail, authserv_id: str | None) -> str | None:
    """'pass', 'fail' or None (unknown) from our own server's top-most Authentication-Results."""
    if not authserv_id:
        return None
    for value in mail.headers.get("authentication-results", ()):
        server = value.split(";", 1)[0].strip().split()[0:1]
        if not server or server[0].lower() != authserv_id.lower():
            continue  # a header another hop (or the sender) wrote: not trusted
        results = {name.lower(): outcome.lower() for name, outcome in _AUTH_RESULT.findall(value)}
        if "dmarc" in results:
            return "pass" if results["dmarc"] == "pass" else "fail"
        if results.get("spf") == "pass" or results.get("dkim") == "pass":
            return "pass"
        if results.get("spf") in ("fail", "softfail") and results.get("dkim") in (None, "fail"):
            return "fail"
        return None
    return None


@dataclass(frozen=True)
class Suppression:
    """Why a reply is held back: a code, and the values its wording names."""

    reason: ReplyHold
    details: dict[str, Any] = field(default_factory=dict)


def suppression_reason(
    *,
    session: Session,
    config: Config,
    mail: ParsedMail,
    to: str,
    dossier: Dossier,
    kind: str,
    now: datetime,
) -> Suppression | None:
    """Why this reply must not go out, or None when it may."""
    replies = config.settings.replies
    if not replies.enabled:
        return Suppression(ReplyHold.REPLIES_DISABLED)
    if not to or "@" not in to:
        return Suppression(ReplyHold.NO_SENDER_ADDRESS)
    if to.lower() in config.settings.own_addresses:
        return Suppression(ReplyHold.RECIPIENT_IS_OURS)
    own_from = mail.from_address and mail.from_address.lower() in config.settings.own_addresses
    if own_from and not mail.forwarded:
        return Suppression(ReplyHold.FROM_OUR_ADDRESS, {"address": mail.from_address})
    verdict = authentication_verdict(mail, replies.authserv_id)
    if replies.auth_policy == "reply_unless_fail" and verdict == "fail":
        return Suppression(ReplyHold.AUTHENTICATION_FAILED)
    if replies.auth_policy == "reply_only_if_pass" and verdict != "pass":
        return Suppression(ReplyHold.AUTHENTICATION_NOT_PASSED)
    if kind != OutboxKind.MISSING_PIECES:
        already = session.exec(
            select(Outbox.id).where(
                Outbox.dossier_id == dossier.id,
                Outbox.kind == kind,
                col(Outbox.status).in_(_COUNTED),
            )
        ).first()
        if already is not None:
            return Suppression(ReplyHold.ALREADY_SENT)
    day_ago, hour_ago = now - timedelta(days=1), now - timedelta(hours=1)
    per_sender = session.exec(
        select(func.count())
        .select_from(Outbox)
        .where(
            func.lower(Outbox.to_addr) == to.lower(),
            col(Outbox.status).in_(_COUNTED),
            Outbox.created_at >= day_ago,
        )
    ).one()
    if per_sender >= replies.per_sender_daily_cap:
        return Suppression(
            ReplyHold.SENDER_DAILY_CAP,
            {"count": per_sender, "cap": replies.per_sender_daily_cap},
        )
    total = session.exec(
        select(func.count())
        .select_from(Outbox)
        .where(col(Outbox.status).in_(_COUNTED), Outbox.created_at >= hour_ago)
    ).one()
    if total >= replies.global_hourly_cap:
        return Suppression(ReplyHold.HOURLY_CAP, {"count": total, "cap": replies.global_hourly_cap})
    return None


def plan_reply(
    *,
    session: Session,
    config: Config,
    mailbox_name: str,
    mail: ParsedMail,
    message: Message,
    dossier: Dossier,
    kind: str | None,
    missing_text: Sequence[str],
    now: datetime | None = None,
) -> Outbox | None:
    """Queue (or record as suppressed) the reply an event calls for; at most once."""
    if kind is None:
        return None
    now = now or utcnow()
    try:
        mailbox = config.settings.mailbox(mailbox_name)
    except KeyError:
        mailbox = config.settings.mailboxes[0]
    to = (dossier.sender or mail.sender or "").lower()
    reply = build_reply(
        config=config,
        mailbox=mailbox,
        kind=kind,
        reference=dossier.reference,
        to=to,
        applicant_name=dossier.sender_name or mail.sender_name,
        intitule=(dossier.fields or {}).get("intitule"),
        missing_text=missing_text,
        in_reply_to=mail.message_id,
        references=mail.references,
        now=now,
    )
    held = suppression_reason(
        session=session, config=config, mail=mail, to=to, dossier=dossier, kind=kind, now=now
    )
    row = repo.enqueue_outgoing(
        session=session,
        dedup_key=f"{kind}:{dossier.id}:{message.id}",
        kind=kind,
        mailbox=mailbox.name,
        from_addr=reply.from_addr,
        to_addr=to or "(none)",
        subject=reply.subject,
        message_id=reply.message_id,
        raw=reply.raw,
        dossier=dossier,
        trigger_message=message,
        status=OutboxStatus.SUPPRESSED if held else OutboxStatus.QUEUED,
        suppressed_reason=held.reason if held else None,
        suppressed_details=held.details if held else None,
        next_attempt_at=now,
    )
    if row is not None:
        details: dict[str, Any] = {"kind": kind, "to": to, "reason": None}
        if held:
            details.update(reason=str(held.reason), reason_details=held.details)
        repo.record_event(
            session=session,
            actor="system",
            action="reply.suppressed" if held else "reply.queued",
            dossier=dossier,
            message=message,
            details=details,
        )
    return row
