"""Backlog: the first poll over 5,000 recent messages that are not candidatures.

Run from the repository root:  .venv/bin/python -m bench.backlog [--quick]

``n.bataillon`` holds 5,000 everyday messages (newsletters, colleagues'
mail, meeting replies; 1.5-9 KB) that arrived today, so within the backlog
window. mailbot: ``poll_mailbox`` with a fresh database (no cursor: full
scan, structure and headers first, bodies only where a sign may be, dedup
key, parse, classify, ledger row, sighting, cursor, server action; goal of
issue 18: at most 4 times the baseline). Baseline: the bare minimum of looking at every one
of those messages, an imap-tools header fetch of the same mailbox
(``fetch(headers_only=True, mark_seen=False, bulk=500)``). Interleaved:
baseline, mailbot, baseline, ...; the baseline figure is the median.

Also timed, for information: the *floor* of any design that must read each
body to rule out a candidature (signs such as "label Smart City" may be in
the body only): the same mailbox fetched whole (``BODY.PEEK[]``), each
message parsed by the stdlib ``email`` package (compat32, its fastest
policy), its text parts decoded, subject and text folded and the rules'
signs searched; no limits, no warnings, no database. And the first step of
that floor alone: the whole fetch, nothing parsed.
"""

from __future__ import annotations

import email
import email.policy
import time

from bench import harness
from bench.harness import NB, Figure
from mailbot.config import secret
from mailbot.imap import MailboxClient
from mailbot.intake import poll_mailbox
from parsers.text import fold


def bare_fetch(srv: harness.Servers) -> float:
    start = time.perf_counter()
    with srv.dovecot.mailbox_client(NB) as box:
        count = sum(1 for _ in box.fetch(headers_only=True, mark_seen=False, bulk=500))
    elapsed = time.perf_counter() - start
    assert count > 0
    return elapsed


def whole_fetch(srv: harness.Servers, st: harness.Stage) -> float:
    """The first step of the floor alone: every message fetched whole, nothing read."""
    mailbox = st.app.config.settings.mailbox(NB)
    start = time.perf_counter()
    with MailboxClient(mailbox, secret(mailbox.password_env) or "") as client:
        client.select(mailbox.folder)
        count = sum(len(fetched.raw) > 0 for fetched in client.fetch(client.all_uids(), batch=500))
    elapsed = time.perf_counter() - start
    assert count > 0
    return elapsed


def floor_pass(srv: harness.Servers, st: harness.Stage) -> float:
    """Fetch whole, stdlib parse, decode text, fold, search the signs: nothing else."""
    mailbox = st.app.config.settings.mailbox(NB)
    signs = [sign.regex for sign in st.app.config.rules.detection.signs]
    start = time.perf_counter()
    hits = 0
    with MailboxClient(mailbox, secret(mailbox.password_env) or "") as client:
        client.select(mailbox.folder)
        for fetched in client.fetch(client.all_uids(), batch=500):
            message = email.message_from_bytes(fetched.raw, policy=email.policy.compat32)
            texts = [str(message.get("Subject", ""))]
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    payload = part.get_payload(decode=True) or b""
                    texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
            folded = fold(" ".join(texts))
            hits += any(regex.search(folded) for regex in signs)
    elapsed = time.perf_counter() - start
    assert hits < 5000
    return elapsed


def mailbot_poll(srv: harness.Servers, name: str, expected: int) -> float:
    st = harness.stage(srv, name)
    try:
        mailbox = st.app.config.settings.mailbox(NB)
        st.app.engine  # noqa: B018 - create and migrate the database outside the timing
        start = time.perf_counter()
        report = poll_mailbox(st.app, mailbox)
        elapsed = time.perf_counter() - start
    finally:
        st.close()
    assert report.error is None and report.ignored == expected, report.summary()
    return elapsed


def run(srv: harness.Servers, *, quick: bool = False, count: int = 5000):
    rounds = 1 if quick else 2
    srv.dovecot.fill_maildir(NB, harness.everyday_messages(count))
    bare_fetch(srv)  # warm-up: Dovecot builds its index and cache once
    base, ours, floor, whole = [bare_fetch(srv)], [], [], []
    st = harness.stage(srv, "backlog-floor")
    try:
        for index in range(rounds):
            ours.append(mailbot_poll(srv, f"backlog-{index}", count))
            base.append(bare_fetch(srv))
            floor.append(floor_pass(srv, st))
            whole.append(whole_fetch(srv, st))
            base.append(bare_fetch(srv))
    finally:
        st.close()
    b, o, f = harness.median(base), harness.median(ours), harness.median(floor)
    w = harness.median(whole)
    return [
        Figure(
            "2 backlog",
            f"first poll, {count:,} non-candidatures",
            f"{b:.2f} s",
            f"{o:.2f} s",
            f"{o / b:.2f}",
            "<= 4",
            o / b <= 4,
        ),
        Figure(
            "2 backlog",
            "(info) floor of reading every body: fetch whole, stdlib parse, fold, signs",
            f"{b:.2f} s",
            f"{f:.2f} s",
            f"{f / b:.2f}",
            "-",
            None,
        ),
        Figure(
            "2 backlog",
            "(info) of which the whole fetch alone (BODY.PEEK[], nothing parsed)",
            f"{b:.2f} s",
            f"{w:.2f} s",
            f"{w / b:.2f}",
            "-",
            None,
        ),
        Figure(
            "2 backlog",
            "(info) per message",
            f"{b / count * 1000:.2f} ms",
            f"{o / count * 1000:.2f} ms",
            "",
            "-",
            None,
        ),
    ]


def main() -> None:
    harness.main(run, __doc__, default_count=5000)


if __name__ == "__main__":
    main()
