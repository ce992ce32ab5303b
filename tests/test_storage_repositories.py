"""Repository functions: references, dossiers, ledger, cursors, pieces, events, outbox."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, update
from sqlmodel import Session, select

from storage import repositories as repo
from storage.errors import DuplicateError, InvalidValueError, NotFoundError
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Piece,
    PieceRole,
    ReferenceCounter,
    ServerAction,
    Sighting,
)
from tests.fixtures.database import new_message

RECEIVED = datetime(2026, 4, 2, 8, 15, tzinfo=UTC)
SHA_A = hashlib.sha256(b"dossier.pdf").hexdigest()
SHA_B = hashlib.sha256(b"lettre.pdf").hexdigest()


def _create_dossier(session: Session, **overrides: object) -> Dossier:
    values: dict[str, object] = {
        "session": session,
        "year": 2026,
        "sender": "applicant@example.org",
        "sender_name": "Jeanne Applicant",
        "fields": {"project": "Éclairage intelligent"},
        "missing": ["letter"],
        "status": DossierStatus.INCOMPLETE,
        "received_at": RECEIVED,
        "actor": "rule:new_candidature",
    }
    values.update(overrides)
    return repo.create_dossier(**values)  # type: ignore[arg-type]


def _count(session: Session, model: type) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


# -- references -------------------------------------------------------------


def test_references_are_numbered_per_year(session: Session) -> None:
    allocated = [
        repo.next_reference(session=session, year=2026),
        repo.next_reference(session=session, year=2026),
        repo.next_reference(session=session, year=2027),
        repo.next_reference(session=session, year=2026),
    ]
    session.commit()
    assert allocated == [
        ("BSC-2026-0001", 1),
        ("BSC-2026-0002", 2),
        ("BSC-2027-0001", 1),
        ("BSC-2026-0003", 3),
    ]
    counters = session.exec(select(ReferenceCounter).order_by(ReferenceCounter.year)).all()
    assert [(c.year, c.last_number) for c in counters] == [(2026, 3), (2027, 1)]


def test_reference_grows_past_four_digits(session: Session) -> None:
    repo.next_reference(session=session, year=2026)
    session.exec(update(ReferenceCounter).values(last_number=9999))
    assert repo.next_reference(session=session, year=2026) == ("BSC-2026-10000", 10000)
    assert repo.format_reference(2026, 7) == "BSC-2026-0007"


def test_rolled_back_allocation_gives_its_number_back(engine: Engine) -> None:
    with Session(engine) as session:
        assert repo.next_reference(session=session, year=2026)[1] == 1
        session.rollback()
        assert repo.next_reference(session=session, year=2026)[1] == 1
        session.commit()
        assert repo.next_reference(session=session, year=2026)[1] == 2
        session.commit()


@pytest.mark.parametrize("year", [0, -1, 10000, True, "2026"])
def test_reference_year_is_validated(session: Session, year: object) -> None:
    with pytest.raises(InvalidValueError, match="year"):
        repo.next_reference(session=session, year=year)  # type: ignore[arg-type]


# -- dossiers -----------------------------------------------------------------


def test_create_dossier_allocates_a_reference_and_records_an_event(session: Session) -> None:
    first = _create_dossier(session)
    second = _create_dossier(session, status=DossierStatus.COMPLETE, missing=[])
    session.commit()
    assert (first.reference, first.year, first.number) == ("BSC-2026-0001", 2026, 1)
    assert second.reference == "BSC-2026-0002"
    assert first.completed_at is None
    assert second.completed_at is not None
    events = repo.list_events(session=session, dossier=first)
    assert [(e.actor, e.action) for e in events] == [("rule:new_candidature", "dossier.created")]
    assert events[0].details == {
        "reference": "BSC-2026-0001",
        "status": "incomplete",
        "missing": ["letter"],
    }


def test_create_dossier_refuses_an_unknown_status(session: Session) -> None:
    with pytest.raises(InvalidValueError, match="'pending'"):
        _create_dossier(session, status="pending")
    assert _count(session, Dossier) == 0


def test_get_and_list_dossiers(session: Session) -> None:
    old = _create_dossier(session, received_at=RECEIVED - timedelta(days=2))
    new = _create_dossier(session, status=DossierStatus.COMPLETE)
    session.commit()
    assert repo.get_dossier(session=session, reference=" bsc-2026-0002 ") is new
    assert repo.get_dossier(session=session, reference="BSC-2026-0404") is None
    assert repo.list_dossiers(session=session) == [new, old]
    assert repo.list_dossiers(session=session, status="incomplete") == [old]
    with pytest.raises(InvalidValueError):
        repo.list_dossiers(session=session, status="done")


def test_set_dossier_status_records_old_and_new(session: Session) -> None:
    dossier = _create_dossier(session)
    session.commit()
    changed = repo.set_dossier_status(
        session=session,
        reference=dossier.reference,
        status=DossierStatus.COMPLETE,
        actor="staff:alice",
        note="lettre reçue par courrier",
    )
    session.commit()
    assert changed is dossier
    assert dossier.status == "complete"
    assert dossier.status_note == "lettre reçue par courrier"
    assert dossier.completed_at is not None
    completed_at = dossier.completed_at

    repo.set_dossier_status(
        session=session, reference=dossier.reference, status="accepted", actor="staff:bob"
    )
    session.commit()
    assert dossier.status_note is None
    assert dossier.completed_at == completed_at

    changes = [
        (e.actor, e.details)
        for e in repo.list_events(session=session, dossier=dossier)
        if e.action == "dossier.status_changed"
    ]
    assert changes == [
        (
            "staff:alice",
            {"old": "incomplete", "new": "complete", "note": "lettre reçue par courrier"},
        ),
        ("staff:bob", {"old": "complete", "new": "accepted", "note": None}),
    ]


def test_set_dossier_status_validates(session: Session) -> None:
    dossier = _create_dossier(session)
    with pytest.raises(InvalidValueError, match="'closed'"):
        repo.set_dossier_status(
            session=session, reference=dossier.reference, status="closed", actor="staff:alice"
        )
    with pytest.raises(NotFoundError, match="BSC-1999-0001"):
        repo.set_dossier_status(
            session=session, reference="BSC-1999-0001", status="accepted", actor="staff:alice"
        )
    assert dossier.status == "incomplete"
    assert [e.action for e in repo.list_events(session=session)] == ["dossier.created"]


# -- ledger -------------------------------------------------------------------


def test_add_message_is_idempotent_on_the_dedup_key(session: Session) -> None:
    first, created = repo.add_message(session=session, message=new_message(1))
    assert created
    again, created_again = repo.add_message(
        session=session, message=new_message(1, subject="relayed copy")
    )
    session.commit()
    assert not created_again
    assert again is first
    assert repo.find_message(session=session, dedup_key=first.dedup_key) is first
    assert repo.find_message(session=session, dedup_key="mid:nobody@example.org") is None


def test_insert_race_is_absorbed_by_the_savepoint(session: Session) -> None:
    """A row inserted by a concurrent worker after our look-up is detected by the constraint.

    The look-up is made to miss once, as when the other worker commits in
    between; work done earlier in the same transaction must survive.
    """
    earlier = repo.record_event(session=session, actor="system", action="poll.started")
    winner, _ = repo.add_message(session=session, message=new_message(1))
    misses = iter([None])

    def lookup():  # type: ignore[no-untyped-def]
        return next(misses, None) or repo.find_message(session=session, dedup_key=winner.dedup_key)

    assert repo._insert_once(session, new_message(1, subject="loser"), lookup) is winner
    session.commit()
    assert session.get(Event, earlier.id) is not None
    assert [m.subject for m in repo.list_messages(session=session)] == [winner.subject]


def test_list_messages_newest_first_with_status_filter(session: Session) -> None:
    old = new_message(1, status=MessageStatus.IGNORED)
    old.first_seen_at = RECEIVED - timedelta(hours=1)
    new = new_message(2, status=MessageStatus.FILED)
    for message in (old, new):
        repo.add_message(session=session, message=message)
    session.commit()
    assert repo.list_messages(session=session) == [new, old]
    assert repo.list_messages(session=session, status="ignored") == [old]


def test_sightings_are_idempotent_per_server_position(session: Session) -> None:
    message, _ = repo.add_message(session=session, message=new_message())
    position = {"mailbox": "smartcity", "folder": "INBOX", "uidvalidity": 1700000000, "uid": 12}
    first = repo.add_sighting(session=session, message=message, **position)
    again = repo.add_sighting(
        session=session, message=message, server_action=ServerAction.MOVED, **position
    )
    session.commit()
    assert again is first
    assert first.server_action == "pending"  # the first record wins
    assert repo.find_sighting(session=session, **position) is first
    assert repo.find_sighting(session=session, **{**position, "uid": 13}) is None
    assert _count(session, Sighting) == 1


def test_same_position_for_another_message_is_an_error(session: Session) -> None:
    one, _ = repo.add_message(session=session, message=new_message(1))
    other, _ = repo.add_message(session=session, message=new_message(2))
    position = {"mailbox": "smartcity", "folder": "INBOX", "uidvalidity": 5, "uid": 9}
    repo.add_sighting(session=session, message=one, **position)
    with pytest.raises(DuplicateError, match="uid=9"):
        repo.add_sighting(session=session, message=other, **position)


def test_mailboxes_for_dossier(session: Session) -> None:
    dossier = _create_dossier(session)
    elsewhere = _create_dossier(session)
    first, _ = repo.add_message(session=session, message=new_message(1, dossier_id=dossier.id))
    follow_up, _ = repo.add_message(session=session, message=new_message(2, dossier_id=dossier.id))
    unrelated, _ = repo.add_message(
        session=session, message=new_message(3, dossier_id=elsewhere.id)
    )
    for message, mailbox, uid in [
        (first, "smartcity", 1),
        (first, "contact", 1),  # same message delivered to both mailboxes
        (follow_up, "smartcity", 2),
        (unrelated, "archive", 1),
    ]:
        repo.add_sighting(
            session=session,
            message=message,
            mailbox=mailbox,
            folder="INBOX",
            uidvalidity=1,
            uid=uid,
        )
    session.commit()
    assert repo.mailboxes_for_dossier(session=session, dossier=dossier) == ["contact", "smartcity"]
    assert repo.mailboxes_for_dossier(session=session, dossier=elsewhere) == ["archive"]


# -- cursors ------------------------------------------------------------------


def test_cursor_moves_forward_only_unless_told(session: Session) -> None:
    where = {"mailbox": "smartcity", "folder": "INBOX"}
    assert repo.get_cursor(session=session, **where) is None
    cursor = repo.save_cursor(session=session, uidvalidity=4_294_967_295, last_uid=10, **where)
    session.commit()
    assert (cursor.uidvalidity, cursor.last_uid) == (4_294_967_295, 10)

    repo.save_cursor(session=session, uidvalidity=4_294_967_295, last_uid=25, **where)
    repo.save_cursor(session=session, uidvalidity=4_294_967_295, last_uid=20, **where)
    assert repo.get_cursor(session=session, **where).last_uid == 25  # type: ignore[union-attr]

    repo.save_cursor(
        session=session, uidvalidity=4_294_967_295, last_uid=3, allow_rewind=True, **where
    )
    assert repo.get_cursor(session=session, **where).last_uid == 3  # type: ignore[union-attr]

    # A new UIDVALIDITY invalidates every UID: the cursor is replaced.
    repo.save_cursor(session=session, uidvalidity=42, last_uid=1, **where)
    session.commit()
    cursor = repo.get_cursor(session=session, **where)
    assert cursor is not None
    assert (cursor.uidvalidity, cursor.last_uid) == (42, 1)
    assert repo.get_cursor(session=session, mailbox="smartcity", folder="Sent") is None
    with pytest.raises(InvalidValueError):
        repo.save_cursor(session=session, uidvalidity=42, last_uid=-1, **where)


# -- pieces -------------------------------------------------------------------


def test_add_piece_is_idempotent_per_dossier_and_blob(session: Session) -> None:
    dossier = _create_dossier(session)
    other = _create_dossier(session)
    message, _ = repo.add_message(session=session, message=new_message(1))
    resent, _ = repo.add_message(session=session, message=new_message(2))
    piece = {
        "blob_sha256": SHA_A,
        "content_type": "application/pdf",
        "size": 2048,
        "role": PieceRole.DOSSIER,
    }
    first = repo.add_piece(
        session=session,
        dossier=dossier,
        message=message,
        filename="dossier.pdf",
        warnings=["encrypted: no"],
        **piece,
    )
    again = repo.add_piece(
        session=session, dossier=dossier, message=resent, filename="dossier (1).pdf", **piece
    )
    in_other = repo.add_piece(
        session=session, dossier=other, message=resent, filename="dossier.pdf", **piece
    )
    letter = repo.add_piece(
        session=session,
        dossier=dossier,
        message=resent,
        blob_sha256=SHA_B,
        filename="lettre.pdf",
        content_type="application/pdf",
        size=512,
        role="letter",
    )
    session.commit()
    assert again is first
    assert (first.filename, first.message_pk, first.warnings) == (
        "dossier.pdf",
        message.id,
        ["encrypted: no"],
    )
    assert in_other is not first
    assert repo.list_pieces(session=session, dossier=dossier) == [first, letter]
    assert _count(session, Piece) == 3


def test_add_piece_validates_role_and_digest(session: Session) -> None:
    dossier = _create_dossier(session)
    message, _ = repo.add_message(session=session, message=new_message())
    common = {
        "session": session,
        "dossier": dossier,
        "message": message,
        "filename": "x.pdf",
        "content_type": "application/pdf",
        "size": 1,
    }
    with pytest.raises(InvalidValueError, match="'cover'"):
        repo.add_piece(blob_sha256=SHA_A, role="cover", **common)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="digest"):
        repo.add_piece(blob_sha256="../../etc/passwd", role="letter", **common)  # type: ignore[arg-type]
    assert _count(session, Piece) == 0


# -- events -------------------------------------------------------------------


def test_record_event_links_pending_rows(session: Session) -> None:
    message = new_message()  # not flushed yet: record_event must give it an id
    event = repo.record_event(
        session=session,
        actor="rule:auto_reply",
        action="message.ignored",
        message=message,
        details={"reason": "Auto-Submitted: auto-replied"},
    )
    session.commit()
    assert event.id is not None
    assert message.id is not None
    assert event.message_pk == message.id
    assert event.at.tzinfo is not None
    assert repo.list_events(session=session, message=message) == [event]
    with pytest.raises(InvalidValueError):
        repo.record_event(session=session, actor="", action="x")


# -- outbox -------------------------------------------------------------------


def _enqueue(session: Session, dedup_key: str, message_id: str, **overrides: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "session": session,
        "dedup_key": dedup_key,
        "kind": OutboxKind.ACKNOWLEDGEMENT,
        "mailbox": "smartcity",
        "from_addr": "smartcity@bethune.fr",
        "to_addr": "applicant@example.org",
        "subject": "Votre candidature BSC-2026-0001",
        "message_id": message_id,
        "raw": b"From: smartcity@bethune.fr\r\n\r\nBonjour\r\n",
    }
    values.update(overrides)
    return repo.enqueue_outgoing(**values)  # type: ignore[arg-type]


def test_enqueue_outgoing_once_per_dedup_key(session: Session) -> None:
    dossier = _create_dossier(session)
    trigger, _ = repo.add_message(session=session, message=new_message())
    key = f"acknowledgement:{dossier.id}:{trigger.id}"
    queued = _enqueue(session, key, "<ack-1@bethune.fr>", dossier=dossier, trigger_message=trigger)
    session.commit()
    assert queued is not None
    assert (queued.status, queued.dossier_id, queued.trigger_message_pk) == (
        "queued",
        dossier.id,
        trigger.id,
    )
    assert queued.next_attempt_at == queued.created_at  # due now

    assert _enqueue(session, key, "<ack-2@bethune.fr>", subject="another rendering") is None
    session.commit()  # the transaction is still usable
    rows = session.exec(select(Outbox)).all()
    assert [(r.dedup_key, r.message_id) for r in rows] == [(key, "<ack-1@bethune.fr>")]
    assert repo.find_outgoing(session=session, dedup_key=key) is queued


def test_enqueue_outgoing_refuses_a_reused_message_id(session: Session) -> None:
    _enqueue(session, "acknowledgement:1:1", "<same@bethune.fr>")
    with pytest.raises(DuplicateError, match=re.escape("<same@bethune.fr>")):
        _enqueue(session, "missing_pieces:1:1", "<same@bethune.fr>", kind="missing_pieces")
    session.commit()
    assert _count(session, Outbox) == 1


def test_enqueue_outgoing_suppressed_and_validation(session: Session) -> None:
    suppressed = _enqueue(
        session,
        "digest:smartcity:2026-04-02",
        "<digest-1@bethune.fr>",
        kind=OutboxKind.DIGEST,
        status=OutboxStatus.SUPPRESSED,
        suppressed_reason="dry run",
    )
    assert suppressed is not None
    assert (suppressed.status, suppressed.next_attempt_at) == ("suppressed", None)
    capped = _enqueue(
        session,
        "acknowledgement:1:2",
        "<ack-capped@bethune.fr>",
        status=OutboxStatus.SUPPRESSED,
        suppressed_reason="sender_daily_cap",
        suppressed_details={"count": 3, "cap": 3},
    )
    assert capped is not None
    session.commit()
    session.expire_all()
    stored = repo.find_outgoing(session=session, dedup_key="acknowledgement:1:2")
    assert stored is not None
    assert (stored.suppressed_reason, stored.suppressed_details) == (
        "sender_daily_cap",
        {"count": 3, "cap": 3},
    )
    assert stored.failure_reason is None
    with pytest.raises(InvalidValueError, match="reason"):
        _enqueue(session, "digest:x", "<d2@bethune.fr>", status="suppressed")
    with pytest.raises(InvalidValueError, match="'sent'"):
        _enqueue(session, "digest:y", "<d3@bethune.fr>", status="sent")
    with pytest.raises(InvalidValueError, match="'reminder'"):
        _enqueue(session, "reminder:1", "<d4@bethune.fr>", kind="reminder")
    assert _count(session, Outbox) == 2


def test_a_message_to_review_keeps_its_reason_code_and_detail(session: Session) -> None:
    message, _ = repo.add_message(
        session=session,
        message=new_message(
            status=MessageStatus.NEEDS_REVIEW, reason="unknown_dossier", error="BSC-2020-0999"
        ),
    )
    session.commit()
    session.expire_all()
    stored = session.get(Message, message.id)
    assert stored is not None
    assert (stored.status, stored.reason, stored.error) == (
        "needs_review",
        "unknown_dossier",
        "BSC-2020-0999",
    )
