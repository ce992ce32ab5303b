"""What we answer applicants, and whether we may answer at all.

``plan_reply`` runs inside the filing transaction: it decides the kind of
reply (acknowledgement, missing_pieces, completed; under_review, the neutral
acknowledgement of a dossier read with doubt; passed_on, for a follow-up
that only staff can read), applies every "do not
auto-reply" rule of reliability.md that the classifier has not already
applied (own addresses, Authentication-Results policy, caps, one reply per
kind and event), renders the templates and writes ONE outbox row, queued,
held or suppressed with its reason (a ``parsers.reasons.ReplyHold`` code,
worded for staff by ``mailbot/wording.py``). The outbox's unique key makes a
second queuing of the same reply impossible, even with two workers.

Who may be answered: the recipient is the dossier's sender as
``parsers.addresses.normalise_address`` keeps it (the one validator; none:
no reply, "no usable sender address"); Authentication-Results are read by
``parsers.authresults.evaluate`` (only an aligned pass is a pass); caps count
per person (``cap_key``: case and ``+tag`` are one person) and per domain
per day, and over the global hourly or daily cap a reply is HELD in the
outbox, then queued by ``release_held_replies`` (called by ``send_outbox``)
when the window allows: nothing is dropped.

``common_template_context`` and ``template_error_line`` are shared with the
digest, which renders its own templates the same way.

Applicant text (names, subjects, field values) never reaches a header
unsanitised: headers are built from our own values, ``header_safe`` text and
Message-IDs that match a strict pattern, with ``email.policy.SMTP``. In the
body it is echoed through ``mailbot.echo`` only: at most 80 characters (40
for a name), links and addresses defanged, since whoever wrote ``From:`` may
not be the person who receives the reply.
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
from mailbot.echo import echo_name, echo_text
from mailbot.errors import ConfigError, ConfigProblem
from mailbot.headers import encoded_header
from parsers.addresses import cap_key, domain_of, normalise_address
from parsers.authresults import AuthOutcome, AuthVerdict, evaluate
from parsers.classify import make_reply_message_id
from parsers.reasons import ReplyHold
from parsers.text import header_safe
from parsers.types import ParsedMail
from storage import repositories as repo
from storage.models import Dossier, Message, Outbox, OutboxKind, OutboxStatus, utcnow

_MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,250}>")
# Statuses that count against the caps: what was or will be sent.
_COUNTED = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.HELD, OutboxStatus.SENT)
KINDS = (
    OutboxKind.ACKNOWLEDGEMENT,
    OutboxKind.MISSING_PIECES,
    OutboxKind.COMPLETED,
    OutboxKind.UNDER_REVIEW,
    OutboxKind.PASSED_ON,
)


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
    # Applicant text is echoed short and unclickable: whoever wrote From:
    # may not be the person who receives this reply.
    context = {
        "reference": reference,
        "intitule": echo_text(intitule),
        "applicant_name": echo_name(applicant_name),
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
    address = normalise_address(to)
    if address:
        message["To"] = Address(addr_spec=address)
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
        to=address or "",
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
    in_doubt: bool = False,
) -> str | None:
    """Which reply an event calls for, if any.

    ``in_doubt``: the dossier waits for staff because required fields were
    read with doubt. A new one gets the neutral acknowledgement (never a
    notice naming a field that may be there, nor an acknowledgement of a
    category or criteria that may be wrong); later events, nothing until
    staff settle the doubt.
    """
    if in_doubt:
        return OutboxKind.UNDER_REVIEW if created else None
    if created:
        return OutboxKind.MISSING_PIECES if missing else OutboxKind.ACKNOWLEDGEMENT
    if completed:
        return OutboxKind.COMPLETED
    if missing and previous_missing is not None and list(missing) != list(previous_missing):
        # Still incomplete, but the list changed: an updated notice.
        return OutboxKind.MISSING_PIECES
    return None


def authentication_verdict(mail: ParsedMail, authserv_id: str | None) -> AuthVerdict:
    """What our own server's Authentication-Results say about the From address."""
    if not authserv_id:
        return AuthVerdict(AuthOutcome.UNKNOWN, "no replies.authserv_id configured")
    return evaluate(
        mail.headers.get("authentication-results", ()),
        authserv_id=authserv_id,
        # The outer From as read: never the inner sender of a forwarded message.
        from_address=mail.from_address,
    )


