"""The daily digest for staff: what happened since the last one, and what waits.

``build_digest`` reads the database (and, unless told not to, the IMAP
folders, read-only) and renders the digest: new dossiers, dossiers that
became complete, incomplete dossiers with what they lack, messages to review
or that failed, replies suppressed or undeliverable, messages on the server
that the ledger does not know, and counts of the open dossiers per
thématique and criterion. It writes nothing, so ``mailbot digest --print``
can call it freely.

``queue_digest`` puts the digest in the outbox once per local day; the
outbox's unique ``dedup_key`` (``digest:<YYYY-MM-DD>:<recipient>``) makes a
second queuing impossible, across restarts and with two workers.
``send_outbox`` delivers it like any reply. The digest carries our loop
header and ``Auto-Submitted: auto-generated``, so when it lands in one of our
own mailboxes it is never filed as a candidature.

Personal data: the digest names dossiers by reference, title and structure,
and gives the sender's e-mail address; it never carries the applicant's
phone number or postal address (they are left out of the attached CSV too).
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from sqlmodel import Session, col, or_, select

from mailbot import export, views
from mailbot.app import App
from mailbot.config import Config, FieldKind, MailboxSettings, Rules, secret
from mailbot.errors import ConfigError, ConfigProblem, MailbotError
from mailbot.headers import encoded_header
from mailbot.imap import ImapError, MailboxClient
from mailbot.replies import _static_context, _template_line
from mailbot.smtp import send_outbox
from parsers.checks import describe_missing
from parsers.text import header_safe
from storage import repositories as repo
from storage.db import session_scope
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Sighting,
    utcnow,
)

log = logging.getLogger(__name__)

EMPTY_LINE = "Rien de nouveau depuis le dernier récapitulatif."
TEMPLATES = ("digest.subject.j2", "digest.txt.j2", "digest.html.j2")
OPEN_STATUSES = (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE, DossierStatus.NEEDS_REVIEW)
# Without a digest sent before, the first one covers this much.
DEFAULT_PERIOD = timedelta(hours=24)
# Unknown server messages described one by one (the count is always given).
MAX_UNKNOWN_LISTED = 20
REASON_MAX_LENGTH = 300
SUBJECT_MAX_LENGTH = 120  # of a message quoted in the digest
HEADER_SUBJECT_MAX = 200  # of the digest itself
# Fields never copied into the digest: staff reach applicants by e-mail.
PRIVATE_FIELD_KINDS = frozenset({FieldKind.PHONE})
PRIVATE_FIELDS = frozenset({"adresse"})

STATUS_LABELS = {
    DossierStatus.INCOMPLETE: "incomplet",
    DossierStatus.COMPLETE: "complet",
    DossierStatus.NEEDS_REVIEW: "à vérifier",
    DossierStatus.ACCEPTED: "labellisé",
    DossierStatus.REJECTED: "refusé",
    DossierStatus.WITHDRAWN: "retiré",
}
MESSAGE_STATUS_LABELS = {
    MessageStatus.NEEDS_REVIEW: "à vérifier",
    MessageStatus.FAILED: "en échec",
}
KIND_LABELS = {
    OutboxKind.ACKNOWLEDGEMENT: "accusé de réception",
    OutboxKind.MISSING_PIECES: "pièces manquantes",
    OutboxKind.COMPLETED: "dossier complet",
    OutboxKind.DIGEST: "récapitulatif",
}
OUTBOX_STATUS_LABELS = {
    OutboxStatus.SUPPRESSED: "non envoyée",
    OutboxStatus.FAILED: "non remise",
}
# Rules that decide a verdict, as staff read them.
RULE_LABELS = {
    "score": "classement incertain",
    "over_limits": "une limite de taille a été dépassée, lecture incomplète",
    "dossier_reference": "référence de dossier citée",
    "reply_to_our_mail": "réponse à l'un de nos messages",
    "same_sender_open_dossier": "dossier ouvert du même expéditeur",
}

_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

# Reasons and errors recorded in English by replies.py and smtp.py, in French
# for the digest; anything else is shown as recorded.
_REASONS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), render)
    for pattern, render in (
        (
            r"^automatic replies are disabled",
            lambda m: "les réponses automatiques sont désactivées (replies.enabled = false)",
        ),
        (r"^no usable sender address", lambda m: "pas d'adresse d'expéditeur utilisable"),
        (
            r"^the sender (\S+) is one of our own mailboxes or staff",
            lambda m: f"l'expéditeur {m[1]} est l'une de nos boîtes ou un membre du service",
        ),
        (
            r"^the message comes from our own address (\S+)",
            lambda m: f"le message vient de notre propre adresse {m[1]}",
        ),
        (
            r"^Authentication-Results: the sender failed",
            lambda m: "l'expéditeur a échoué aux contrôles DMARC/SPF/DKIM",
        ),
        (
            r"^Authentication-Results: the sender did not pass",
            lambda m: "l'expéditeur n'a pas passé les contrôles DMARC/SPF/DKIM",
        ),
        (
            r"^an? (\w+) reply was already sent for (\S+)",
            lambda m: (
                f"une réponse « {KIND_LABELS.get(m[1], m[1])} » a déjà été envoyée pour {m[2]}"
            ),
        ),
        (
            r"^(\S+) already had (\d+) replies today \(cap (\d+)\)",
            lambda m: (
                f"{m[1]} a déjà reçu {_plural(int(m[2]), 'réponse', 'réponses')} "
                f"aujourd'hui (plafond : {m[3]})"
            ),
        ),
        (
            r"^(\d+) replies in the last hour \(cap (\d+)\)",
            lambda m: f"{m[1]} réponses envoyées dans l'heure (plafond : {m[2]})",
        ),
        (
            r"^interrupted while sending",
            lambda m: (
                "envoi interrompu ; non renvoyée pour éviter un doublon : "
                "vérifier auprès du destinataire"
            ),
        ),
        (
            r"^gave up after (\d+) attempts: (.*)$",
            lambda m: f"abandon après {m[1]} tentatives : {m[2]}",
        ),
        (r"^([5]\d\d\b.*)$", lambda m: f"refus définitif du serveur : {m[1]}"),
        (
            r"^follow-up names an unknown dossier '?([^']*)'?$",
            lambda m: f"le message cite un dossier inconnu : {m[1]}",
        ),
        (r"^parse error: (.*)$", lambda m: f"message illisible : {m[1]}"),
        (r"^analysis error: (.*)$", lambda m: f"erreur d'analyse : {m[1]}"),
        (r"^filing error: (.*)$", lambda m: f"erreur d'enregistrement : {m[1]}"),
    )
)


@dataclass(frozen=True)
class Digest:
    """One rendered digest; ``sections`` holds the same data as plain values."""

    date: date
    subject: str
    text: str
    html: str
    csv_bytes: bytes
    empty: bool
    sections: dict[str, Any]
    since: datetime
    until: datetime
    csv_filename: str


# --------------------------------------------------------------------------
# Public entry points


def build_digest(
    app: App,
    *,
    now: datetime | None = None,
    since: datetime | None = None,
    reconcile: bool = True,
) -> Digest:
    """The digest of ``[since, now)``; writes nothing.

    ``since`` defaults to the moment the last sent digest was built, else to
    24 hours before ``now``. With ``reconcile``, every enabled mailbox is
    compared with the ledger; a mailbox that cannot be reached is reported.
    """
    config = app.config
    now = now or utcnow()
    zone = _zone(config)
    with session_scope(app.engine) as session:
        previous = last_digest_at(session) if since is None else None
        start = since or previous or now - DEFAULT_PERIOD
        sections = _collect(session, config, start, now, zone)
        open_dossiers = _open_dossier_rows(session, config, zone)
    sections["period"] = {
        "since": start.isoformat(),
        "until": now.isoformat(),
        "since_text": _when(start, zone),
        "after_previous_digest": previous is not None,
    }
    if reconcile:
        sections["reconciliation"] = {"checked": True, "mailboxes": reconcile_mailboxes(app)}
    else:
        sections["reconciliation"] = {"checked": False, "mailboxes": []}
    day = now.astimezone(zone).date()
    subject, text, html = render_digest(config, sections, day)
    return Digest(
        date=day,
        subject=subject,
        text=text,
        html=html,
        csv_bytes=open_dossiers_csv(config, open_dossiers),
        empty=_is_empty(sections),
        sections=sections,
        since=start,
        until=now,
        csv_filename=csv_filename(day),
    )


def render_digest(config: Config, sections: dict[str, Any], day: date) -> tuple[str, str, str]:
    """(subject, text, html) from the templates ``digest.*.j2``."""
    context = _template_context(config, sections, day)
    env = config.templates
    subject = header_safe(
        env.get_template("digest.subject.j2").render(context), max_length=HEADER_SUBJECT_MAX
    )
    text = env.get_template("digest.txt.j2").render(context)
    html = env.get_template("digest.html.j2").render(context)
    return subject, text, html


def _template_context(config: Config, sections: dict[str, Any], day: date) -> dict[str, Any]:
    return {
        **_static_context(config),
        **sections,
        "empty": _is_empty(sections),
        "empty_line": EMPTY_LINE,
        "date_text": long_date(day),
        "date_short": f"{day:%d/%m/%Y}",
        "highlights": _highlights(sections),
        "tiles": _tiles(sections),
        "csv_filename": csv_filename(day),
        "open_total": sections["counts"]["open_total"],
    }


def csv_filename(day: date) -> str:
    return f"dossiers-en-cours-{day.isoformat()}.csv"


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
    day = now.astimezone(_zone(config)).date()
    if not settings.recipients:
        log.warning("digest: no recipients configured (digest.recipients); nothing queued")
        return None
    with session_scope(app.engine) as session:
        if _handled(session, day):
            return None
    digest = build_digest(app, now=now)
    if digest.empty and settings.skip_when_empty:
        with session_scope(app.engine) as session:
            if not _handled(session, day):
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
                },
            )
    if first is not None:
        log.info("digest of %s queued for %d recipient(s)", day, len(settings.recipients))
    return first


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
    local = now.astimezone(_zone(config))
    if local.time().replace(tzinfo=None) < settings.time:
        return False
    with session_scope(app.engine) as session:
        return not _handled(session, local.date())


def print_digest(app: App, *, now: datetime | None = None, reconcile: bool = True) -> str:
    """The text of the digest as it would be sent now, for ``mailbot digest --print``."""
    return build_digest(app, now=now, reconcile=reconcile).text


def last_digest_at(session: Session) -> datetime | None:
    """When the data of the last digest that was sent ends (its ``created_at``)."""
    return session.exec(
        select(Outbox.created_at)
        .where(Outbox.kind == OutboxKind.DIGEST, Outbox.status == OutboxStatus.SENT)
        .order_by(col(Outbox.created_at).desc())
        .limit(1)
    ).first()


def digest_mailbox(config: Config) -> MailboxSettings:
    """The mailbox the digest is sent from: ``digest.mailbox``, else the first one."""
    name = config.settings.digest.mailbox
    return config.settings.mailbox(name) if name else config.settings.mailboxes[0]


def build_message(
    config: Config, digest: Digest, *, mailbox: MailboxSettings, to: str, now: datetime
) -> tuple[str, bytes]:
    """(Message-ID, raw bytes) of the digest for one recipient."""
    replies = config.settings.replies
    domain = config.settings.smtp.message_id_domain
    message_id = f"<mailbot.digest.{digest.date:%Y%m%d}.{secrets.token_hex(6)}@{domain}>"
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(
        display_name=header_safe(mailbox.display_name),
        addr_spec=mailbox.address or config.settings.smtp.from_address,
    )
    message["To"] = Address(addr_spec=to)
    # Pre-encoded: the policy's own folding drops the space between two
    # encoded words in long accented subjects (CPython 3.11: "à vérifier"
    # arrives as "àvérifier"); the legacy encoder keeps it inside the words.
    message.set_raw(
        "Subject", encoded_header("Subject", digest.subject, max_length=HEADER_SUBJECT_MAX)
    )
    message["Date"] = format_datetime(now.astimezone(_zone(config)))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message[replies.loop_header] = replies.loop_value
    message.set_content(digest.text, subtype="plain", charset="utf-8")
    message.add_alternative(digest.html, subtype="html", charset="utf-8")
    if not digest.empty:
        message.add_attachment(
            digest.csv_bytes,
            maintype="text",
            subtype="csv",
            filename=digest.csv_filename,
            params={"charset": "utf-8"},
        )
    return message_id, message.as_bytes(policy=SMTP)


def check_templates(config: Config) -> None:
    """Render the digest templates with sample data (full and empty); raise ConfigError."""
    directory = config.directory / "templates"
    problems: list[ConfigProblem] = []
    day = date(2026, 11, 25)
    contexts = [
        _template_context(config, sample_sections(config, empty=empty), day)
        for empty in (False, True)
    ]
    for name in TEMPLATES:
        if name not in config.template_names:
            problems.append(ConfigProblem(str(directory / name), "", "template missing"))
            continue
        for context in contexts:
            try:
                config.templates.get_template(name).render(context)
            except jinja2.TemplateError as err:
                line = _template_line(err, name)
                problems.append(
                    ConfigProblem(str(directory / name), "", f"cannot render: {err}", line)
                )
                break
    if problems:
        raise ConfigError(problems)


def sample_sections(config: Config, *, empty: bool = False) -> dict[str, Any]:
    """Digest data with sample values, for ``config check`` and previews."""
    rules = config.rules
    thematique = next(iter(rules.thematiques))
    dossier = {
        "reference": "BSC-2026-0007",
        "intitule": "Potager solidaire du quartier du Perroy",
        "porteur": "Association Les Jardins du Perroy",
        "thematique": rules.thematiques[thematique].label,
        "status": "incomplete",
        "status_label": STATUS_LABELS[DossierStatus.INCOMPLETE],
        "sender": "alice.martin@example.org",
        "received_text": "24/11/2026 à 10:12",
    }
    counts = _counts([], rules)
    if empty:
        news: dict[str, Any] = {
            "new_dossiers": [],
            "completed_dossiers": [],
            "messages_to_review": [],
            "replies": [],
        }
        boxes = []
    else:
        news = {
            "new_dossiers": [dossier],
            "completed_dossiers": [{**dossier, "completed_text": "25/11/2026 à 07:40"}],
            "messages_to_review": [
                {
                    "id": 42,
                    "status": "needs_review",
                    "status_label": MESSAGE_STATUS_LABELS[MessageStatus.NEEDS_REVIEW],
                    "sender": "alice.martin@example.org",
                    "subject": "Candidature",
                    "received_text": "24/11/2026 à 11:00",
                    "reason": "classement incertain (score 3)",
                    "dossier": None,
                }
            ],
            "replies": [
                {
                    "id": 7,
                    "kind": "acknowledgement",
                    "kind_label": KIND_LABELS[OutboxKind.ACKNOWLEDGEMENT],
                    "status": "failed",
                    "status_label": OUTBOX_STATUS_LABELS[OutboxStatus.FAILED],
                    "to": "alice.martin@example.org",
                    "dossier": "BSC-2026-0007",
                    "reason": "refus définitif du serveur : 550 5.1.1 No such user",
                    "when_text": "24/11/2026 à 10:13",
                }
            ],
        }
        boxes = [
            {
                "mailbox": m.name,
                "folder": m.folder,
                "reachable": index == 0,
                "error": None if index == 0 else "cannot connect",
                "on_server": 12 if index == 0 else None,
                "last_uid": 12 if index == 0 else None,
                "unknown_count": 1 if index == 0 else 0,
                "unknown": [
                    {
                        "uid": 3,
                        "date_text": "24/11/2026 à 09:00",
                        "sender": "bob@example.org",
                        "subject": "Question",
                    }
                ]
                if index == 0
                else [],
                "note": None,
            }
            for index, m in enumerate(config.settings.mailboxes)
        ]
    return {
        **news,
        "incomplete_dossiers": [
            {
                **dossier,
                "days_waiting": 3,
                "waiting_text": "3 jours",
                "missing": ["letter"],
                "missing_text": describe_missing(["letter"], rules=rules),
            }
        ],
        "counts": counts,
        "period": {
            "since": "2026-11-24T07:00:00+00:00",
            "until": "2026-11-25T07:00:00+00:00",
            "since_text": "24/11/2026 à 08:00",
            "after_previous_digest": True,
        },
        "reconciliation": {"checked": True, "mailboxes": boxes},
    }


# --------------------------------------------------------------------------
# Collecting the sections


def _collect(
    session: Session, config: Config, since: datetime, until: datetime, zone: ZoneInfo
) -> dict[str, Any]:
    rules = config.rules
    today = until.astimezone(zone).date()

    def in_period(column: Any) -> Any:
        return (column >= since) & (column < until)

    new = session.exec(
        select(Dossier)
        .where(in_period(col(Dossier.received_at)))
        .order_by(col(Dossier.received_at), col(Dossier.id))
    ).all()
    completed = _completed_in_period(
        session,
        session.exec(
            select(Dossier)
            .where(in_period(col(Dossier.completed_at)))
            .order_by(col(Dossier.completed_at), col(Dossier.id))
        ).all(),
    )
    incomplete = session.exec(
        select(Dossier)
        .where(Dossier.status == DossierStatus.INCOMPLETE)
        .order_by(col(Dossier.received_at), col(Dossier.id))
    ).all()
    messages = session.exec(
        select(Message)
        .where(
            col(Message.status).in_((MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED)),
            in_period(col(Message.updated_at)),
        )
        .order_by(col(Message.first_seen_at), col(Message.id))
    ).all()
    replies = session.exec(
        select(Outbox)
        .where(
            or_(
                (col(Outbox.status) == OutboxStatus.SUPPRESSED) & in_period(col(Outbox.created_at)),
                (col(Outbox.status) == OutboxStatus.FAILED)
                & in_period(col(Outbox.next_attempt_at)),
            )
        )
        .order_by(col(Outbox.created_at), col(Outbox.id))
    ).all()
    open_dossiers = session.exec(
        select(Dossier).where(col(Dossier.status).in_(OPEN_STATUSES)).order_by(col(Dossier.id))
    ).all()
    references = _references(
        session, [m.dossier_id for m in messages] + [r.dossier_id for r in replies]
    )
    return {
        "new_dossiers": [_dossier_row(d, rules, zone) for d in new],
        "completed_dossiers": [
            {**_dossier_row(d, rules, zone), "completed_text": _when(d.completed_at, zone)}
            for d in completed
        ],
        "incomplete_dossiers": [
            {
                **_dossier_row(d, rules, zone),
                "days_waiting": (today - d.received_at.astimezone(zone).date()).days,
                "waiting_text": _waiting(today - d.received_at.astimezone(zone).date()),
                "missing": list(d.missing or []),
                "missing_text": describe_missing(list(d.missing or []), rules=rules),
            }
            for d in incomplete
        ],
        "messages_to_review": [_message_row(m, references, zone) for m in messages],
        "replies": [_reply_row(r, references, zone) for r in replies],
        "counts": _counts(open_dossiers, rules),
    }


def _completed_in_period(session: Session, dossiers: Sequence[Dossier]) -> list[Dossier]:
    """Leave out dossiers that arrived complete: "new dossiers" already says so."""
    if not dossiers:
        return []
    events = session.exec(
        select(Event).where(
            col(Event.action).in_(("dossier.created", "dossier.status_changed")),
            col(Event.dossier_id).in_([d.id for d in dossiers]),
        )
    ).all()
    born_complete = {
        e.dossier_id
        for e in events
        if e.action == "dossier.created"
        and (e.details or {}).get("status") == DossierStatus.COMPLETE
    }
    became_complete = {
        e.dossier_id
        for e in events
        if e.action == "dossier.status_changed"
        and (e.details or {}).get("new") == DossierStatus.COMPLETE
    }
    return [d for d in dossiers if d.id in became_complete or d.id not in born_complete]


def _references(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = session.exec(select(Dossier.id, Dossier.reference).where(col(Dossier.id).in_(wanted)))
    return {dossier_id: reference for dossier_id, reference in rows.all() if dossier_id}


def _dossier_row(dossier: Dossier, rules: Rules, zone: ZoneInfo) -> dict[str, Any]:
    fields = dossier.fields or {}
    return {
        "reference": dossier.reference,
        "intitule": _text(fields.get("intitule")) or None,
        "porteur": _text(fields.get("porteur_structure")) or None,
        "thematique": _choice_label(rules.thematiques, fields.get("thematique")),
        "status": dossier.status,
        "status_label": STATUS_LABELS.get(dossier.status, dossier.status),
        "sender": dossier.sender,
        "received_text": _when(dossier.received_at, zone),
    }


def _message_row(message: Message, references: dict[int, str], zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": message.id,
        "status": message.status,
        "status_label": MESSAGE_STATUS_LABELS.get(message.status, message.status),
        "sender": message.sender or "(inconnu)",
        "subject": header_safe(message.subject or "", max_length=SUBJECT_MAX_LENGTH)
        or "(sans objet)",
        "received_text": _when(message.first_seen_at, zone),
        "reason": message_reason(message),
        "dossier": references.get(message.dossier_id) if message.dossier_id else None,
    }


def _reply_row(row: Outbox, references: dict[int, str], zone: ZoneInfo) -> dict[str, Any]:
    if row.status == OutboxStatus.SUPPRESSED:
        reason = french_reason(row.suppressed_reason or "")
        when = row.created_at
    else:
        reason = french_reason(row.last_error or "") or "échec de l'envoi"
        when = row.next_attempt_at or row.created_at
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_label": KIND_LABELS.get(row.kind, row.kind),
        "status": row.status,
        "status_label": OUTBOX_STATUS_LABELS.get(row.status, row.status),
        "to": row.to_addr,
        "dossier": references.get(row.dossier_id) if row.dossier_id else None,
        "reason": reason,
        "when_text": _when(when, zone),
    }


def _counts(dossiers: Sequence[Dossier], rules: Rules) -> dict[str, Any]:
    by_status = {status: 0 for status in OPEN_STATUSES}
    by_thematique = {key: 0 for key in rules.thematiques}
    by_criterion = {key: 0 for key in rules.criteria}
    no_thematique = no_criterion = 0
    for dossier in dossiers:
        by_status[DossierStatus(dossier.status)] += 1
        fields = dossier.fields or {}
        thematique = fields.get("thematique")
        if thematique in by_thematique:
            by_thematique[thematique] += 1
        else:
            no_thematique += 1
        criteria = fields.get("criteres") or []
        known = [c for c in criteria if c in by_criterion] if isinstance(criteria, list) else []
        for criterion in dict.fromkeys(known):
            by_criterion[criterion] += 1
        if not known:
            no_criterion += 1
    thematiques = [
        {"key": key, "label": rules.thematiques[key].label, "count": count}
        for key, count in by_thematique.items()
    ]
    if no_thematique:
        thematiques.append({"key": None, "label": "Non renseignée", "count": no_thematique})
    criteria_rows = [
        {"key": key, "label": rules.criteria[key].label, "count": count}
        for key, count in by_criterion.items()
    ]
    if no_criterion:
        criteria_rows.append({"key": None, "label": "Aucun critère coché", "count": no_criterion})
    return {
        "open_total": len(dossiers),
        "by_status": [
            {"status": str(s), "label": STATUS_LABELS[s], "count": n} for s, n in by_status.items()
        ],
        "by_thematique": thematiques,
        "by_criterion": criteria_rows,
    }


def message_reason(message: Message) -> str:
    """Why a message waits for staff: its error, else its last warning, else the deciding rule."""
    if message.error:
        return _cut(french_reason(message.error))
    warnings = [w for w in (message.warnings or []) if w]
    if warnings:
        return _cut(f"avertissement : {warnings[-1]}")
    hits = [h for h in (message.rule_trace or []) if isinstance(h, dict) and h.get("hit")]
    if hits:
        rule = str(hits[-1].get("rule", ""))
        label = RULE_LABELS.get(rule, f"règle « {rule} »")
        detail = str(hits[-1].get("reason") or "")
        return _cut(f"{label} ({detail})" if detail else label)
    return "à examiner"


def french_reason(text: str) -> str:
    """A suppression reason or delivery error in French when it is one we know."""
    text = text.strip()
    for pattern, render in _REASONS:
        match = pattern.match(text)
        if match:
            return _cut(render(match))
    return _cut(text)


# --------------------------------------------------------------------------
# Reconciliation with the IMAP server


def reconcile_mailboxes(
    app: App, *, client_factory: Callable[[MailboxSettings, str], MailboxClient] = MailboxClient
) -> list[dict[str, Any]]:
    """For each enabled mailbox, the server messages below the cursor that the ledger lacks."""
    return [
        reconcile_mailbox(app, mailbox, client_factory=client_factory)
        for mailbox in app.config.settings.mailboxes
        if mailbox.enabled
    ]


def reconcile_mailbox(
    app: App,
    mailbox: MailboxSettings,
    *,
    client_factory: Callable[[MailboxSettings, str], MailboxClient] = MailboxClient,
) -> dict[str, Any]:
    """Compare one folder with the ledger; never raises (an unreachable box is reported)."""
    zone = _zone(app.config)
    entry: dict[str, Any] = {
        "mailbox": mailbox.name,
        "folder": mailbox.folder,
        "reachable": False,
        "error": None,
        "on_server": None,
        "last_uid": None,
        "unknown_count": 0,
        "unknown": [],
        "note": None,
    }
    try:
        with client_factory(mailbox, secret(mailbox.password_env) or "") as client:
            state = client.select(mailbox.folder)
            uids = client.all_uids()
            entry.update(reachable=True, folder=state.name, on_server=len(uids))
            known: set[int] = set()
            # The cursor first, then the sightings: the poller commits a sighting
            # no later than the cursor that covers it.
            with session_scope(app.engine) as session:
                cursor = repo.get_cursor(session=session, mailbox=mailbox.name, folder=state.name)
                if cursor is not None and cursor.uidvalidity == state.uidvalidity:
                    known = set(
                        session.exec(
                            select(Sighting.uid).where(
                                Sighting.mailbox == mailbox.name,
                                Sighting.folder == state.name,
                                Sighting.uidvalidity == state.uidvalidity,
                            )
                        ).all()
                    )
            if cursor is None:
                if uids:
                    waiting = _plural(len(uids), "message attend", "messages attendent")
                    entry["note"] = f"jamais relevée : {waiting} le premier relevé"
                return entry
            if cursor.uidvalidity != state.uidvalidity:
                entry["note"] = (
                    "le dossier IMAP a été recréé sur le serveur (UIDVALIDITY modifiée) : "
                    "il sera entièrement relu au prochain relevé"
                )
                return entry
            entry["last_uid"] = cursor.last_uid
            unknown = [uid for uid in uids if uid <= cursor.last_uid and uid not in known]
            entry["unknown_count"] = len(unknown)
            if unknown:
                entry["unknown"] = _describe_server_messages(
                    client, unknown[:MAX_UNKNOWN_LISTED], zone
                )
    except Exception as err:  # one mailbox's trouble must never stop the digest
        expected = isinstance(err, ImapError | MailbotError | OSError)
        log.warning("digest: cannot reconcile %s: %s", mailbox.name, err, exc_info=not expected)
        entry.update(reachable=False, error=_cut(str(err) or type(err).__name__))
        entry.update(unknown=[], unknown_count=0, note=None)
    return entry


def _describe_server_messages(
    client: MailboxClient, uids: Sequence[int], zone: ZoneInfo
) -> list[dict[str, Any]]:
    """Date, sender address and subject of server messages, from their headers (BODY.PEEK)."""
    described = {uid: {"uid": uid, "date_text": "", "sender": "", "subject": ""} for uid in uids}
    try:
        fetched_all = list(client.fetch(list(uids), batch=len(uids), headers_only=True))
    except ImapError as err:  # the count is known; the details are a bonus
        log.warning("digest: cannot fetch the headers of unknown messages: %s", err)
        fetched_all = []
    for fetched in fetched_all:
        entry = described.get(fetched.uid)
        if entry is None:
            continue
        try:
            headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
                fetched.raw
            )
            entry["sender"] = parseaddr(_decoded(headers.get("From")))[1]
            entry["subject"] = header_safe(
                _decoded(headers.get("Subject")), max_length=SUBJECT_MAX_LENGTH
            )
            if headers.get("Date"):
                sent = parsedate_to_datetime(str(headers.get("Date")))
                if sent.tzinfo is not None:
                    entry["date_text"] = _when(sent, zone)
        except Exception:  # a broken header only leaves a blank cell
            log.debug("digest: cannot read headers of UID %s", fetched.uid, exc_info=True)
    return [described[uid] for uid in uids]


def _decoded(value: Any) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:
        return str(value)


# --------------------------------------------------------------------------
# CSV of the open dossiers


def _open_dossier_rows(session: Session, config: Config, zone: ZoneInfo) -> list[dict[str, Any]]:
    """``views.dossier_summary`` of each open dossier, worded for staff."""
    rules = config.rules
    rows = []
    dossiers = session.exec(
        select(Dossier)
        .where(col(Dossier.status).in_(OPEN_STATUSES))
        .order_by(col(Dossier.received_at), col(Dossier.id))
    ).all()
    for dossier in dossiers:
        summary = views.dossier_summary(session, dossier)
        summary["status"] = STATUS_LABELS.get(dossier.status, dossier.status)
        summary["missing"] = describe_missing(list(dossier.missing or []), rules=rules)
        for key in ("received_at", "updated_at", "completed_at"):
            value = getattr(dossier, key)
            summary[key] = value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else None
        summary["fields"] = _worded_fields(dossier.fields or {}, rules)
        rows.append(summary)
    return rows


def _worded_fields(fields: dict[str, Any], rules: Rules) -> dict[str, Any]:
    """Choice keys as their printed labels; private fields left out."""
    sources = {
        FieldKind.THEMATIQUE: rules.thematiques,
        FieldKind.CRITERIA: rules.criteria,
        FieldKind.CATEGORY: rules.categories,
        FieldKind.NATURE: rules.natures,
    }
    out: dict[str, Any] = {}
    for key, value in fields.items():
        rule = rules.fields.get(key)
        if rule is None or _is_private(key, rule.kind):
            continue
        choices = sources.get(rule.kind)
        if choices is None:
            out[key] = value
        elif isinstance(value, list):
            out[key] = [_choice_label(choices, v) for v in value]
        else:
            out[key] = _choice_label(choices, value)
    return out


def _is_private(key: str, kind: FieldKind) -> bool:
    return key in PRIVATE_FIELDS or kind in PRIVATE_FIELD_KINDS


def open_dossiers_csv(config: Config, rows: Sequence[dict[str, Any]]) -> bytes:
    """UTF-8 (with BOM), ``;``-separated, one line per open dossier, private fields left out."""
    rules = config.rules
    public = {k: r for k, r in rules.fields.items() if not _is_private(k, r.kind)}
    return export.to_csv(rules.model_copy(update={"fields": public}), rows)


# --------------------------------------------------------------------------
# Once per day


def _handled(session: Session, day: date) -> bool:
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
        .limit(31)
    ).all()
    return any((details or {}).get("date") == day.isoformat() for details in skipped)


# --------------------------------------------------------------------------
# Wording helpers


def long_date(day: date) -> str:
    """``mardi 1er décembre 2026``, whatever the machine's locale."""
    number = "1er" if day.day == 1 else str(day.day)
    return f"{_DAYS[day.weekday()]} {number} {_MONTHS[day.month - 1]} {day.year}"


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    local = value.astimezone(zone)
    return f"{local:%d/%m/%Y} à {local:%H:%M}"


