"""One message with many dense scans cannot hold the mailbox: a budget over all its documents.

``[limits] message_wall_seconds`` and ``message_cpu_seconds`` bound the
reading of ALL the documents of one message (OCR included). These tests send
one message's worth of scanned letters, each needing Tesseract, through
``extract_documents`` (the real sandbox child, the real Tesseract) with a
tiny budget, and check that the reading stops, says so, and leaves the
documents it did not read for staff.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mailbot.cli import main
from mailbot.config import LimitsSettings, load_config
from parsers.documents.extract import extract_documents
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import POTAGER, attachment, jpeg, letter_pdf, scanned
from tests.fixtures.mail import make_mail

SCANS = 12
# Starting the forkserver (about a second of imports, more on a busy machine)
# and killing the child come on top of the budget.
START_AND_STOP_SECONDS = 8.0


@pytest.fixture(scope="module")
def dense_scans() -> list:
    """Scanned letters, each a page of text that only OCR can read."""
    page = jpeg(scanned(letter_pdf(POTAGER), seed=3)[0])
    return [attachment(f"scan-{n:02d}.jpg", page, "image/jpeg") for n in range(SCANS)]


def test_the_shipped_config_has_a_message_budget():
    limits = load_config(SHIPPED_CONFIG).settings.limits
    assert limits.message_wall_seconds == 120
    assert limits.message_cpu_seconds == 90
    text = (Path(SHIPPED_CONFIG) / "mailbot.toml").read_text(encoding="utf-8")
    assert "message_wall_seconds = 120" in text and "message_cpu_seconds = 90" in text


def test_many_scans_stop_at_the_wall_clock_budget(dense_scans):
    limits = LimitsSettings(message_wall_seconds=3, message_cpu_seconds=600)
    started = time.monotonic()
    documents = extract_documents(dense_scans, limits=limits)
    elapsed = time.monotonic() - started
    assert elapsed < limits.message_wall_seconds + START_AND_STOP_SECONDS
    assert documents.over_budget
    assert "time budget of 3 s" in documents.warnings[0]
    assert len(documents) == SCANS
    unread = [d for d in documents if any("reading budget is spent" in w for w in d.warnings)]
    assert unread, "no document was left unread"
    assert all(d.needs_review and not d.pages for d in unread)
    # In attachment order: what was read comes first, the rest is unread.
    assert documents[-1] in unread


def test_many_scans_stop_at_the_cpu_budget(dense_scans):
    """Tesseract's CPU counts: without it a child reading scans uses almost none itself."""
    limits = LimitsSettings(message_wall_seconds=600, message_cpu_seconds=2)
    documents = extract_documents(dense_scans, limits=limits)
    assert documents.over_budget
    assert "CPU budget of 2 s" in documents.warnings[0]
    assert documents[-1].needs_review
    assert "reading budget is spent" in documents[-1].warnings[0]


def test_a_message_within_its_budget_is_not_flagged(dense_scans):
    limits = LimitsSettings()
    documents = extract_documents(dense_scans[:1], limits=limits)
    assert not documents.over_budget and documents.warnings == ()
    assert documents[0].ocr_used and "Potager" in documents[0].text


def test_mailbot_try_on_a_message_of_many_scans_ends_within_its_budget(
    dense_scans, config_dir, tmp_path, capsys, monkeypatch
):
    """The whole message, through the real command: parse, classify, read, decide."""
    monkeypatch.setenv("MAILBOT_LIMITS__MESSAGE_WALL_SECONDS", "3")
    mail = make_mail(attachments=[(a.filename, a.data, "image/jpeg") for a in dense_scans])
    path = tmp_path / "scans.eml"
    path.write_bytes(mail.as_bytes())
    started = time.monotonic()
    code = main(["--config", str(config_dir), "try", str(path), "--json"])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert elapsed < 3 + START_AND_STOP_SECONDS
    assert result["verdict"] == "needs_review"
    assert any("reading budget is spent" in w for w in result["warnings"])


def test_a_candidature_over_its_budget_is_filed_for_review_with_its_reason(
    dense_scans, config_dir, monkeypatch
):
    """A dossier and a letter that were read, then scans the budget left unread: staff decide."""
    from mailbot.app import App
    from mailbot.filing import Position, file_analysis
    from mailbot.pipeline import Analyser
    from storage.db import session_scope
    from storage.models import Message
    from tests.fixtures.corpus import form_pdf
    from tests.fixtures.mail import as_bytes

    monkeypatch.setenv("MAILBOT_LIMITS__MESSAGE_WALL_SECONDS", "3")
    app = App(str(config_dir))
    rules = app.config.rules
    raw = as_bytes(
        make_mail(
            subject="Candidature au label Béthune Smart City",
            body="Bonjour,\nVeuillez trouver ci-joint notre dossier d'intention.",
            attachments=[
                ("dossier_intention.pdf", form_pdf(rules, POTAGER), "application/pdf"),
                ("courrier_maire.pdf", letter_pdf(POTAGER), "application/pdf"),
                *[(a.filename, a.data, "image/jpeg") for a in dense_scans],
            ],
        )
    )
    analysis = Analyser(app.config).analyse(raw, mailbox="n.bataillon")
    assert analysis.reading is not None and analysis.reading.over_budget
    assert analysis.verdict == "needs_review"
    with session_scope(app.engine) as session:
        filed = file_analysis(
            session=session,
            blobs=app.blobs,
            config=app.config,
            analysis=analysis,
            position=Position("n.bataillon", "INBOX", 1, 1),
        )
    with session_scope(app.engine) as session:
        message = session.get(Message, filed.message_pk)
        assert message is not None
        assert message.status == "needs_review"
        assert message.reason == "over_budget"
    app.close()
