"""A big message goes to the spool as it is fetched, piece by piece.

A message of at least ``intake.SPOOL_BYTES`` (by the server's RFC822.SIZE)
is fetched in partial FETCHes (``BODY.PEEK[]<offset.PIECE_BYTES>``), each
piece written to the spool as it arrives: neither imaplib nor the worker
holds the whole message. Checked on a real Dovecot:

- the pieces put together are the message, byte for byte (sizes that are a
  multiple of the piece too), \\Seen is never set, a missing UID gives
  nothing, and a message expunged during the fetch is an error, never a
  truncated message;
- the dedup key read from the spooled file is the one read from the whole
  message, for odd header blocks too (one longer than a read, one ending
  at a read's edge, none at all);
- one mailbox of big and small mail polled into two databases, with the
  spill and with every message held in memory, files the same rows;
- the memory Python allocates while a 12 MB message is spilled stays
  within a few pieces (it is above the message's size when fetched whole).
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from pathlib import Path

import pytest

from mailbot import intake
from mailbot.imap import MailboxClient, _piece_of
from mailbot.intake import (
    PIECE_BYTES,
    SPOOL_BYTES,
    _spill,
    _spooled_key,
    poll_mailbox,
    quick_dedup_key,
)
from tests.fixtures.candidatures import candidature
from tests.fixtures.mail import as_bytes, make_mail
from tests.fixtures.polls import app_over, filed_rows, mixed_mailbox

NB = "n.bataillon"
SEED = 20261203


def _random(size: int, salt: int = 0) -> bytes:
    return random.Random(SEED + salt).randbytes(size)


def _exactly(size: int, *, message_id: bool = True) -> bytes:
    """A plain message of exactly ``size`` bytes (CRLF lines, as Dovecot serves them)."""
    head = b"From: Lettre <lettre@example.org>\r\nTo: n.bataillon@ville-bethune.fr\r\n"
    head += b"Subject: Lettre d'information\r\n"
    if message_id:
        head += b"Message-ID: <exact-%d@example.org>\r\n" % size
    head += b"\r\n"
    line = b"x" * 78 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    return head + body + b"y" * (size - len(head) - len(body))


def _client(dovecot) -> MailboxClient:
    from mailbot.config import load_config
    from tests.fixtures.config import SHIPPED_CONFIG

    settings = load_config(SHIPPED_CONFIG, environ={}).settings.mailbox(NB)
    settings = settings.model_copy(
        update={"host": dovecot.host, "port": dovecot.port, "security": "none", "username": NB}
    )
    return MailboxClient(settings, dovecot.users[NB])


@pytest.mark.parametrize(
    "size",
    [100, PIECE_BYTES - 1, PIECE_BYTES, 2 * PIECE_BYTES, 2 * PIECE_BYTES + 1],
    ids=["small", "piece-1", "piece", "two-pieces", "two-pieces+1"],
)
def test_the_pieces_make_the_whole_message(dovecot, size):
    raw = _exactly(size)
    uid = dovecot.append(NB, raw)
    with _client(dovecot) as client:
        client.select("INBOX")
        pieces = list(client.fetch_pieces(uid, piece=PIECE_BYTES))
        (whole,) = client.fetch([uid], batch=1)
    assert b"".join(pieces) == whole.raw == raw
    assert all(len(piece) == PIECE_BYTES for piece in pieces[:-1])
    assert pieces and all(pieces)  # no empty piece at a multiple of the piece size
    assert len(pieces) == -(-size // PIECE_BYTES)
    assert "\\Seen" not in dovecot.fetch_flags(NB)[uid]


def test_a_missing_uid_gives_nothing(dovecot):
    dovecot.append(NB, _exactly(500))
    with _client(dovecot) as client:
        client.select("INBOX")
        assert list(client.fetch_pieces(4242, piece=PIECE_BYTES)) == []


def test_a_message_expunged_during_its_fetch_is_never_a_truncated_message(dovecot):
    raw = _exactly(3 * PIECE_BYTES + 10)
    uid = dovecot.append(NB, raw)
    with _client(dovecot) as client:
        client.select("INBOX")
        pieces = client.fetch_pieces(uid, piece=PIECE_BYTES)
        got = [next(pieces)]
        with dovecot.mailbox_client(NB) as other:
            other.delete([str(uid)])
        try:
            got.extend(pieces)
        except intake.ImapError as err:
            assert "went away" in str(err)
        else:
            # Dovecot may still serve a message expunged by another session
            # until this one is told: then it must be whole.
            assert b"".join(got) == raw


def test_the_piece_is_found_among_other_answers():
    data = [
        b"3 (FLAGS (\\Seen))",
        (b"7 (BODY[]<0> {5}", b"other"),
        b" UID 12)",
        (b"8 (BODY[]<0> {5}", b"ours!"),
        b" UID 13)",
    ]
    assert _piece_of(data, uid=13, offset=0) == b"ours!"
    assert _piece_of(data, uid=12, offset=0) == b"other"
    assert _piece_of(data, uid=13, offset=5) is None
    assert _piece_of([(b"1 (UID 13 BODY[]<5> {0}", b"")], uid=13, offset=5) == b""
    assert _piece_of([None], uid=13, offset=0) is None


def _odd_messages() -> dict[str, bytes]:
    body = _random(3 * SPOOL_BYTES).hex().encode()[: 3 * SPOOL_BYTES]
    body = b"\r\n".join(body[i : i + 76] for i in range(0, len(body), 76))
    usual = b"From: a@example.org\r\nMessage-ID: <usual@example.org>\r\nSubject: s\r\n\r\n"
    long_head = b"".join(
        b"Received: from relay%d.example.org by mx.example.org;\r\n" % i for i in range(25_000)
    )
    found: dict[str, bytes] = {
        "usual": usual + body,
        "no-message-id": b"From: a@example.org\r\nSubject: s\r\n\r\n" + body,
        "head-longer-than-a-read": long_head + b"Message-ID: <long@example.org>\r\n\r\n" + body,
        "no-body-at-all": long_head * 2,
        "lone-cr": b"From: a@example.org\rMessage-ID: <cr@example.org>\r\n\r\n" + body,
        "mbox-from-line": b"From a@example.org Thu Dec  3\r\nMessage-ID: <m@x.org>\r\n\r\n" + body,
        "folded-message-id": b"Message-ID:\r\n <folded@example.org>\r\n\r\n" + body,
    }
    # The header block ending at, just before or just after the first read's edge.
    for shift in (-3, -2, -1, 0, 1, 2, 3):
        filler = b"X-Filler: " + b"f" * 70 + b"\r\n"
        head = b"Message-ID: <edge@example.org>\r\n"
        head += filler * ((SPOOL_BYTES - len(head)) // len(filler))
        head += b"X-Last: " + b"l" * max(0, SPOOL_BYTES + shift - len(head) - 12) + b"\r\n"
        found[f"edge{shift:+d}"] = head + b"\r\n" + body
    return found


@pytest.mark.parametrize("name", list(_odd_messages()))
def test_the_key_read_from_the_spool_is_the_key_of_the_whole_message(tmp_path, name):
    raw = _odd_messages()[name]
    path = tmp_path / "spooled"
    path.write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    assert _spooled_key(path, sha=sha, length=len(raw)) == quick_dedup_key(raw)


def _big_mailbox() -> list[bytes]:
    messages = mixed_mailbox()
    messages.insert(
        2,
        as_bytes(
            candidature(
                7,
                attachments=[
                    ("dossier_intention.txt", b"Intitule de l'action : Potager", "text/plain"),
                    ("plans.bin", _random(3 << 20, 1), "application/octet-stream"),
                ],
            )
        ),
    )
    newsletter = make_mail(
        subject="Lettre d'information de décembre",
        body="Bonjour, voici notre lettre.",
        attachments=[("lettre.bin", _random(2 << 20, 2), "application/octet-stream")],
        message_id=False,
    )
    messages.insert(5, as_bytes(newsletter))
    messages.insert(8, _exactly(2 * PIECE_BYTES, message_id=False))
    return messages


def test_a_mailbox_with_big_mail_files_the_same_spilled_or_held(
    config_dir, service_env, dovecot, tmp_path, monkeypatch
):
    dovecot.append_many(NB, _big_mailbox())
    spilled = app_over(config_dir, tmp_path / "spilled")
    held = app_over(config_dir, tmp_path / "held")
    pieces: list[int] = []
    original = MailboxClient.fetch_pieces

    def counting(self, uid, *, piece):  # type: ignore[no-untyped-def]
        for got in original(self, uid, piece=piece):
            pieces.append(len(got))
            yield got

    try:
        with monkeypatch.context() as patch:
            patch.setattr(MailboxClient, "fetch_pieces", counting)
            report = poll_mailbox(spilled, spilled.config.settings.mailbox(NB))
        assert report.error is None and len(report.dossiers_created) == 3, report.summary()
        assert len(pieces) >= 8 and max(pieces) <= PIECE_BYTES  # three big messages
        with monkeypatch.context() as patch:
            # Nothing counts as big: every message is fetched whole and held.
            patch.setattr(intake, "SPOOL_BYTES", 1 << 40)
            held_report = poll_mailbox(held, held.config.settings.mailbox(NB))
        assert held_report.summary() == report.summary()
        assert filed_rows(spilled.engine) == filed_rows(held.engine)
        # Nothing is left in the spool once filed.
        assert not list((Path(spilled.config.blob_dir) / ".spool").glob("*"))
    finally:
        spilled.close()
        held.close()


def _python_peak(action) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_spilling_a_big_message_holds_a_few_pieces_not_the_message(
    config_dir, service_env, dovecot, tmp_path
):
    size = 12 << 20
    uid = dovecot.append(NB, _exactly(size))
    app = app_over(config_dir, tmp_path / "app")
    try:
        with _client(dovecot) as client:
            client.select("INBOX")
            spilled: list[intake._Arrival | None] = []
            peak = _python_peak(lambda: spilled.append(_spill(app, client, uid, head=None)))
            whole_peak = _python_peak(lambda: list(client.fetch([uid], batch=1)))
        (arrival,) = spilled
        assert arrival is not None and arrival.spool is not None and arrival.raw == b""
        assert arrival.spool.stat().st_size == size
        assert arrival.key == quick_dedup_key(arrival.spool.read_bytes())
        assert peak < 4 * PIECE_BYTES, peak
        assert whole_peak > size  # what the check would see without the spill
    finally:
        app.close()
