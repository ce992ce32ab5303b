"""Latency with IDLE: from APPEND to the acknowledgement arriving at the SMTP server.

Run from the repository root:  .venv/bin/python -m bench.latency [--quick]

``mailbot run`` runs as a real process (timer poll and outbox timer one hour
away, so only IDLE can answer). One complete candidature (fillable form +
letter, its own sender each time) is APPENDed to ``n.bataillon``'s INBOX
over a persistent IMAP connection; the clock stops when the reply reaches
the SMTP server; then the next one (50 in all). Median and 95th percentile.

Baseline, same messages, before the service starts: the bare minimum of
"answer on arrival", an imap-tools IDLE loop in a thread that fetches the
new message and sends a short reply with smtplib.
"""

from __future__ import annotations

import contextlib
import smtplib
import subprocess
import threading
import time
from email.message import EmailMessage

from bench import harness
from bench.dossiers import candidature
from bench.harness import NB, Figure
from mailbot.config import load_config
from mailbot.imap import lines_read_ahead
from tests.fixtures.config import SHIPPED_CONFIG


def messages(count: int, tag: str) -> list[bytes]:
    rules = load_config(SHIPPED_CONFIG, environ={}).rules
    return [candidature(rules, 1000 + n, tag)[0] for n in range(count)]


def measure(srv: harness.Servers, raws: list[bytes], wait: float = 10.0) -> tuple[list[float], int]:
    """APPEND each message and wait (up to ``wait`` s) for one more captured reply.

    Returns the delays in seconds (reply i answers message i, replies leave in order)
    and how many messages got no reply within ``wait`` (their delay is then measured
    when the reply finally comes, after later messages woke the service up).
    """
    starts, missed = [], 0
    with srv.dovecot.mailbox_client(NB) as box:
        for index, raw in enumerate(raws):
            starts.append(time.monotonic())
            box.append(raw, "INBOX", flag_set=[])
            try:
                srv.smtp.wait_for(index + 1, timeout=wait)
            except AssertionError:
                missed += 1
    srv.smtp.wait_for(len(raws), timeout=120)
    return [srv.smtp.arrivals[i] - start for i, start in enumerate(starts)], missed


class BareResponder(threading.Thread):
    """IDLE, fetch what is new, reply with smtplib: nothing else."""

    def __init__(self, srv: harness.Servers) -> None:
        super().__init__(daemon=True)
        self.srv = srv
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with self.srv.dovecot.mailbox_client(NB) as box:
            last = max((int(u) for u in box.uids()), default=0)
            self.ready.set()
            while not self.stop.is_set():
                # Blocking wait (timeouts and imap-tools' non-blocking reads do not mix
                # well on this connection); run() wakes it with one last message.
                box.idle.start()
                # What imaplib read with ``+ idling`` and buffered (a socket wait misses it).
                responses = lines_read_ahead(box.client) or box.idle.poll(timeout=None)
                box.idle.stop()
                if self.stop.is_set() or not any(b"EXISTS" in r for r in responses):
                    continue
                for msg in box.fetch(f"{last + 1}:*", mark_seen=False):
                    if int(msg.uid) <= last:
                        continue
                    last = int(msg.uid)
                    reply = EmailMessage()
                    reply["From"] = "n.bataillon@ville-bethune.fr"
                    reply["To"] = msg.from_
                    reply["Subject"] = "Accusé de réception"
                    reply.set_content("Bien reçu.")
                    with smtplib.SMTP(self.srv.smtp.host, self.srv.smtp.port) as smtp:
                        smtp.send_message(reply)


def run(srv: harness.Servers, *, quick: bool = False, count: int = 50):
    count = 10 if quick else count
    base_count = 5 if quick else 15
    raws = messages(count + base_count + 1, "form")
    srv.dovecot.reset()
    srv.smtp.clear()
    srv.smtp.arrivals.clear()

    responder = BareResponder(srv)
    responder.start()
    responder.ready.wait(30)
    base, _ = measure(srv, raws[count:-1])
    responder.stop.set()
    srv.dovecot.append(NB, raws[-1])
    responder.join(10)
    srv.dovecot.reset()
    srv.smtp.clear()
    srv.smtp.arrivals.clear()

    st = harness.stage(srv, "latency", service__log_level="INFO")
    log_path = st.root / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(harness.MAILBOT), "run"],
            env=harness.process_env(st),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "IDLE n.bataillon: watching" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mailbot run did not start:\n" + log_path.read_text())
            time.sleep(0.1)
        time.sleep(1.0)  # the catch-up poll at start-up
        try:
            ours, missed = measure(srv, raws[:count])
        except BaseException:  # pytest-timeout's Failed too: show why
            print(log_path.read_text(errors="replace")[-3000:])
            raise
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        if process.poll() is None:
            process.kill()
            process.wait()
        st.close()
    bm, om = harness.median(base), harness.median(ours)
    b95, o95 = harness.percentile(base, 0.95), harness.percentile(ours, 0.95)
    return [
        Figure(
            "4 latency",
            f"APPEND -> reply at SMTP, median ({count} msgs; baseline {base_count})",
            f"{bm * 1000:.0f} ms",
            f"{om * 1000:.0f} ms",
            f"{om / bm:.2f}",
            "median <= 1 s",
            om <= 1.0,
        ),
        Figure(
            "4 latency",
            f"APPEND -> reply at SMTP, p95; {missed}/{count} not answered within 10 s",
            f"{b95 * 1000:.0f} ms",
            f"{o95 * 1000:.0f} ms",
            f"{o95 / b95:.2f}",
            "-",
            None,
        ),
    ]


def main() -> None:
    harness.main(run, __doc__, default_count=50)


if __name__ == "__main__":
    main()
