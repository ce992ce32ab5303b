"""What the digest reports, read from the database: one dict of plain sections.

``collect_sections`` gathers what happened in ``[since, until)`` (new and
completed dossiers, messages to review or failed, replies suppressed or
undeliverable) and what waits (dossiers to check, with each field read with
doubt and its evidence; incomplete dossiers; counts of the open dossiers per
status, thématique and criterion), already worded for staff
through ``mailbot/wording.py``. ``open_dossier_rows`` and
``open_dossiers_csv`` make the spreadsheet attached to the digest.

Reads only. Personal data: dossiers are named by reference, title,
structure and sender address; phone numbers and postal addresses are left
out (``is_private_field``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, or_, select

from mailbot import export, views, wording
from mailbot.config import Config, FieldKind, Rules
from mailbot.dossier_update import open_doubts
from parsers.checks import describe_missing
from parsers.text import header_safe
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Piece,
)

OPEN_STATUSES = (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE, DossierStatus.NEEDS_REVIEW)
# Without a digest sent before, the first one covers this much.
DEFAULT_PERIOD = timedelta(hours=24)
SUBJECT_MAX_LENGTH = 120  # of a message quoted in the digest
FIELD_TEXT_MAX_LENGTH = 200  # of a dossier's title or structure
# Fields never copied into the digest: staff reach applicants by e-mail.
PRIVATE_FIELD_KINDS = frozenset({FieldKind.PHONE})
PRIVATE_FIELDS = frozenset({"adresse"})


def service_zone(config: Config) -> ZoneInfo:
    """The service's time zone: days and hours of the digest are local."""
    return wording.service_zone(config)


def dossier_url(config: Config, reference: str | None) -> str | None:
    """The back-office page of a dossier when ``[web] base_url`` is set, else None."""
    base = config.settings.web.base_url
    if not base or not reference:
        return None
    return f"{base.rstrip('/')}/dossiers/{quote(reference)}"


def last_digest_at(session: Session) -> datetime | None:
    """When the data of the last digest that was sent ends (its ``created_at``)."""
    return session.exec(
        select(Outbox.created_at)
        .where(Outbox.kind == OutboxKind.DIGEST, Outbox.status == OutboxStatus.SENT)
        .order_by(col(Outbox.created_at).desc())
        .limit(1)
    ).first()


def collect_sections(
    session: Session, *, config: Config, since: datetime, until: datetime
) -> dict[str, Any]:
    """Every database section of the digest of ``[since, until)``."""
    rules = config.rules
    zone = service_zone(config)
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
    to_check = session.exec(
        select(Dossier)
        .where(Dossier.status == DossierStatus.NEEDS_REVIEW)
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
                # Held by a global cap: listed until sent, whenever it was held.
                col(Outbox.status) == OutboxStatus.HELD,
                (col(Outbox.status) == OutboxStatus.FAILED)
                & in_period(col(Outbox.next_attempt_at)),
            )
        )
        .order_by(col(Outbox.created_at), col(Outbox.id))
    ).all()
    open_dossiers = session.exec(
        select(Dossier).where(col(Dossier.status).in_(OPEN_STATUSES)).order_by(col(Dossier.id))
    ).all()
    warned = _reading_warnings(session, in_period)
    references = _references(
        session,
        [m.dossier_id for m in messages]
        + [r.dossier_id for r in replies]
        + [dossier_id for dossier_id, _warning in warned],
    )
    return {
        "new_dossiers": [_dossier_row(d, config, zone) for d in new],
        "completed_dossiers": [
            {
                **_dossier_row(d, config, zone),
                "completed_text": wording.local_date_time(d.completed_at, zone),
            }
            for d in completed
        ],
        "incomplete_dossiers": [
            {
                **_dossier_row(d, config, zone),
                "days_waiting": (today - d.received_at.astimezone(zone).date()).days,
                "waiting_text": wording.days_waiting(today - d.received_at.astimezone(zone).date()),
                "missing": list(d.missing or []),
                "missing_text": describe_missing(list(d.missing or []), rules=rules),
            }
            for d in incomplete
        ],
        "dossiers_to_check": [
            {
                **_dossier_row(d, config, zone),
                "waiting_text": wording.days_waiting(today - d.received_at.astimezone(zone).date()),
                "doubts": doubt_rows(d, rules),
            }
            for d in to_check
        ],
        "messages_to_review": [_message_row(m, references, config) for m in messages],
        "replies": [_reply_row(r, references, config) for r in replies],
        "reading_warnings": [
            {
                "dossier": references.get(dossier_id),
                "dossier_url": dossier_url(config, references.get(dossier_id)),
                "warning": wording.reading_warning(warning),
            }
            for dossier_id, warning in warned
            if dossier_id in references
        ],
        "counts": count_open_dossiers(open_dossiers, rules),
    }


