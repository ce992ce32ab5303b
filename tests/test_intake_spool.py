"""Big messages are spooled to a file as fetched, read from there, and the spool is cleaned.

The worker does not hold a big message while its documents are read
(``mailbot.intake.SPOOL_BYTES``): the raw bytes go to ``BLOBS/.spool``
as they are fetched (tests/test_spill_fetch.py for the pieces); the
stored raw blob of a filed message is byte for byte what the server
sent; nothing stays in the spool after a poll, and what a crash left
there is removed by the next poll.
"""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from dataclasses import replace

from sqlmodel import select

from mailbot import intake
from mailbot.intake import poll_mailbox
from mailbot.pipeline import remove_spooled, store_attachment
from parsers.types import Attachment, SpooledData
from storage.blobs import SPOOL_DIR_NAME
from storage.db import session_scope
from storage.models import Message, MessageStatus, Piece
from tests.fixtures.candidatures import candidature
from tests.fixtures.mail import as_bytes, make_mail

NB = "n.bataillon"


ANNEX = os.urandom(1_600_000)  # over SPOOL_BYTES in base64; over bounds.SPOOL_DECODED_BYTES


def _big_candidature() -> bytes:
    annex = ANNEX
    message = candidature(
        7,
        attachments=[
            ("dossier_intention.txt", b"Intitule de l'action : Potager", "text/plain"),
            ("annexe.bin", annex, "application/x-binary"),
        ],
    )
    return as_bytes(message)


def test_a_big_message_is_spooled_filed_whole_and_the_spool_emptied(service_app, dovecot):
    raw = _big_candidature()
    assert len(raw) > intake.SPOOL_BYTES
    dovecot.append(NB, raw)
    dovecot.append(NB, make_mail(subject="Petit message", body="Bonjour"))
    spooled = []
    original = service_app.blobs.spool
    original_pieces = service_app.blobs.spool_pieces

    def spool(data):
        path = original(data)
        spooled.append((path, hashlib.sha256(data).hexdigest()))
        return path

    def spool_pieces(pieces):
        # A big message (by its RFC822.SIZE) is written as it is fetched.
        path = original_pieces(pieces)
        spooled.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
        return path

    service_app.blobs.spool = spool
    service_app.blobs.spool_pieces = spool_pieces
    report = poll_mailbox(service_app, service_app.config.settings.mailbox(NB))
    assert report.error is None and report.filed + report.needs_review == 1, report.summary()
    assert len(spooled) == 1  # only the big one
    with session_scope(service_app.engine) as session:
        kept = session.exec(select(Message).where(Message.raw_blob.is_not(None))).all()
        assert len(kept) == 1
        stored = service_app.blobs.get(kept[0].raw_blob)
        assert kept[0].size == len(stored)
        assert kept[0].sha256 == spooled[0][1] == hashlib.sha256(stored).hexdigest()
    assert stored.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    # The annex was filed from its file beside the spooled message: same bytes.
    with session_scope(service_app.engine) as session:
        pieces = session.exec(select(Piece).where(Piece.filename == "annexe.bin")).all()
    assert [service_app.blobs.get(p.blob_sha256) for p in pieces] == [ANNEX]
    assert pieces[0].size == len(ANNEX)
    assert not spooled[0][0].exists()
    assert list((service_app.blobs.root / SPOOL_DIR_NAME).iterdir()) == []


def test_spooled_mail_gets_the_same_ledger_as_mail_read_in_memory(
    service_app, dovecot, monkeypatch
):
    monkeypatch.setattr(intake, "SPOOL_BYTES", 0)  # every message is spooled
    dovecot.append(NB, candidature(3))
    dovecot.append(NB, make_mail(subject="Compte rendu", body="Bonjour, voici le compte rendu."))
    report = poll_mailbox(service_app, service_app.config.settings.mailbox(NB))
    assert report.error is None
    assert (report.filed, report.ignored) == (1, 1), report.summary()
    with session_scope(service_app.engine) as session:
        rows = {m.status: m for m in session.exec(select(Message)).all()}
    assert rows[MessageStatus.FILED].raw_blob == rows[MessageStatus.FILED].sha256
    assert rows[MessageStatus.IGNORED].raw_blob is None
    assert list((service_app.blobs.root / SPOOL_DIR_NAME).iterdir()) == []


def test_a_spool_file_left_by_a_crash_is_removed_by_the_next_poll(service_app, dovecot):
    left = service_app.blobs.spool(b"Subject: left by a crash\r\n\r\nbody")
    young = service_app.blobs.spool(b"Subject: another worker's\r\n\r\nbody")
    old = time.time() - 2 * 3600
    os.utime(left, (old, old))
    dovecot.append(NB, candidature(4))
    report = poll_mailbox(service_app, service_app.config.settings.mailbox(NB))
    assert report.error is None and report.filed == 1
    assert not left.exists()
    assert young.exists()  # may be a poll in progress elsewhere


