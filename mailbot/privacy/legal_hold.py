"""Legal hold: the flag that makes purge and erasure leave a dossier (and its blobs) alone."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import select

from mailbot.app import App
from mailbot.privacy.errors import PrivacyRefusedError
from mailbot.privacy.person import require_actor
from mailbot.privacy.reports import LegalHoldReport
from mailbot.privacy.rows import keep_updated_at
from parsers.reasons import Refusal
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Dossier


def set_legal_hold(
    app: App, reference: str, hold: bool, *, actor: str, note: str | None = None
) -> LegalHoldReport:
    """Set or clear a dossier's legal hold, with an audit entry.

    The dossier's ``updated_at`` is left alone: the hold suspends retention,
    it does not restart it.
    """
    require_actor(actor)
    wanted = (reference or "").strip().upper()
    with session_scope(app.engine) as session:
        dossier = session.exec(
            select(Dossier).where(Dossier.reference == wanted).with_for_update()
        ).first()
        if dossier is None:
            raise PrivacyRefusedError(
                Refusal.NO_DOSSIER, f"no dossier {reference!r}", reference=wanted
            )
        previous = bool(dossier.legal_hold)
        table = Dossier.__table__  # type: ignore[attr-defined]
        session.exec(
            keep_updated_at(table, sa.update(table).where(table.c.id == dossier.id)).values(
                legal_hold=bool(hold)
            )
        )
        repo.record_event(
            session=session,
            actor=actor,
            action="dossier.legal_hold_set" if hold else "dossier.legal_hold_cleared",
            dossier=dossier,
            details={"reference": dossier.reference, "previous": previous, "note": note},
        )
        return LegalHoldReport(
            reference=dossier.reference, hold=bool(hold), changed=previous != hold
        )
