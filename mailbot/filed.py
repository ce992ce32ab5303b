"""What filing a message is handed and gives back.

``Position`` (where a message sits on the server), ``Filed`` (what filing
says of a message), ``Filing`` (one message being filed, as every verdict's
handler and the dossier update are given it) and the dossier statuses the
service may change by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from mailbot.config import Config
from mailbot.pipeline import Analysis
from parsers.classify import Classification
from parsers.types import ParsedMail
from storage.blobs import BlobStore
from storage.models import (
    DossierStatus,
    Message,
)

# Dossier statuses the service may change by itself; staff decisions stay.
SERVICE_STATUSES = (DossierStatus.INCOMPLETE, DossierStatus.COMPLETE, DossierStatus.NEEDS_REVIEW)


@dataclass(frozen=True)
class Position:
    """Where a message sits on the server."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Filed:
    message_pk: int
    status: str
    verdict: str | None
    duplicate: bool
    dossier_reference: str | None = None
    dossier_created: bool = False
    dossier_completed: bool = False
    content_kept: bool = False


@dataclass(frozen=True, kw_only=True)
class Filing:
    """One message being filed: what every verdict's handler is given."""

    session: Session
    blobs: BlobStore
    config: Config
    analysis: Analysis
    message: Message
    # What filing says so far (ledger row written, status known).
    outcome: Filed
    now: datetime

    @property
    def mail(self) -> ParsedMail:
        assert self.analysis.mail is not None
        return self.analysis.mail

    @property
    def classification(self) -> Classification:
        assert self.analysis.classification is not None
        return self.analysis.classification

    @property
    def rule_actor(self) -> str:
        """The audit actor of what the chain decided: the rule that decided."""
        return f"rule:{self.classification.decided_by}"
