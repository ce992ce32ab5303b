"""``mailbot messages retry``: run a quarantined message through the pipeline again."""

from __future__ import annotations

from mailbot.app import App
from mailbot.decisions import no_message, raw_not_kept
from mailbot.errors import RefusedError
from mailbot.filing import Filed, refile
from mailbot.pipeline import Analyser
from parsers.reasons import Refusal
from storage.db import session_scope
from storage.models import Message, MessageStatus

RETRYABLE = (MessageStatus.FAILED, MessageStatus.NEEDS_REVIEW)


def retry_message(app: App, message_pk: int, *, actor: str) -> Filed:
    """Re-analyse a failed or needs_review message from its stored raw bytes."""
    with session_scope(app.engine) as session:
        message = session.get(Message, message_pk)
        if message is None:
            raise no_message(message_pk)
        if message.status not in RETRYABLE:
            raise RefusedError(
                Refusal.NOT_RETRYABLE,
                f"message {message_pk} is {message.status}; only failed or needs_review "
                "messages can be retried",
                message=message_pk,
                status=message.status,
            )
        if message.raw_blob is None:
            raise raw_not_kept(message_pk)
        raw = app.blobs.get(message.raw_blob)
        mailboxes = sorted({s for s in _mailboxes(session, message)})
    analyser = Analyser(app.config)
    analysis = analyser.analyse(raw, mailbox=mailboxes[0] if mailboxes else "")
    with session_scope(app.engine) as session:
        message = session.get(Message, message_pk)
        assert message is not None
        return refile(
            session=session,
            blobs=app.blobs,
            config=app.config,
            message=message,
            analysis=analysis,
            actor=actor,
            analyser=analyser,
        )


def _mailboxes(session, message: Message) -> list[str]:
    from storage import repositories as repo

    return repo.mailboxes_for_message(session=session, message=message)