def authentication_hold(mail: ParsedMail, config: Config) -> Suppression | None:
    """The hold ``replies.auth_policy`` calls for on this message, or None.

    ``reply_only_if_pass`` answers only an aligned pass; ``reply_unless_fail``
    holds back a failure; ``ignore`` never looks.
    """
    replies = config.settings.replies
    if replies.auth_policy == "ignore":
        return None
    verdict = authentication_verdict(mail, replies.authserv_id)
    details = {"explanation": verdict.explanation}
    if verdict.outcome == AuthOutcome.FAIL:
        return Suppression(ReplyHold.AUTHENTICATION_FAILED, details)
    if replies.auth_policy == "reply_only_if_pass" and verdict.outcome != AuthOutcome.PASS:
        return Suppression(ReplyHold.AUTHENTICATION_NOT_PASSED, details)
    return None


@dataclass(frozen=True)
class Suppression:
    """Why a reply is held back (for now or for good): a code, and the values its wording names."""

    reason: ReplyHold
    details: dict[str, Any] = field(default_factory=dict)


def suppression_reason(
    *,
    session: Session,
    config: Config,
    mail: ParsedMail,
    to: str | None,
    dossier: Dossier,
    kind: str,
    now: datetime,
) -> Suppression | None:
    """Why this reply must not go out now, or None when it may.

    ``to`` is the recipient as ``normalise_address`` keeps it (None: not an
    address we can answer). A ``HOURLY_CAP`` or ``GLOBAL_DAILY_CAP`` hold
    means "later", every other code "never".
    """
    replies = config.settings.replies
    if not replies.enabled:
        return Suppression(ReplyHold.REPLIES_DISABLED)
    if not to:
        return Suppression(ReplyHold.NO_SENDER_ADDRESS)
    if to in config.settings.own_addresses:
        return Suppression(ReplyHold.RECIPIENT_IS_OURS)
    own_from = mail.from_address and mail.from_address.lower() in config.settings.own_addresses
    if own_from and not mail.forwarded:
        return Suppression(ReplyHold.FROM_OUR_ADDRESS, {"address": mail.from_address})
    held = authentication_hold(mail, config)
    if held is not None:
        return held
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
    return _recipient_cap(session=session, config=config, to=to, now=now) or _global_cap(
        session=session, config=config, now=now
    )


def _recipient_cap(
    *, session: Session, config: Config, to: str, now: datetime
) -> Suppression | None:
    """The per-person (``cap_key``) and per-domain daily caps."""
    replies = config.settings.replies
    domain = domain_of(to)
    same_domain = session.exec(
        select(Outbox.to_addr).where(
            func.lower(Outbox.to_addr).endswith(f"@{domain}", autoescape=True),
            col(Outbox.kind).in_(KINDS),
            col(Outbox.status).in_(_COUNTED),
            Outbox.created_at >= now - timedelta(days=1),
        )
    ).all()
    person = cap_key(to)
    per_person = sum(1 for address in same_domain if cap_key(address) == person)
    if per_person >= replies.per_sender_daily_cap:
        return Suppression(
            ReplyHold.SENDER_DAILY_CAP,
            {"count": per_person, "cap": replies.per_sender_daily_cap},
        )
    if len(same_domain) >= replies.per_domain_daily_cap:
        return Suppression(
            ReplyHold.DOMAIN_DAILY_CAP,
            {"count": len(same_domain), "cap": replies.per_domain_daily_cap, "domain": domain},
        )
    return None