def doubt_rows(dossier: Dossier, rules: Rules) -> list[dict[str, Any]]:
    """Each required field of a dossier read with doubt: label, value read, confidence, evidence."""
    fields, evidence = dossier.fields or {}, dossier.evidence or {}
    rows = []
    for key in open_doubts(fields=fields, evidence=evidence, rules=rules):
        item = evidence[key]
        value = wording.worded_fields({key: item.get("value")}, rules).get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        page = item.get("page")
        rows.append(
            {
                "key": key,
                "label": rules.fields[key].label,
                "value": _field_text(value) or None,
                "confidence": item.get("confidence"),
                "confidence_text": wording.confidence_text(item.get("confidence")),
                "doubt": wording.reading_doubt(item.get("doubt")),
                "page": page if isinstance(page, int) else None,
                "snippet": _field_text(item.get("raw")) or None,
            }
        )
    return rows


def _reading_warnings(session: Session, in_period: Any) -> list[tuple[int, str]]:
    """(dossier id, warning) of the pieces and messages filed into a dossier in the period."""
    found: dict[tuple[int, str], None] = {}
    pieces = session.exec(
        select(Piece.dossier_id, Piece.warnings)
        .where(in_period(col(Piece.added_at)))
        .order_by(col(Piece.dossier_id), col(Piece.id))
    ).all()
    messages = session.exec(
        select(Message.dossier_id, Message.warnings)
        .where(col(Message.dossier_id).is_not(None), in_period(col(Message.first_seen_at)))
        .order_by(col(Message.dossier_id), col(Message.id))
    ).all()
    for dossier_id, warnings in [*pieces, *messages]:
        for warning in warnings or []:
            if dossier_id is not None and warning:
                found[(dossier_id, str(warning))] = None
    return sorted(found, key=lambda item: item[0])


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
        # A decision that left the status as it was is not a change.
        and (e.details or {}).get("old") != DossierStatus.COMPLETE
    }
    return [d for d in dossiers if d.id in became_complete or d.id not in born_complete]


