"""Tables: dedup keys, database-enforced uniqueness, aware timestamps, column types."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, select

from storage.errors import InvalidValueError
from storage.models import (
    SUBJECT_MAX_LENGTH,
    Dossier,
    DossierStatus,
    MailboxCursor,
    Message,
    Outbox,
    OutboxKind,
    Piece,
    PieceRole,
    Sighting,
    dedup_key_for,
    normalise_message_id,
)
from tests.fixtures.database import new_message

SHA = hashlib.sha256(b"raw message").hexdigest()
PARIS = ZoneInfo("Europe/Paris")


def _dossier(**overrides: object) -> Dossier:
    values: dict[str, object] = {
        "reference": "BSC-2026-0001",
        "year": 2026,
        "number": 1,
        "status": DossierStatus.INCOMPLETE,
        "sender": "applicant@example.org",
        "received_at": datetime(2026, 3, 1, 9, 30, tzinfo=PARIS),
    }
    values.update(overrides)
    return Dossier(**values)


# -- dedup keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "<ABC.123@Mail.Example.ORG>",
        "  <abc.123@mail.example.org>  ",
        "< abc.123@mail.example.org >",
        "<abc.123@mail.example.org> (added by relay)",
        "abc.123@mail.example.org",
        "<abc.123@mail.\r\n example.org>",
    ],
)
def test_dedup_key_normalises_the_message_id(header: str) -> None:
    assert dedup_key_for(header, SHA) == "mid:abc.123@mail.example.org"


@pytest.mark.parametrize("header", [None, "", "   ", "<>", "< >"])
def test_dedup_key_falls_back_to_the_content_hash(header: str | None) -> None:
    assert normalise_message_id(header) is None
    assert dedup_key_for(header, SHA) == f"sha:{SHA}"


def test_dedup_key_hashes_absurdly_long_message_ids() -> None:
    key = dedup_key_for("<" + "x" * 5000 + "@example.org>", SHA)
    assert key.startswith("mid-sha:")
    assert len(key) == len("mid-sha:") + 64
    # Still deterministic, so the same message is still recognised.
    assert key == dedup_key_for("<" + "X" * 5000 + "@EXAMPLE.org>", SHA)


@pytest.mark.parametrize("bad", ["", "ABC", SHA.upper(), SHA[:-1], SHA + "0", f"{SHA}\n"])
def test_dedup_key_refuses_a_malformed_sha256(bad: str) -> None:
    with pytest.raises(InvalidValueError, match="sha256"):
        dedup_key_for("<a@b>", bad)


# -- uniqueness enforced by the database --------------------------------------


def test_second_message_with_the_same_dedup_key_is_rejected(session: Session) -> None:
    session.add(new_message(1))
    session.commit()
    session.add(new_message(2, dedup_key=new_message(1).dedup_key))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    assert len(session.exec(select(Message)).all()) == 1


def test_same_content_under_two_keys_is_allowed(session: Session) -> None:
    """sha256 is indexed, not unique: one body may come with two Message-IDs."""
    session.add(new_message(1, sha256=SHA))
    session.add(new_message(2, sha256=SHA))
    session.commit()
    assert len(session.exec(select(Message).where(Message.sha256 == SHA)).all()) == 2


def test_same_server_position_twice_is_rejected(session: Session) -> None:
    message = new_message()
    session.add(message)
    session.flush()
    position = {"mailbox": "smartcity", "folder": "INBOX", "uidvalidity": 7, "uid": 42}
    session.add(Sighting(message_pk=message.id, **position))
    session.commit()
    session.add(Sighting(message_pk=message.id, **position))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    # Another UIDVALIDITY is another position.
    session.add(Sighting(message_pk=message.id, **{**position, "uidvalidity": 8}))
    session.commit()
    assert len(session.exec(select(Sighting)).all()) == 2


def test_same_blob_twice_in_a_dossier_is_rejected(session: Session) -> None:
    dossier, message = _dossier(), new_message()
    session.add_all([dossier, message])
    session.flush()
    piece = {
        "dossier_id": dossier.id,
        "message_pk": message.id,
        "blob_sha256": SHA,
        "content_type": "application/pdf",
        "size": 10,
        "role": PieceRole.DOSSIER,
    }
    session.add(Piece(filename="dossier.pdf", **piece))
    session.commit()
    session.add(Piece(filename="copy of dossier.pdf", **piece))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_duplicate_dossier_number_is_rejected(session: Session) -> None:
    session.add(_dossier())
    session.commit()
    session.add(_dossier(reference="BSC-2026-0001-bis"))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_foreign_keys_are_enforced(session: Session) -> None:
    session.add(
        Piece(
            dossier_id=999,
            message_pk=999,
            blob_sha256=SHA,
            content_type="text/plain",
            size=1,
            role=PieceRole.LETTER,
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_mailbox_cursor_is_unique_per_folder(session: Session) -> None:
    session.add(MailboxCursor(mailbox="smartcity", folder="INBOX", uidvalidity=1, last_uid=1))
    session.commit()
    session.add(MailboxCursor(mailbox="smartcity", folder="INBOX", uidvalidity=2, last_uid=9))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


# -- timestamps -----------------------------------------------------------------


def test_timestamps_come_back_aware_utc_and_equal(engine: Engine) -> None:
    received = datetime(2026, 3, 29, 2, 30, tzinfo=UTC)  # the night clocks change in Paris
    date_header = datetime(2026, 3, 29, 4, 30, 15, 123456, tzinfo=PARIS)
    with Session(engine) as session:
        dossier = _dossier(received_at=received)
        message = new_message(date_header=date_header)
        session.add_all([dossier, message])
        session.commit()
        dossier_id, message_id = dossier.id, message.id
    with Session(engine) as session:
        dossier = session.get_one(Dossier, dossier_id)
        message = session.get_one(Message, message_id)
        for value in (dossier.received_at, dossier.updated_at, message.date_header):
            assert value is not None
            assert value.tzinfo is not None
            assert value.utcoffset() == timedelta(0)
        assert dossier.received_at == received
        assert message.date_header == date_header  # same instant, microseconds kept
        assert dossier.completed_at is None


def test_naive_datetimes_are_refused(session: Session) -> None:
    session.add(_dossier(received_at=datetime(2026, 3, 1, 9, 30)))
    with pytest.raises(StatementError, match="naive datetime") as raised:
        session.flush()
    assert isinstance(raised.value.orig, InvalidValueError)
    session.rollback()


def test_updated_at_moves_on_update(session: Session) -> None:
    dossier = _dossier()
    session.add(dossier)
    session.commit()
    created = dossier.updated_at
    dossier.status_note = "waiting for the letter"
    session.add(dossier)
    session.commit()
    session.refresh(dossier)
    assert dossier.updated_at > created


# -- other column types ---------------------------------------------------------


def test_subject_is_truncated_to_the_header_line_limit(session: Session) -> None:
    message = new_message(subject="é" * 5000)
    assert len(message.subject) == SUBJECT_MAX_LENGTH
    session.add(message)
    session.commit()
    session.refresh(message)
    assert message.subject == "é" * SUBJECT_MAX_LENGTH


def test_json_bytes_and_big_integers_round_trip(engine: Engine) -> None:
    raw = bytes(range(256)) * 4
    with Session(engine) as session:
        dossier = _dossier(
            fields={"project": "Capteurs de qualité de l'air", "budget_eur": 12000.5},
            evidence={"project": {"source": "attachment", "page": 2}},
            missing=["letter", "field:description"],
        )
        message = new_message(headers={"List-Id": None, "X-Mailer": "Thunderbird"})
        session.add_all([dossier, message])
        session.flush()
        session.add(
            Sighting(
                message_pk=message.id,
                mailbox="smartcity",
                folder="INBOX",
                uidvalidity=4_294_967_295,  # UIDs are unsigned 32-bit
                uid=4_294_967_294,
            )
        )
        session.add(
            Outbox(
                dedup_key="acknowledgement:1:1",
                kind=OutboxKind.ACKNOWLEDGEMENT,
                mailbox="smartcity",
                from_addr="smartcity@bethune.fr",
                to_addr="applicant@example.org",
                subject="Accusé de réception",
                message_id="<ack-1@bethune.fr>",
                raw=raw,
            )
        )
        session.commit()
    with Session(engine) as session:
        dossier = session.exec(select(Dossier)).one()
        assert dossier.fields == {"project": "Capteurs de qualité de l'air", "budget_eur": 12000.5}
        assert dossier.evidence == {"project": {"source": "attachment", "page": 2}}
        assert dossier.missing == ["letter", "field:description"]
        assert dossier.legal_hold is False
        assert session.exec(select(Message)).one().headers["X-Mailer"] == "Thunderbird"
        sighting = session.exec(select(Sighting)).one()
        assert (sighting.uidvalidity, sighting.uid) == (4_294_967_295, 4_294_967_294)
        assert sighting.server_action == "pending"
        outbox = session.exec(select(Outbox)).one()
        assert outbox.raw == raw
        assert (outbox.status, outbox.attempts) == ("queued", 0)
