"""Who a privacy request is about, who asks, and where that person's data is.

The address is normalised and fingerprinted here; it is found in SQL (a
pre-filter on any text or JSON column) and then confirmed in Python with a
pattern that does not match inside a longer address. ``find_person``
gathers everything an access request exports; ``person_dossiers`` the
dossiers an erasure deletes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from mailbot.privacy.errors import PrivacyError
from mailbot.privacy.rows import select_in_chunks
from storage.models import Dossier, Event, Message, Outbox

_EMAIL = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")


def require_actor(actor: str) -> None:
    """Every request names who made it, for the audit trail."""
    if not actor or not actor.strip():
        raise PrivacyError("an actor is required for the audit trail (e.g. 'staff:nbataillon')")


def normalise_email(email: str) -> str:
    address = (email or "").strip().lower()
    if not _EMAIL.fullmatch(address):
        raise PrivacyError(f"not an e-mail address: {email!r}")
    return address


def email_fingerprint(email: str) -> str:
    """SHA-256 (hex) of the normalised address, as kept in ``person.erased`` tombstones."""
    return hashlib.sha256(normalise_email(email).encode("utf-8")).hexdigest()


def _lower_text(column: Any) -> Any:
    return sa.func.lower(sa.cast(column, sa.Text), type_=sa.Text)


def column_contains(column: Any, address: str) -> Any:
    """SQL: the column's text (JSON included) contains ``address``, case ignored.

    A pre-filter only (``xmarie@x`` contains ``marie@x``): callers check each row.
    """
    return _lower_text(column).contains(address, autoescape=True)


def address_pattern(address: str) -> re.Pattern[str]:
    # Not part of a longer address: no address character just before, none after
    # (a final dot ends a sentence).
    return re.compile(r"(?<![\w.+%-])" + re.escape(address) + r"(?![\w-]|\.\w)", re.IGNORECASE)


def value_mentions(value: Any, pattern: re.Pattern[str]) -> bool:
    """Whether a text, or any key or value of a JSON document, matches ``pattern``."""
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any(
            value_mentions(k, pattern) or value_mentions(v, pattern) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(value_mentions(v, pattern) for v in value)
    return False


def person_dossiers(session: Session, address: str, *, lock: bool = False) -> list[Dossier]:
    """Dossiers whose applicant (sender) or contact_email field is ``address``."""
    query = select(Dossier).where(
        sa.or_(sa.func.lower(Dossier.sender) == address, column_contains(Dossier.fields, address))
    )
    if lock:
        query = query.with_for_update()
    found = []
    for dossier in session.exec(query.order_by(col(Dossier.year), col(Dossier.number))).all():
        contact = str((dossier.fields or {}).get("contact_email") or "").strip().lower()
        if (dossier.sender or "").strip().lower() == address or contact == address:
            found.append(dossier)
    return found


@dataclass
class PersonData:
    """Everything stored about one address, as an access request exports it."""

    address: str
    dossiers: list[Dossier]
    messages: list[Message]
    outbox: list[Outbox]
    events: list[Event]


def _by_id(*row_lists: Sequence[Any]) -> dict[int, Any]:
    """The rows of all lists, each once, keyed by id."""
    return {row.id: row for rows in row_lists for row in rows}


def find_person(session: Session, address: str) -> PersonData:
    """The person's dossiers, the mail they sent or that was filed in them, the
    replies to them, and the audit entries about any of these or naming them."""
    dossiers = person_dossiers(session, address)
    dossier_ids = {d.id for d in dossiers}
    messages = _by_id(
        session.exec(select(Message).where(sa.func.lower(Message.sender) == address)).all(),
        select_in_chunks(
            session,
            lambda ids: select(Message).where(col(Message.dossier_id).in_(ids)),
            dossier_ids,
        ),
    )
    outbox = _by_id(
        session.exec(select(Outbox).where(sa.func.lower(Outbox.to_addr) == address)).all(),
        select_in_chunks(
            session, lambda ids: select(Outbox).where(col(Outbox.dossier_id).in_(ids)), dossier_ids
        ),
    )
    events = _by_id(
        select_in_chunks(
            session, lambda ids: select(Event).where(col(Event.dossier_id).in_(ids)), dossier_ids
        ),
        select_in_chunks(
            session, lambda ids: select(Event).where(col(Event.message_pk).in_(ids)), messages
        ),
    )
    pattern = address_pattern(address)
    for e in session.exec(
        select(Event).where(
            sa.or_(column_contains(Event.details, address), column_contains(Event.actor, address))
        )
    ).all():
        if value_mentions(e.details, pattern) or value_mentions(e.actor, pattern):
            events[e.id] = e  # type: ignore[index]
    return PersonData(
        address=address,
        dossiers=dossiers,
        messages=sorted(messages.values(), key=lambda m: (m.first_seen_at, m.id)),
        outbox=sorted(outbox.values(), key=lambda o: (o.created_at, o.id)),
        events=sorted(events.values(), key=lambda e: (e.at, e.id)),
    )