def _waiting(delta: timedelta) -> str:
    days = delta.days
    if days <= 0:
        return "reçu aujourd'hui"
    return _plural(days, "jour", "jours")


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count <= 1 else many}"


def _choice_label(choices: dict[str, Any], key: Any) -> str | None:
    if key is None or key == "":
        return None
    choice = choices.get(key) if isinstance(key, str) else None
    return choice.label if choice is not None else str(key)


def _text(value: Any) -> str:
    return header_safe(str(value), max_length=200) if value not in (None, "") else ""


def _cut(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= REASON_MAX_LENGTH:
        return text
    return text[: REASON_MAX_LENGTH - 1].rstrip() + "…"


def _zone(config: Config) -> ZoneInfo:
    return ZoneInfo(config.settings.service.timezone)


def _is_empty(sections: dict[str, Any]) -> bool:
    """Nothing happened: no news, and every mailbox reachable and reconciled."""
    news = ("new_dossiers", "completed_dossiers", "messages_to_review", "replies")
    if any(sections[key] for key in news):
        return False
    return all(
        m["reachable"] and not m["unknown_count"] for m in sections["reconciliation"]["mailboxes"]
    )


def _highlights(sections: dict[str, Any]) -> list[str]:
    """The few numbers worth a place in the subject line."""
    out = []
    if n := len(sections["new_dossiers"]):
        out.append(_plural(n, "nouveau dossier", "nouveaux dossiers"))
    if n := len(sections["completed_dossiers"]):
        out.append(_plural(n, "dossier complété", "dossiers complétés"))
    if n := len(sections["messages_to_review"]):
        out.append(_plural(n, "message à vérifier", "messages à vérifier"))
    if n := len(sections["replies"]):
        out.append(_plural(n, "réponse non envoyée", "réponses non envoyées"))
    boxes = sections["reconciliation"]["mailboxes"]
    if n := sum(m["unknown_count"] for m in boxes):
        out.append(_plural(n, "message non relevé", "messages non relevés"))
    if n := sum(1 for m in boxes if not m["reachable"]):
        out.append(_plural(n, "boîte injoignable", "boîtes injoignables"))
    return out


def _tiles(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary figures at the top of the HTML digest."""
    boxes = sections["reconciliation"]["mailboxes"]
    problems = sum(m["unknown_count"] for m in boxes) + sum(1 for m in boxes if not m["reachable"])
    return [
        {"label": "Nouveaux dossiers", "count": len(sections["new_dossiers"]), "alert": False},
        {"label": "Devenus complets", "count": len(sections["completed_dossiers"]), "alert": False},
        {
            "label": "Incomplets en attente",
            "count": len(sections["incomplete_dossiers"]),
            "alert": False,
        },
        {
            "label": "Messages à vérifier",
            "count": len(sections["messages_to_review"]),
            "alert": bool(sections["messages_to_review"]),
        },
        {
            "label": "Réponses non envoyées",
            "count": len(sections["replies"]),
            "alert": bool(sections["replies"]),
        },
        {"label": "Anomalies des boîtes", "count": problems, "alert": bool(problems)},
    ]