def _references(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Reference of each dossier id (for messages and replies that name a dossier)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = session.exec(select(Dossier.id, Dossier.reference).where(col(Dossier.id).in_(wanted)))
    return {dossier_id: reference for dossier_id, reference in rows.all() if dossier_id}


def _field_text(value: Any) -> str:
    """A field value on one line, bounded; empty for a missing value."""
    if value in (None, ""):
        return ""
    return header_safe(str(value), max_length=FIELD_TEXT_MAX_LENGTH)


def _dossier_row(dossier: Dossier, config: Config, zone: ZoneInfo) -> dict[str, Any]:
    rules = config.rules
    fields = dossier.fields or {}
    return {
        "reference": dossier.reference,
        "url": dossier_url(config, dossier.reference),
        "intitule": _field_text(fields.get("intitule")) or None,
        "porteur": _field_text(fields.get("porteur_structure")) or None,
        "thematique": wording.thematique_label(rules, fields.get("thematique")),
        "status": dossier.status,
        "status_label": wording.label(wording.DOSSIER_STATUS_LABELS, dossier.status),
        "sender": dossier.sender,
        "received_text": wording.local_date_time(dossier.received_at, zone),
    }


def _message_row(message: Message, references: dict[int, str], config: Config) -> dict[str, Any]:
    zone = service_zone(config)
    reference = references.get(message.dossier_id) if message.dossier_id else None
    return {
        "id": message.id,
        "status": message.status,
        "status_label": wording.label(wording.MESSAGE_STATUS_LABELS, message.status),
        "sender": message.sender or "(inconnu)",
        "subject": header_safe(message.subject or "", max_length=SUBJECT_MAX_LENGTH)
        or "(sans objet)",
        "received_text": wording.local_date_time(message.first_seen_at, zone),
        "reason_code": message.reason,
        "reason": wording.message_reason(message),
        "dossier": reference,
        "dossier_url": dossier_url(config, reference),
    }


def _reply_row(row: Outbox, references: dict[int, str], config: Config) -> dict[str, Any]:
    zone = service_zone(config)
    reference = references.get(row.dossier_id) if row.dossier_id else None
    if row.status in (OutboxStatus.SUPPRESSED, OutboxStatus.HELD):
        code, when = row.suppressed_reason, row.created_at
    else:
        code, when = row.failure_reason, row.next_attempt_at or row.created_at
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_label": wording.label(wording.REPLY_KIND_LABELS, row.kind),
        "status": row.status,
        "status_label": wording.label(wording.OUTBOX_STATUS_LABELS, row.status),
        "to": row.to_addr,
        "dossier": reference,
        "dossier_url": dossier_url(config, reference),
        "reason_code": code,
        "reason": wording.reply_reason(row, reference=reference),
        "when_text": wording.local_date_time(when, zone),
    }


def count_open_dossiers(dossiers: Sequence[Dossier], rules: Rules) -> dict[str, Any]:
    """Open dossiers counted by status, thématique and criterion, with their labels."""
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
        {"key": key, "label": wording.thematique_label(rules, key), "count": count}
        for key, count in by_thematique.items()
    ]
    if no_thematique:
        thematiques.append({"key": None, "label": wording.NO_THEMATIQUE, "count": no_thematique})
    criteria_rows = [
        {"key": key, "label": wording.criterion_label(rules, key), "count": count}
        for key, count in by_criterion.items()
    ]
    if no_criterion:
        criteria_rows.append({"key": None, "label": wording.NO_CRITERION, "count": no_criterion})
    return {
        "open_total": len(dossiers),
        "by_status": [
            {"status": str(s), "label": wording.DOSSIER_STATUS_LABELS[s], "count": n}
            for s, n in by_status.items()
        ],
        "by_thematique": thematiques,
        "by_criterion": criteria_rows,
    }


# --------------------------------------------------------------------------
# The spreadsheet of the open dossiers


def is_private_field(key: str, kind: FieldKind) -> bool:
    """Fields the digest never carries (phone numbers, postal address)."""
    return key in PRIVATE_FIELDS or kind in PRIVATE_FIELD_KINDS


def open_dossier_rows(session: Session, config: Config) -> list[dict[str, Any]]:
    """``views.dossier_summary`` of each open dossier, worded for staff, private fields left out."""
    rules = config.rules
    rows = []
    dossiers = session.exec(
        select(Dossier)
        .where(col(Dossier.status).in_(OPEN_STATUSES))
        .order_by(col(Dossier.received_at), col(Dossier.id))
    ).all()
    for dossier in dossiers:
        # Worded (labels, local times) by ``export`` as every spreadsheet is.
        summary = views.dossier_summary(session, dossier)
        summary["fields"] = {
            key: value
            for key, value in (dossier.fields or {}).items()
            if key in rules.fields and not is_private_field(key, rules.fields[key].kind)
        }
        rows.append(summary)
    return rows


def open_dossiers_csv(config: Config, rows: Sequence[dict[str, Any]]) -> bytes:
    """UTF-8 (with BOM), ``;``-separated, one line per open dossier, private fields left out."""
    rules = config.rules
    public = {k: r for k, r in rules.fields.items() if not is_private_field(k, r.kind)}
    return export.to_csv(
        rules.model_copy(update={"fields": public}), rows, zone=service_zone(config)
    )
