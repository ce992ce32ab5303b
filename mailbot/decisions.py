"""Staff decisions: a dossier's status, a corrected field, a message set aside or attached.

The CLI (``dossiers set-status``, ``dossiers set-field``) and the back-office
call these same functions, so a decision is validated and audited one way
whichever way staff take it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from mailbot.config import FieldKind, Rules
from mailbot.dossier_update import open_doubts, set_service_status
from mailbot.errors import RefusedError
from mailbot.replies import plan_reply
from parsers.checks import describe_missing, missing_pieces
from parsers.mail import parse_message
from parsers.normalize import normalize_value, words
from parsers.reasons import Refusal
from parsers.types import ParsedMail
from storage import repositories as repo
from storage.db import session_scope
from storage.errors import StorageError
from storage.models import (
    Dossier,
    DossierStatus,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    PieceRole,
    utcnow,
)

if TYPE_CHECKING:
    from mailbot.app import App
    from mailbot.filing import Filed

# Statuses staff may decide (the others are set by the service).
STAFF_STATUSES = (
    DossierStatus.COMPLETE,
    DossierStatus.ACCEPTED,
    DossierStatus.REJECTED,
    DossierStatus.WITHDRAWN,
)
# Messages staff may set aside without filing them.
DISMISSABLE = (MessageStatus.FAILED, MessageStatus.NEEDS_REVIEW)


def _no_dossier(reference: str) -> RefusedError:
    return RefusedError(
        Refusal.NO_DOSSIER, f"no dossier {reference!r}", reference=reference.strip().upper()
    )


def no_message(message_pk: int) -> RefusedError:
    return RefusedError(Refusal.NO_MESSAGE, f"no message with id {message_pk}", message=message_pk)


def raw_not_kept(message_pk: int) -> RefusedError:
    return RefusedError(
        Refusal.RAW_NOT_KEPT,
        f"message {message_pk}: the raw message was not kept",
        message=message_pk,
    )


@dataclass(frozen=True)
class StatusDecision:
    reference: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


def decide_status(
    app: App, *, reference: str, status: str, actor: str, note: str | None = None
) -> StatusDecision:
    """Record a staff decision on a dossier's status, with the note and the actor."""
    if status not in STAFF_STATUSES:
        allowed = ", ".join(s.value for s in STAFF_STATUSES)
        raise RefusedError(
            Refusal.NOT_A_DECISION,
            f"{status!r} is not one of {allowed}",
            status=status,
            allowed=[s.value for s in STAFF_STATUSES],
        )
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference.strip().upper())
        if dossier is None:
            raise _no_dossier(reference)
        old = dossier.status
        if old == status:
            # Not a change: nothing recorded, nothing for the digest to report.
            return StatusDecision(reference=dossier.reference, old=old, new=status)
        repo.set_dossier_status(
            session=session, reference=dossier.reference, status=status, actor=actor, note=note
        )
        return StatusDecision(reference=dossier.reference, old=old, new=status)


def dismiss_message(app: App, *, message_pk: int, actor: str, note: str | None = None) -> str:
    """Set a failed or needs_review message aside (status ``ignored``), audited.

    Its content stays until the quarantine retention (``needs_review_days``)
    removes it, like any message kept without a dossier. Returns the
    previous status.
    """
    with session_scope(app.engine) as session:
        message = session.get(Message, message_pk)
        if message is None:
            raise no_message(message_pk)
        if message.status not in DISMISSABLE:
            raise RefusedError(
                Refusal.NOT_DISMISSABLE,
                f"message {message_pk} is {message.status}; only failed or needs_review "
                "messages can be dismissed",
                message=message_pk,
                status=message.status,
            )
        old = message.status
        message.status = MessageStatus.IGNORED
        session.add(message)
        repo.record_event(
            session=session,
            actor=actor,
            action="message.dismissed",
            message=message,
            details={"previous": old, "note": note},
        )
        return old


# --------------------------------------------------------------------------
# Correcting a field


@dataclass(frozen=True)
class FieldCorrection:
    """What ``set_field`` did: the value before and after, and the dossier's state."""

    reference: str
    key: str
    old: Any
    new: Any
    status: str
    missing: tuple[str, ...]
    completed: bool
    reply_queued: bool

    @property
    def changed(self) -> bool:
        return self.old != self.new


