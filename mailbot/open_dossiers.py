"""The database's answer to the chain's ``OpenDossiers`` question.

``StoredOpenDossiers`` reads a sender's open dossiers through a session: the
worker gives it its filing transaction (so that the second of two messages
in one batch sees the dossier the first opened), ``mailbot try`` a session
on a read-only connection. It only reads.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from parsers.classify import OpenDossier
from storage.models import Dossier, DossierStatus

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
