"""`mailbot run` as a real process: IDLE answers at once, survives restarts, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import corpus
from tests.fixtures.candidatures import RULES
from tests.fixtures.mail import make_mail

MAILBOT = Path(sys.executable).parent / "mailbot"


def candidature(n: int):
    return make_mail(
        subject=f"Candidature au label Béthune Smart City n°{n}",
        sender=f"Porteur {n} <porteur{n}@example.org>",
        body="Bonjour, voici notre dossier d'intention et le courrier à Monsieur le Maire.",
        attachments=[
            ("dossier.pdf", corpus.form_pdf(RULES, corpus.POTAGER), "application/pdf"),
            ("courrier.pdf", corpus.letter_pdf(corpus.POTAGER), "application/pdf"),
        ],
    )


@pytest.fixture
def worker_env(service_env, smtp_server, tmp_path):
    env = dict(os.environ)
    env.update(service_env)
    env.update(
        {
            "MAILBOT_SMTP__HOST": smtp_server.host,
            "MAILBOT_SMTP__PORT": str(smtp_server.port),
            "MAILBOT_SMTP__SECURITY": "none",
            "MAILBOT_SMTP__USERNAME": "",
            # The timer poll is far away: only IDLE can answer quickly.
            "MAILBOT_SCHEDULE__POLL_INTERVAL_SECONDS": "3600",
            "MAILBOT_SCHEDULE__SEND_INTERVAL_SECONDS": "3600",
            "MAILBOT_DIGEST__AT": "23:59",
            "MAILBOT_SERVICE__HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        }
    )
    return env


@pytest.fixture
def worker(worker_env, tmp_path):
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [str(MAILBOT), "run"], env=worker_env, stdout=log, stderr=subprocess.STDOUT
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    log.close()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "worker.log").read_text(encoding="utf-8", errors="replace")


def test_run_answers_by_idle_survives_restart_and_stops_cleanly(
    worker, dovecot, smtp_server, tmp_path
):
    wait_until(lambda: "IDLE n.bataillon: watching" in log_text(tmp_path), 30, "IDLE start")
    assert (tmp_path / "heartbeat").exists()

    dovecot.append("n.bataillon", candidature(1))
    smtp_server.wait_for(1, timeout=30)
    assert "Accusé de réception" in smtp_server.messages[0].message["Subject"]

    dovecot.restart()
    dovecot.append("d.berteloot", candidature(2))
    smtp_server.wait_for(2, timeout=60)
    assert "reconnecting" in log_text(tmp_path)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert "stopped" in log_text(tmp_path)
    assert not (tmp_path / "heartbeat").exists()
    # The operator's log carries no applicant data: no address, name or subject.
    log = log_text(tmp_path).lower()
    assert "porteur" not in log and "candidature au label" not in log
    assert len(smtp_server.messages) == 2


def test_idle_hears_mail_arriving_while_a_poll_runs(worker, dovecot, smtp_server, tmp_path):
    """Mail that arrives while a poll is busy is answered at once, not at the next timer poll."""
    wait_until(lambda: "IDLE n.bataillon: watching" in log_text(tmp_path), 30, "IDLE start")
    # A scanned dossier: OCR keeps the poll busy for a few seconds.
    scan = corpus.image_pdf(corpus.scanned(corpus.form_pdf(RULES, corpus.POTAGER), seed=3))
    slow = make_mail(
        subject="Candidature au label Béthune Smart City (scan)",
        sender="Scan <scan@example.org>",
        body="Bonjour, voici notre dossier d'intention scanné.",
        attachments=[
            ("dossier_scan.pdf", scan, "application/pdf"),
            ("courrier.pdf", corpus.letter_pdf(corpus.POTAGER), "application/pdf"),
        ],
    )
    dovecot.append("n.bataillon", slow)
    time.sleep(1.5)  # IDLE has reported it; the poll is reading the scan
    dovecot.append("n.bataillon", candidature(9))
    # The timer poll is an hour away: only IDLE can bring the second one in.
    smtp_server.wait_for(2, timeout=60)
    replies = {c.message["To"]: c.message["Subject"] for c in smtp_server.messages}
    assert set(replies) == {"scan@example.org", "porteur9@example.org"}
    # The scan was read first (OCR kept that poll busy). A scanned form's ticks
    # may be read with doubt: then its dossier waits for staff and the
    # applicant gets the neutral acknowledgement (issue 15), never a notice.
    assert "Accusé de réception" in replies["scan@example.org"]
    polls = [line for line in log_text(tmp_path).splitlines() if "poll n.bataillon: 1 new" in line]
    assert len(polls) == 2, log_text(tmp_path)
    assert "1 filed" in polls[0] and "1 filed" in polls[1]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_idle_reconnects_with_exponential_backoff_and_jitter(worker_env, tmp_path):
    """Against a server that is down, the IDLE watcher waits about 1, 2, 4 s... between tries."""
    import re
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = dict(worker_env)
    env["MAILBOT_MAILBOXES__0__PORT"] = str(closed_port)
    env["MAILBOT_MAILBOXES__1__ENABLED"] = "false"
    with (tmp_path / "down.log").open("wb") as log:
        process = subprocess.Popen(
            [str(MAILBOT), "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            pattern = re.compile(r"IDLE n\.bataillon: .* reconnecting in ([0-9.]+) s")

            def delays() -> list[float]:
                text = (tmp_path / "down.log").read_text(encoding="utf-8", errors="replace")
                return [float(d) for d in pattern.findall(text)]

            wait_until(lambda: len(delays()) >= 4, 40, "four reconnection attempts")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    for attempt, delay in enumerate(delays()[:4]):
        base = 2.0**attempt
        assert 0.5 * base <= delay <= 1.5 * base, (attempt, delay)