def normalise_field(rules: Rules, *, key: str, value: str) -> Any:
    """``value`` as the parser would store field ``key``; MailbotError when it cannot be.

    Choices (thématique, criteria, category, nature) are accepted by key or by
    printed label, then by whatever the parser recognises; an empty value
    clears the field.
    """
    rule = rules.fields.get(key)
    if rule is None:
        raise RefusedError(
            Refusal.UNKNOWN_FIELD,
            f"unknown field {key!r}; valid fields: {', '.join(rules.fields)}",
            field=key,
            fields=[r.label for r in rules.fields.values()],
        )
    text = value.strip()
    if not text:
        return None
    choices = _CHOICES_OF_KIND.get(rule.kind)
    if choices is not None:
        table = choices(rules)
        if rule.kind == FieldKind.CRITERIA:
            parts = [p for p in re.split(r"[,;\n]+", text) if p.strip()]
            keys = [_choice_key(table, part) for part in parts]
            if all(keys):
                return list(dict.fromkeys(k for k in keys if k))
        else:
            found = _choice_key(table, text)
            if found:
                return found
    normalised = normalize_value(rule.kind, text, rules)
    if not normalised.ok:
        reason = normalised.reason or "not recognised"
        hint = f"; valid choices: {', '.join(choices(rules))}" if choices is not None else ""
        raise RefusedError(
            Refusal.INVALID_VALUE,
            f"{value!r} is not a valid {rule.label!r} ({reason}){hint}",
            value=value.strip(),
            field=rule.label,
            kind=str(rule.kind),
            choices=[c.label for c in choices(rules).values()] if choices is not None else [],
        )
    return normalised.value


_CHOICES_OF_KIND: dict[FieldKind, Callable[[Rules], Mapping[str, Any]]] = {
    FieldKind.THEMATIQUE: lambda rules: rules.thematiques,
    FieldKind.CRITERIA: lambda rules: rules.criteria,
    FieldKind.CATEGORY: lambda rules: rules.categories,
    FieldKind.NATURE: lambda rules: rules.natures,
}


def _choice_key(choices: Mapping[str, Any], text: str) -> str | None:
    """The key of the choice named by its key or its printed label (case and accents aside)."""
    wanted = words(text)
    for key, choice in choices.items():
        if wanted in (words(key), words(choice.label)):
            return key
    return None


def set_field(
    app: App, *, reference: str, key: str, value: str, actor: str, note: str | None = None
) -> FieldCorrection:
    """Correct one field of a dossier, audited, and re-evaluate what it lacks.

    The value is validated and normalised as the parser does. A dossier the
    service manages (incomplete or complete) takes the status its pieces and
    fields call for; when it becomes complete the applicant gets the
    "completed" reply, once, planned as filing plans it. A dossier decided
    by staff (accepted, …) keeps its status.

    A dossier waiting for staff because required fields were read with
    doubt: correcting such a field (or confirming it: the same value given
    again) settles its doubt. Once no doubt is left, the dossier leaves
    review: complete, the applicant gets the "completed" reply (once);
    still incomplete, the missing-pieces notice, which is now true (the
    applicant so far only had the neutral acknowledgement). A dossier in
    review for another reason keeps its status.
    """
    config = app.config
    new_value = normalise_field(config.rules, key=key, value=value)
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference.strip().upper())
        if dossier is None:
            raise _no_dossier(reference)
        fields = dict(dossier.fields or {})
        evidence = dict(dossier.evidence or {})
        old_value = fields.get(key)
        doubts_before = open_doubts(fields=fields, evidence=evidence, rules=config.rules)
        if old_value == new_value and key not in doubts_before:
            return FieldCorrection(
                reference=dossier.reference,
                key=key,
                old=old_value,
                new=new_value,
                status=dossier.status,
                missing=tuple(dossier.missing or ()),
                completed=False,
                reply_queued=False,
            )
        if new_value is None:
            fields.pop(key, None)
        else:
            fields[key] = new_value
        evidence[key] = {"source": "correction", "by": actor}
        if key in doubts_before:
            # What was doubted stays visible in the history, not in the dossier.
            evidence[key]["doubted"] = dossier.evidence[key]
        now = utcnow()
        roles = {piece.role for piece in repo.list_pieces(session=session, dossier=dossier)}
        missing = list(
            missing_pieces(
                fields=fields,
                dossier_present=PieceRole.DOSSIER in roles,
                letter_present=PieceRole.LETTER in roles or "_letter" in evidence,
                rules=config.rules,
            )
        )
        old_status = dossier.status
        dossier.fields = fields
        dossier.evidence = evidence
        dossier.missing = missing
        dossier.updated_at = now
        repo.record_event(
            session=session,
            actor=actor,
            action="dossier.field_corrected",
            dossier=dossier,
            details={
                "field": key,
                "old": old_value,
                "new": new_value,
                "note": note,
                "doubt_settled": key in doubts_before,
            },
        )
        doubts_after = open_doubts(fields=fields, evidence=evidence, rules=config.rules)
        settled = (
            old_status == DossierStatus.NEEDS_REVIEW and bool(doubts_before) and not doubts_after
        )
        completed = False
        kind = None
        if old_status in _MANAGED_STATUSES or settled:
            new_status = DossierStatus.INCOMPLETE if missing else DossierStatus.COMPLETE
            if new_status != old_status:
                completed = set_service_status(
                    session=session, dossier=dossier, status=new_status, actor=actor, now=now
                )
            if completed:
                kind = OutboxKind.COMPLETED
            elif settled:
                kind = OutboxKind.MISSING_PIECES
        session.add(dossier)
        session.flush()
        reply = _plan_reply(app, session=session, dossier=dossier, kind=kind) if kind else None
        return FieldCorrection(
            reference=dossier.reference,
            key=key,
            old=old_value,
            new=new_value,
            status=dossier.status,
            missing=tuple(missing),
            completed=completed,
            reply_queued=reply is not None and reply.status == OutboxStatus.QUEUED,
        )


