"""The dossier list of the back-office: filters, search, sort, counts, one page.

One query for the page of dossiers, one for the counts per status and one
for the mailboxes of the dossiers shown, whatever the number of dossiers.
Field values live in a JSON column: ``fields["intitule"].as_string()`` is
``json_extract`` on SQLite and ``->>`` on PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from storage.models import Dossier, DossierStatus, Message, Sighting

PAGE_SIZE = 50
SORTS: dict[str, tuple[Any, ...]] = {
    "recus": (col(Dossier.received_at).desc(), col(Dossier.id).desc()),
    "anciens": (col(Dossier.received_at).asc(), col(Dossier.id).asc()),
    "modifies": (col(Dossier.updated_at).desc(), col(Dossier.id).desc()),
    "reference": (col(Dossier.year).asc(), col(Dossier.number).asc()),
}


@dataclass(frozen=True)
class DossierFilter:
    status: str | None = None
    thematique: str | None = None
    mailbox: str | None = None
    search: str | None = None
    sort: str = "recus"
    page: int = 1


@dataclass
class DossierPage:
    rows: list[dict[str, Any]]
    total: int
    counts: dict[str, int]
    pages: int
    page: int
    all_count: int = 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(wanted: DossierFilter, *, with_status: bool) -> list[Any]:
    fields = col(Dossier.fields)
    conditions: list[Any] = []
    if with_status and wanted.status:
        conditions.append(Dossier.status == wanted.status)
    if wanted.thematique:
        conditions.append(fields["thematique"].as_string() == wanted.thematique)
    if wanted.mailbox:
        seen_in = (
            select(Message.dossier_id)
            .join(Sighting, col(Sighting.message_pk) == col(Message.id))
            .where(Sighting.mailbox == wanted.mailbox, col(Message.dossier_id).is_not(None))
        )
        conditions.append(col(Dossier.id).in_(seen_in))
    if wanted.search:
        pattern = f"%{_escape_like(wanted.search.strip().lower())}%"
        searched = (
            col(Dossier.reference),
            fields["intitule"].as_string(),
            fields["porteur_structure"].as_string(),
            col(Dossier.sender),
            col(Dossier.sender_name),
        )
        conditions.append(
            sa.or_(*(sa.func.lower(column).like(pattern, escape="\\") for column in searched))
        )
    return conditions


def find_dossiers(session: Session, wanted: DossierFilter) -> DossierPage:
    """One page of the dossiers matching ``wanted``, with the counts per status."""
    conditions = _conditions(wanted, with_status=True)
    total = session.exec(select(sa.func.count()).select_from(Dossier).where(*conditions)).one()
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, wanted.page), pages)
    query = (
        select(Dossier)
        .where(*conditions)
        .order_by(*SORTS.get(wanted.sort, SORTS["recus"]))
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    dossiers = list(session.exec(query).all())
    by_status = session.exec(
        select(Dossier.status, sa.func.count())
        .where(*_conditions(wanted, with_status=False))
        .group_by(Dossier.status)
    ).all()
    counts = {status.value: 0 for status in DossierStatus}
    counts.update(dict(by_status))
    mailboxes = _mailboxes(session, [d.id for d in dossiers if d.id is not None])
    rows = [
        {
            "reference": d.reference,
            "status": d.status,
            "intitule": (d.fields or {}).get("intitule"),
            "porteur_structure": (d.fields or {}).get("porteur_structure"),
            "thematique": (d.fields or {}).get("thematique"),
            "sender": d.sender,
            "received_at": d.received_at,
            "updated_at": d.updated_at,
            "missing": list(d.missing or []),
            "legal_hold": d.legal_hold,
            "mailboxes": mailboxes.get(d.id or 0, []),
        }
        for d in dossiers
    ]
    return DossierPage(
        rows=rows,
        total=total,
        counts=counts,
        pages=pages,
        page=page,
        all_count=sum(counts.values()),
    )


def _mailboxes(session: Session, dossier_ids: list[int]) -> dict[int, list[str]]:
    if not dossier_ids:
        return {}
    pairs = session.exec(
        select(Message.dossier_id, Sighting.mailbox)
        .join(Sighting, col(Sighting.message_pk) == col(Message.id))
        .where(col(Message.dossier_id).in_(dossier_ids))
        .distinct()
    ).all()
    found: dict[int, set[str]] = defaultdict(set)
    for dossier_id, mailbox in pairs:
        found[dossier_id].add(mailbox)
    return {k: sorted(v) for k, v in found.items()}
