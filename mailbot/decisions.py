"""Staff decisions: a dossier's status, setting a quarantined message aside, attaching one.

The CLI (``dossiers set-status``) and the back-office call these same
functions, so a decision is validated and audited one way whichever way
staff take it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mailbot.errors import MailbotError
from storage import repositories as repo
from storage.db import session_scope
from storage.models import DossierStatus, Message, MessageStatus

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


@dataclass(frozen=True)
class StatusDecision:
    reference: str
    old: str
    new: str


def decide_status(
    app: App, *, reference: str, status: str, actor: str, note: str | None = None
) -> StatusDecision:
    """Record a staff decision on a dossier's status, with the note and the actor."""
    if status not in STAFF_STATUSES:
        allowed = ", ".join(s.value for s in STAFF_STATUSES)
        raise MailbotError(f"{status!r} is not one of {allowed}")
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference.strip().upper())
        if dossier is None:
            raise MailbotError(f"no dossier {reference!r}")
        old = dossier.status
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
            raise MailbotError(f"no message with id {message_pk}")
        if message.status not in DISMISSABLE:
            raise MailbotError(
                f"message {message_pk} is {message.status}; only failed or needs_review "
                "messages can be dismissed"
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
            raise MailbotError(f"no message with id {message_pk}")
        if message.status not in ATTACHABLE:
            raise MailbotError(
                f"message {message_pk} is {message.status}; only needs_review or failed "
                "messages can be attached"
            )
        if message.raw_blob is None:
            raise MailbotError(f"message {message_pk}: the raw message was not kept")
        if repo.get_dossier(session=session, reference=reference) is None:
            raise MailbotError(f"no dossier {reference!r}")
        raw = app.blobs.get(message.raw_blob)
        mailboxes = repo.mailboxes_for_message(session=session, message=message)
    analyser = Analyser(app.config)
    analysis = analyser.analyse(raw, mailbox=sorted(mailboxes)[0] if mailboxes else "")
    if analysis.mail is None:
        raise MailbotError(f"message {message_pk} cannot be read: {analysis.error}")
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