# Statuses the service sets from the pieces; a correction may move a dossier between them.
_MANAGED_STATUSES = (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE)


def _plan_reply(app: App, *, session: Session, dossier: Dossier, kind: str) -> Outbox | None:
    """Queue a reply (``completed``, ``missing_pieces``) as filing does, to the latest message."""
    message = session.exec(
        select(Message)
        .where(Message.dossier_id == dossier.id)
        .order_by(col(Message.raw_blob).is_(None), col(Message.id).desc())
    ).first()
    if message is None:
        return None
    mail = _mail_of(app, message, dossier)
    mailboxes = repo.mailboxes_for_message(session=session, message=message)
    return plan_reply(
        session=session,
        config=app.config,
        mailbox_name=mailboxes[0] if mailboxes else "",
        mail=mail,
        message=message,
        dossier=dossier,
        kind=kind,
        missing_text=describe_missing(list(dossier.missing or []), rules=app.config.rules),
    )


def _mail_of(app: App, message: Message, dossier: Dossier) -> ParsedMail:
    """The message as parsed from its kept raw bytes, else its ledger headers."""
    if message.raw_blob is not None:
        try:
            raw = app.blobs.get(message.raw_blob)
        except (OSError, KeyError, StorageError):
            raw = None
        if raw is not None:
            return parse_message(raw, limits=app.config.settings.limits)
    sender = dossier.sender or message.sender or ""
    return ParsedMail(
        sha256=message.sha256 or "",
        size=0,
        message_id=message.message_id,
        subject=message.subject or "",
        sender=sender,
        sender_name=dossier.sender_name or "",
        from_address=message.sender or sender,
    )


# Messages staff may attach to a dossier after checking them.
ATTACHABLE = (MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED)


def attach_message(
    app: App, *, message_pk: int, reference: str, actor: str, note: str | None = None
) -> Filed:
    """Attach a message waiting for review to a dossier, as staff decided, audited.

    For the follow-ups the service would not join by itself (sent by someone
    who is not the applicant, ``ReviewReason.NOT_THE_APPLICANT``): the
    message's pieces and fields join the dossier as a follow-up's would
    (fields already read are kept), completeness is evaluated again, and
    nobody is answered.
    """
    from mailbot.filing import attach_to_dossier
    from mailbot.pipeline import Analyser

    with session_scope(app.engine) as session:
        message = session.get(Message, message_pk)
        if message is None:
            raise no_message(message_pk)
        if message.status not in ATTACHABLE:
            raise RefusedError(
                Refusal.NOT_ATTACHABLE,
                f"message {message_pk} is {message.status}; only needs_review or failed "
                "messages can be attached",
                message=message_pk,
                status=message.status,
            )
        if message.raw_blob is None:
            raise raw_not_kept(message_pk)
        if repo.get_dossier(session=session, reference=reference) is None:
            raise _no_dossier(reference)
        raw = app.blobs.get(message.raw_blob)
        mailboxes = repo.mailboxes_for_message(session=session, message=message)
    analyser = Analyser(app.config)
    analysis = analyser.analyse(raw, mailbox=sorted(mailboxes)[0] if mailboxes else "")
    if analysis.mail is None:
        raise RefusedError(
            Refusal.MESSAGE_UNREADABLE,
            f"message {message_pk} cannot be read: {analysis.error}",
            message=message_pk,
        )
    if analysis.reading is None:
        documents = analyser.read_documents(analysis.mail.attachments)
        analysis = replace(analysis, reading=analyser.read(analysis.mail, documents))
    with session_scope(app.engine) as session:
        message = session.get(Message, message_pk)
        dossier = repo.get_dossier(session=session, reference=reference)
        assert message is not None and dossier is not None
        return attach_to_dossier(
            session=session,
            blobs=app.blobs,
            config=app.config,
            message=message,
            analysis=analysis,
            dossier=dossier,
            actor=actor,
            note=note,
        )