def test_a_message_read_from_the_spool_reads_as_in_memory(service_app, tmp_path):
    """Big attachments go to the child from files; the analysis is the in-memory one."""
    from bench.memory import big_pdf
    from mailbot.pipeline import Analyser

    raw = as_bytes(
        candidature(
            9,
            attachments=[
                ("dossier_intention.txt", b"Intitule de l'action : Potager", "text/plain"),
                ("annexe_plans.pdf", big_pdf(2), "application/pdf"),
            ],
        )
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / "spooled.eml"
    path.write_bytes(raw)
    analyser = Analyser(service_app.config)
    memory = analyser.analyse(raw, mailbox=NB)
    spooled = analyser.analyse_file(path, mailbox=NB)
    assert spooled.raw == b"" and spooled.raw_bytes() == raw and spooled.size == len(raw)
    assert spooled.verdict == memory.verdict
    assert spooled.reading is not None and memory.reading is not None
    assert spooled.reading.documents == memory.reading.documents
    assert spooled.warnings == memory.warnings
    assert any(d.filename == "annexe_plans.pdf" and d.pages for d in spooled.reading.documents)
    # The big PDF stays in a file (the worker holds its path) until it is filed.
    assert spooled.mail is not None and memory.mail is not None
    held = {a.filename: a.data for a in spooled.mail.attachments}
    assert isinstance(held["annexe_plans.pdf"], SpooledData)
    assert isinstance(held["dossier_intention.txt"], bytes)
    assert spooled.mail == replace(
        memory.mail,
        attachments=tuple(replace(a, data=held[a.filename]) for a in memory.mail.attachments),
    )
    for attachment in spooled.mail.attachments:
        stored = service_app.blobs.get(store_attachment(service_app.blobs, attachment))
        assert hashlib.sha256(stored).hexdigest() == attachment.sha256
    assert sorted(p.name for p in spool.iterdir()) == ["spooled.eml", "spooled.eml.part0"]
    remove_spooled(path)
    assert list(spool.iterdir()) == []


def test_a_spooled_attachment_is_stored_without_being_read_whole(service_app, tmp_path):
    """Filing copies a big attachment from its file in chunks (tracemalloc peak)."""
    data = os.urandom(12 << 20)
    path = tmp_path / "message.eml.part0"
    path.write_bytes(data)
    attachment = Attachment(
        filename="annexe.bin",
        content_type="application/octet-stream",
        data=SpooledData(path, size=len(data), sha256=hashlib.sha256(data).hexdigest()),  # type: ignore[arg-type]
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        source="attachment",
    )
    del data
    tracemalloc.start()
    try:
        sha = store_attachment(service_app.blobs, attachment)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sha == attachment.sha256
    assert service_app.blobs.path_for(sha).stat().st_size == 12 << 20
    assert peak < 4 << 20, peak
    # The measure sees a whole read: filing as it was (the file read back, then stored).
    tracemalloc.start()
    try:
        assert service_app.blobs.put(path.read_bytes()) == sha
        whole_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert whole_peak >= 12 << 20


def test_the_worker_never_holds_a_big_annex_while_it_reads_the_message(service_app, tmp_path):
    """``analyse_file``: the message parsed from its file, the annex decoded into a file.

    tracemalloc sees the worker's allocations (the sandbox child is another
    process): its peak stays far below the 12 MB annex and its 16 MB of base64.
    """
    from mailbot.pipeline import Analyser

    annex = os.urandom(12 << 20)
    raw = as_bytes(
        candidature(
            11,
            attachments=[
                ("dossier_intention.txt", b"Intitule de l'action : Potager", "text/plain"),
                ("annexe.bin", annex, "application/x-binary"),
            ],
        )
    )
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / "spooled.eml"
    path.write_bytes(raw)
    analyser = Analyser(service_app.config)
    analyser.analyse(b"Subject: warm-up\r\n\r\nBonjour\r\n", mailbox=NB)  # imports, caches
    del raw
    tracemalloc.start()
    try:
        analysis = analyser.analyse_file(path, mailbox=NB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert analysis.mail is not None and analysis.error is None
    held = next(a.data for a in analysis.mail.attachments if a.filename == "annexe.bin")
    assert isinstance(held, SpooledData) and held.path.parent == spool
    assert held.sha256 == hashlib.sha256(annex).hexdigest()
    assert peak < 8 << 20, peak
    remove_spooled(path)
    assert list(spool.iterdir()) == []
