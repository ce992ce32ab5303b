"""The database's answer to the chain's ``OpenDossiers`` question.

``StoredOpenDossiers`` reads a sender's open dossiers through a session: the
worker gives it its filing transaction (so that the second of two messages
in one batch sees the dossier the first opened), ``mailbot try`` a session
on a read-only connection. It only reads.

``correspondence`` answers who may speak for a dossier: its sender, the
recipients of our replies for it and the senders of the messages attached to
it, with the Message-IDs of our replies (``parsers.classify.NotTheApplicant``).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from parsers.addresses import normalise_address
from parsers.classify import Correspondence, OpenDossier, normalise_msgid
from storage import repositories as repo
from storage.models import Dossier, DossierStatus, Message, Outbox, OutboxKind, OutboxStatus

# Dossiers still waiting for pieces: a later message may complete them.
OPEN_STATUSES = (DossierStatus.INCOMPLETE, DossierStatus.NEEDS_REVIEW)


class StoredOpenDossiers:
    """``parsers.classify.OpenDossiers`` over the ``dossiers`` table."""

    def __init__(self, session: Session, *, checked: str = "") -> None:
        self.session = session
        # What the trace says about where the rules looked ("" for the worker).
        self.checked = checked

    def of_sender(self, sender: str) -> tuple[OpenDossier, ...]:
        rows = self.session.exec(
            select(Dossier)
            .where(Dossier.sender == sender, col(Dossier.status).in_(OPEN_STATUSES))
            .order_by(col(Dossier.received_at).desc(), col(Dossier.id).desc())
        ).all()
        return tuple(
            OpenDossier(
                reference=row.reference, title=str((row.fields or {}).get("intitule") or "")
            )
            for row in rows
        )

    def correspondence(self, reference: str) -> Correspondence | None:
        dossier = repo.get_dossier(session=self.session, reference=reference)
        if dossier is None:
            return None
        addresses = {dossier.sender}
        sent: set[str] = set()
        replies = self.session.exec(
            select(Outbox.to_addr, Outbox.message_id).where(
                Outbox.dossier_id == dossier.id,
                Outbox.kind != OutboxKind.DIGEST,
                # A reply held back never reached anyone: it proves nothing.
                Outbox.status != OutboxStatus.SUPPRESSED,
            )
        ).all()
        for to_addr, message_id in replies:
            addresses.add(to_addr)
            sent.add(normalise_msgid(message_id))
        senders = self.session.exec(
            select(Message.sender).where(Message.dossier_id == dossier.id)
        ).all()
        addresses.update(senders)
        normalised = {normalise_address(a) for a in addresses}
        return Correspondence(
            reference=dossier.reference,
            addresses=frozenset(a for a in normalised if a),
            sent_message_ids=frozenset(m for m in sent if m),
        )
