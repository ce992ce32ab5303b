"""Who a privacy request is about, who asks, and where that person's data is.

The address is normalised and fingerprinted here; it is found in SQL (a
pre-filter on any text or JSON column) and then confirmed in Python with a
pattern that does not match inside a longer address. ``find_person``
gathers everything an access request exports; ``person_dossiers`` the
dossiers an erasure deletes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def person_dossiers(
    session: Session, address: str, *, lock: bool = False, include_form: bool = False
) -> list[Dossier]:
    """Dossiers whose applicant (the sender of the mail we exchanged) is ``address``.

    With ``include_form``, also those where ``address`` was only typed in
    the form's ``contact_email`` field: anyone can type any address in a
    form, so staff must have confirmed those (see ``form_only_dossiers``).
    """
    query = select(Dossier).where(
        sa.or_(sa.func.lower(Dossier.sender) == address, column_contains(Dossier.fields, address))
    )
    if lock:
        query = query.with_for_update()
    found = []
    for dossier in session.exec(query.order_by(col(Dossier.year), col(Dossier.number))).all():
        if _is_sender(dossier, address) or (include_form and _is_form_contact(dossier, address)):
            found.append(dossier)
    return found


def form_only_dossiers(session: Session, address: str) -> list[Dossier]:
    """Dossiers naming ``address`` only in their form's contact field, not as sender.

    Listed for staff to check; a request acts on them only when staff
    confirm (``include_form_addresses``).
    """
    query = select(Dossier).where(column_contains(Dossier.fields, address))
    return [
        d
        for d in session.exec(query.order_by(col(Dossier.year), col(Dossier.number))).all()
        if _is_form_contact(d, address) and not _is_sender(d, address)
    ]


def _is_sender(dossier: Dossier, address: str) -> bool:
    return (dossier.sender or "").strip().lower() == address


def _is_form_contact(dossier: Dossier, address: str) -> bool:
    return str((dossier.fields or {}).get("contact_email") or "").strip().lower() == address


@dataclass
class PersonData:
    """Everything stored about one address, as an access request exports it."""

    address: str
    dossiers: list[Dossier]
    messages: list[Message]
    outbox: list[Outbox]
    events: list[Event]
    # Dossiers naming the address only in their form, not included.
    form_only: list[Dossier] = field(default_factory=list)


def _by_id(*row_lists: Sequence[Any]) -> dict[int, Any]:
    """The rows of all lists, each once, keyed by id."""
    return {row.id: row for rows in row_lists for row in rows}


def find_person(session: Session, address: str, *, include_form: bool = False) -> PersonData:
    """The person's dossiers, the mail they sent or that was filed in them, the
    replies to them, and the audit entries about any of these or naming them.

    ``include_form``: see ``person_dossiers``; ``form_only`` lists the
    dossiers left out without it."""
    dossiers = person_dossiers(session, address, include_form=include_form)
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
        form_only=[] if include_form else form_only_dossiers(session, address),
    )
