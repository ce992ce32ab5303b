"""Hostile input through the whole pipeline: broken mail, hostile documents, injections.

Every input goes through ``Analyser.analyse`` (parse, classify, read the
documents in the sandboxed child) and must finish within the configured
limits without raising; then all of them are polled from Dovecot together:
each leaves a ledger row, and every message kept (filed, needs_review,
failed) has its raw bytes in the blob store. Replies built for the injection
attempts carry exactly the headers we put there.
"""

from __future__ import annotations

import email.policy
import time
from email.parser import BytesParser

import pytest
from sqlmodel import select

from mailbot.config import load_config
from mailbot.intake import poll_all
from mailbot.pipeline import Analyser
from storage.db import session_scope
from storage.models import Message, Outbox
from tests.fixtures import faults as f
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.hostile_mail import CASES, INJECTED_SENDER, with_attachment

# Tighter than the shipped limits (60 s, 1 GB, 40 MB) to keep the suite fast.
LIMIT_ENV = {
    "MAILBOT_LIMITS__PARSE_TIMEOUT_SECONDS": "20",
    "MAILBOT_LIMITS__PARSE_CPU_SECONDS": "15",
    "MAILBOT_LIMITS__PARSE_MEMORY_MB": "768",
    "MAILBOT_LIMITS__OCR_TIMEOUT_SECONDS": "30",
    "MAILBOT_LIMITS__MAX_MESSAGE_BYTES": "4000000",
}
CONFIG = load_config(SHIPPED_CONFIG, environ=LIMIT_ENV)
LIMITS = CONFIG.settings.limits
# One message may hold several documents read one after the other: generous.
BUDGET = LIMITS.parse_timeout_seconds + LIMITS.ocr_timeout_seconds + 15


@pytest.fixture(scope="module")
def analyser() -> Analyser:
    return Analyser(CONFIG)


def _clean(text: str) -> bool:
    return not any(c in text for c in "\r\n\x00\u2028\u2029")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_analysed_within_limits(name, analyser, capsys):
    raw = CASES[name]()
    started = time.monotonic()
    analysis = analyser.analyse(raw, mailbox=f.NB)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\n[hostile] {name}: {len(raw):,} B in {elapsed:.2f} s -> "
            f"{analysis.verdict or 'failed'}; {len(analysis.warnings)} warnings"
        )
    assert elapsed < BUDGET
    if analysis.mail is not None:
        assert analysis.mail.sha256 == __import__("hashlib").sha256(raw).hexdigest()
        assert _clean(analysis.mail.subject)
        assert _clean(analysis.mail.sender) and _clean(analysis.mail.sender_name)
        for attachment in analysis.mail.attachments:
            assert "/" not in attachment.filename and "\\" not in attachment.filename
            assert _clean(attachment.filename)
    if analysis.mail is None or analysis.mail.over_limits:
        assert analysis.warnings or analysis.error


@pytest.mark.timeout(600)
def test_hostile_inputs_polled_are_all_kept(service_env, monkeypatch, dovecot, capsys):
    for key, value in LIMIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MAILBOT_REPLIES__GLOBAL_HOURLY_CAP", "100000")
    monkeypatch.setenv("MAILBOT_REPLIES__GLOBAL_DAILY_CAP", "100000")
    monkeypatch.setenv("MAILBOT_REPLIES__PER_DOMAIN_DAILY_CAP", "100000")
    from mailbot.app import App

    app = App(service_env["MAILBOT_CONFIG"])
    raws = [CASES[name]() for name in CASES]
    dovecot.fill_maildir(f.NB, raws)
    started = time.monotonic()
    reports = poll_all(app)
    elapsed = time.monotonic() - started
    assert all(r.error is None for r in reports), [r.error for r in reports]
    with session_scope(app.engine) as session:
        messages = list(session.exec(select(Message)).all())
        outbox = list(session.exec(select(Outbox)).all())
    statuses = {m.status for m in messages}
    kept = [m for m in messages if m.status in ("filed", "needs_review", "failed")]
    with capsys.disabled():
        print(
            f"\n[reliability] hostile inputs: {len(CASES)} polled in {elapsed:.1f} s -> "
            f"{len(messages)} ledger rows, statuses {sorted(statuses)}, {len(kept)} kept raw, "
            f"{len(outbox)} replies planned"
        )
    # Nothing lost: one ledger row per distinct message (two cases share no id).
    assert len(messages) == len(CASES)
    assert sum(r.new for r in reports) == len(CASES)
    for message in kept:
        assert message.raw_blob is not None, message.subject
        assert app.blobs.exists(message.raw_blob)
        assert _clean(message.subject)
    # Nothing written outside the blob store from a file name.
    assert not (app.config.blob_dir.parent / "etc").exists()
    # Replies: exactly our headers, the sender's address, nothing smuggled in.
    for row in outbox:
        reply = BytesParser(policy=email.policy.default).parsebytes(row.raw)
        assert reply["Bcc"] is None and reply["X-Injected"] is None
        assert reply["To"] == row.to_addr
        for name, value in reply.items():
            assert _clean(str(value)), (name, value)
    injected = [o for o in outbox if o.to_addr == INJECTED_SENDER]
    for row in injected:
        assert b"evil@evil.example" not in row.raw.split(b"\r\n\r\n", 1)[0]
    # A second pass finds nothing new.
    assert sum(r.new for r in poll_all(app)) == 0
    app.close()


def test_an_empty_attachment_is_named_in_the_warnings(analyser):
    raw = with_attachment("empty", "dossier_intention.pdf", b"", "application/pdf")
    analysis = analyser.analyse(raw, mailbox=f.NB)
    assert analysis.mail is not None and analysis.mail.attachments[0].size == 0
    assert any("dossier_intention.pdf" in w for w in analysis.warnings), analysis.warnings


def test_pdfminer_has_the_pickle_cmap_fix():
    """CVE-2025-64512 (pickled CMaps) is fixed from pdfminer.six 20251107."""
    import importlib.metadata

    assert int(importlib.metadata.version("pdfminer.six")) >= 20251107
