"""The digest rendered: its sections become a subject, a text, an HTML page and a message.

``build_digest`` gathers the sections (``collect``, and the mailbox check of
``reconcile`` unless told not to) and renders them with the admin's
templates ``digest.subject.j2``, ``digest.txt.j2`` and ``digest.html.j2``;
it writes nothing, so ``mailbot digest --print`` can call it freely.
``build_message`` makes the e-mail for one recipient, with the spreadsheet
of the open dossiers attached. It carries our loop header and
``Auto-Submitted: auto-generated``, so when it lands in one of our own
mailboxes it is never filed as a candidature.

``check_templates`` renders the templates with ``sample_sections`` for
``mailbot config check``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import jinja2

from mailbot import wording
from mailbot.app import App
from mailbot.config import Config, MailboxSettings
from mailbot.digest.collect import (
    DEFAULT_PERIOD,
    collect_sections,
    count_open_dossiers,
    dossier_url,
    last_digest_at,
    open_dossier_rows,
    open_dossiers_csv,
    service_zone,
)
from mailbot.digest.reconcile import reconcile_mailboxes
from mailbot.errors import ConfigError, ConfigProblem
from mailbot.headers import encoded_header
from mailbot.replies import common_template_context, template_error_line
from parsers.checks import describe_missing
from parsers.reasons import DeliveryFailure, MailboxCheck, ReviewReason
from parsers.text import header_safe
from storage.db import session_scope
from storage.models import DossierStatus, MessageStatus, OutboxKind, OutboxStatus, utcnow

EMPTY_LINE = "Rien de nouveau depuis le dernier récapitulatif."
TEMPLATES = ("digest.subject.j2", "digest.txt.j2", "digest.html.j2")
HEADER_SUBJECT_MAX = 200  # of the digest itself


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
    zone = service_zone(config)
    with session_scope(app.engine) as session:
        previous = last_digest_at(session) if since is None else None
        start = since or previous or now - DEFAULT_PERIOD
        sections = collect_sections(session, config=config, since=start, until=now)
        open_dossiers = open_dossier_rows(session, config)
    sections["period"] = {
        "since": start.isoformat(),
        "until": now.isoformat(),
        "since_text": wording.local_date_time(start, zone),
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
        empty=is_empty(sections),
        sections=sections,
        since=start,
        until=now,
        csv_filename=csv_filename(day),
    )


def render_digest(config: Config, sections: dict[str, Any], day: date) -> tuple[str, str, str]:
    """(subject, text, html) from the templates ``digest.*.j2``."""
    context = template_context(config, sections, day)
    env = config.templates
    subject = header_safe(
        env.get_template("digest.subject.j2").render(context), max_length=HEADER_SUBJECT_MAX
    )
    text = env.get_template("digest.txt.j2").render(context)
    html = env.get_template("digest.html.j2").render(context)
    return subject, text, html


def template_context(config: Config, sections: dict[str, Any], day: date) -> dict[str, Any]:
    return {
        **common_template_context(config),
        **sections,
        "empty": is_empty(sections),
        "empty_line": EMPTY_LINE,
        "date_text": wording.long_date(day),
        "date_short": f"{day:%d/%m/%Y}",
        "highlights": subject_highlights(sections),
        "tiles": summary_tiles(sections),
        "csv_filename": csv_filename(day),
        "open_total": sections["counts"]["open_total"],
        # With a back-office address, dossiers are links and staff are sent there.
        "back_office_url": (config.settings.web.base_url or "").rstrip("/") or None,
    }


def csv_filename(day: date) -> str:
    return f"dossiers-en-cours-{day.isoformat()}.csv"


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
    message["Date"] = format_datetime(now.astimezone(service_zone(config)))
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
        template_context(config, sample_sections(config, empty=empty), day)
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
                line = template_error_line(err, name)
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
        "status_label": wording.DOSSIER_STATUS_LABELS[DossierStatus.INCOMPLETE],
        "sender": "alice.martin@example.org",
        "received_text": "24/11/2026 10:12",
        "url": dossier_url(config, "BSC-2026-0007"),
    }
    counts = count_open_dossiers([], rules)
    to_check = {
        **dossier,
        "reference": "BSC-2026-0008",
        "url": dossier_url(config, "BSC-2026-0008"),
        "status": "needs_review",
        "status_label": wording.DOSSIER_STATUS_LABELS[DossierStatus.NEEDS_REVIEW],
        "waiting_text": "reçu aujourd'hui",
        "doubts": [
            {
                "key": "categorie_label",
                "label": rules.fields["categorie_label"].label,
                "value": None,
                "confidence": 0.4,
                "confidence_text": wording.confidence_text(0.4),
                "doubt": wording.reading_doubt(
                    "several boxes read as ticked where one is expected"
                ),
                "page": 1,
                "snippet": "☒ 1 - Initiative réalisée ☒ 2 - Projet",
            }
        ],
    }
    if empty:
        news: dict[str, Any] = {
            "new_dossiers": [],
            "dossiers_to_check": [],
            "completed_dossiers": [],
            "messages_to_review": [],
            "replies": [],
            "reading_warnings": [],
        }
        boxes = []
    else:
        news = {
            "new_dossiers": [dossier],
            "dossiers_to_check": [to_check],
            "completed_dossiers": [{**dossier, "completed_text": "25/11/2026 07:40"}],
            "messages_to_review": [
                {
                    "id": 42,
                    "status": "needs_review",
                    "status_label": wording.MESSAGE_STATUS_LABELS[MessageStatus.NEEDS_REVIEW],
                    "sender": "alice.martin@example.org",
                    "subject": "Candidature",
                    "received_text": "24/11/2026 11:00",
                    "reason_code": ReviewReason.UNCERTAIN_SCORE,
                    "reason": f"{wording.reason_label(ReviewReason.UNCERTAIN_SCORE)} (score 3)",
                    "dossier": None,
                    "dossier_url": None,
                }
            ],
            "replies": [
                {
                    "id": 7,
                    "kind": "acknowledgement",
                    "kind_label": wording.REPLY_KIND_LABELS[OutboxKind.ACKNOWLEDGEMENT],
                    "status": "failed",
                    "status_label": wording.OUTBOX_STATUS_LABELS[OutboxStatus.FAILED],
                    "to": "alice.martin@example.org",
                    "dossier": "BSC-2026-0007",
                    "dossier_url": dossier_url(config, "BSC-2026-0007"),
                    "reason_code": DeliveryFailure.REFUSED,
                    "reason": (
                        f"{wording.reason_label(DeliveryFailure.REFUSED)} : 550 5.1.1 No such user"
                    ),
                    "when_text": "24/11/2026 10:13",
                }
            ],
            "reading_warnings": [
                {
                    "dossier": "BSC-2026-0007",
                    "dossier_url": dossier_url(config, "BSC-2026-0007"),
                    "warning": wording.reading_warning(
                        "dossier.pdf: page 3 cut at 20,000 characters"
                    ),
                }
            ],
        }
        boxes = [
            {
                "mailbox": m.name,
                "folder": m.folder,
                "reachable": index == 0,
                "reason": None if index == 0 else MailboxCheck.UNREACHABLE,
                "error": None if index == 0 else "cannot connect",
                "on_server": 12 if index == 0 else None,
                "last_uid": 12 if index == 0 else None,
                "unknown_count": 1 if index == 0 else 0,
                "unknown": [
                    {
                        "uid": 3,
                        "date_text": "24/11/2026 09:00",
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
            "since_text": "24/11/2026 08:00",
            "after_previous_digest": True,
        },
        "reconciliation": {"checked": True, "mailboxes": boxes},
    }


# --------------------------------------------------------------------------
# Figures of the subject line and the HTML summary


def is_empty(sections: dict[str, Any]) -> bool:
    """Nothing happened: no news, and every mailbox reachable and reconciled."""
    news = (
        "new_dossiers",
        "completed_dossiers",
        "dossiers_to_check",
        "messages_to_review",
        "replies",
    )
    if any(sections.get(key) for key in news) or sections.get("reading_warnings"):
        return False
    return all(
        m["reachable"] and not m["unknown_count"] for m in sections["reconciliation"]["mailboxes"]
    )


def subject_highlights(sections: dict[str, Any]) -> list[str]:
    """The few numbers worth a place in the subject line."""
    out = []
    if n := len(sections["new_dossiers"]):
        out.append(wording.plural(n, "nouveau dossier", "nouveaux dossiers"))
    if n := len(sections["completed_dossiers"]):
        out.append(wording.plural(n, "dossier complété", "dossiers complétés"))
    if n := len(sections.get("dossiers_to_check", ())):
        out.append(wording.plural(n, "dossier à vérifier", "dossiers à vérifier"))
    if n := len(sections["messages_to_review"]):
        out.append(wording.plural(n, "message à vérifier", "messages à vérifier"))
    if n := len(sections["replies"]):
        out.append(wording.plural(n, "réponse non envoyée", "réponses non envoyées"))
    boxes = sections["reconciliation"]["mailboxes"]
    if n := sum(m["unknown_count"] for m in boxes):
        out.append(wording.plural(n, "message non relevé", "messages non relevés"))
    if n := sum(1 for m in boxes if not m["reachable"]):
        out.append(wording.plural(n, "boîte injoignable", "boîtes injoignables"))
    return out


def summary_tiles(sections: dict[str, Any]) -> list[dict[str, Any]]:
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
            "label": "Dossiers à vérifier",
            "count": len(sections.get("dossiers_to_check", ())),
            "alert": bool(sections.get("dossiers_to_check")),
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