def global_counts(session: Session, now: datetime) -> tuple[int, int]:
    """Replies (not digests) sent in the last hour and day, plus those queued to go.

    A reply counts when it went out in the window (``sent_at``) or is waiting
    to go (queued or being sent), whenever it was written.
    """
    counts: list[int] = []
    for window in (timedelta(hours=1), timedelta(days=1)):
        counts.append(
            session.exec(
                select(func.count())
                .select_from(Outbox)
                .where(
                    col(Outbox.kind).in_(KINDS),
                    col(Outbox.status).in_([OutboxStatus.QUEUED, OutboxStatus.SENDING])
                    | (
                        (col(Outbox.status) == OutboxStatus.SENT)
                        & (col(Outbox.sent_at) >= now - window)
                    ),
                )
            ).one()
        )
    return counts[0], counts[1]


def _global_cap(*, session: Session, config: Config, now: datetime) -> Suppression | None:
    """A hold (the reply waits in the outbox) when the global windows are full."""
    replies = config.settings.replies
    waiting = session.exec(
        select(Outbox.id).where(Outbox.status == OutboxStatus.HELD).limit(1)
    ).first()
    hourly, daily = global_counts(session, now)
    if waiting is not None:
        # Earlier replies wait already: this one queues behind them.
        hourly = max(hourly, replies.global_hourly_cap)
    if daily >= replies.global_daily_cap:
        return Suppression(
            ReplyHold.GLOBAL_DAILY_CAP, {"count": daily, "cap": replies.global_daily_cap}
        )
    if hourly >= replies.global_hourly_cap:
        return Suppression(
            ReplyHold.HOURLY_CAP, {"count": hourly, "cap": replies.global_hourly_cap}
        )
    return None


def is_held_for_later(reason: str | None) -> bool:
    """Whether a hold means "send when the window allows" rather than "never"."""
    return reason in (ReplyHold.HOURLY_CAP, ReplyHold.GLOBAL_DAILY_CAP)


def release_held_replies(session: Session, *, config: Config, now: datetime) -> int:
    """Queue the oldest held replies the global windows allow now; how many were queued."""
    replies = config.settings.replies
    query = (
        select(Outbox)
        .where(Outbox.status == OutboxStatus.HELD)
        .order_by(col(Outbox.created_at), col(Outbox.id))
        # Never more than one hour's worth at once, however long the queue.
        .limit(min(replies.global_hourly_cap, replies.global_daily_cap))
    )
    if session.get_bind().dialect.name == "postgresql":
        # Lock first, count second: a second worker waits, then sees our release.
        query = query.with_for_update()
    held = list(session.exec(query).all())
    if not held:
        return 0
    hourly, daily = global_counts(session, now)
    room = min(replies.global_hourly_cap - hourly, replies.global_daily_cap - daily)
    released = held[: max(0, room)]
    for row in released:
        row.status = OutboxStatus.QUEUED
        row.next_attempt_at = now
        session.add(row)
        repo.record_event(
            session=session,
            actor="system",
            action="reply.released",
            dossier=session.get(Dossier, row.dossier_id) if row.dossier_id else None,
            details={"kind": row.kind, "outbox": row.id, "held_for": row.suppressed_reason},
        )
    return len(released)


def _status_for(held: Suppression | None) -> str:
    if held is None:
        return OutboxStatus.QUEUED
    return OutboxStatus.HELD if is_held_for_later(held.reason) else OutboxStatus.SUPPRESSED


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
    to = normalise_address(dossier.sender or mail.sender or "")
    reply = build_reply(
        config=config,
        mailbox=mailbox,
        kind=kind,
        reference=dossier.reference,
        to=to or "",
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
        status=_status_for(held),
        suppressed_reason=held.reason if held else None,
        suppressed_details=held.details if held else None,
        next_attempt_at=now,
    )
    if row is not None:
        details: dict[str, Any] = {"kind": kind, "to": to, "reason": None}
        if held:
            details.update(reason=str(held.reason), reason_details=held.details)
        action = "reply.queued"
        if held:
            action = "reply.held" if is_held_for_later(held.reason) else "reply.suppressed"
        repo.record_event(
            session=session,
            actor="system",
            action=action,
            dossier=dossier,
            message=message,
            details=details,
        )
    return row
