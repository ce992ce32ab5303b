"""Helpers for the reliability tests: backlogs, `mailbot` processes, ledger invariants.

The fault-injection, two-worker and hostile-input tests share these: a
realistic mixed backlog built cheaply (PDFs made once, reused under many
senders), a runner for ``mailbot`` subprocesses with ``MAILBOT_FAULT`` and
resource limits, and ``ledger_figures`` which checks the "never lose a
candidature, never spam anyone" invariants and returns the counts.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from mailbot.config import load_config
from storage.db import session_scope
from storage.models import Dossier, Message, Outbox, Sighting
from tests import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import as_bytes, make_mail

NB, DB = "n.bataillon", "d.berteloot"
ADDRESS = {NB: "n.bataillon@ville-bethune.fr", DB: "d.berteloot@ville-bethune.fr"}
KEYWORD = "$Mailbot-Filed"
MAILBOT = Path(sys.executable).parent / "mailbot"
REFERENCE = re.compile(r"^BSC-(\d{4})-(\d{4})$")


@cache
def rules() -> Any:
    return load_config(SHIPPED_CONFIG, environ={}).rules


@cache
def dossier_pdf() -> bytes:
    return corpus.form_pdf(rules(), corpus.POTAGER)


@cache
def letter_pdf() -> bytes:
    return corpus.letter_pdf(corpus.POTAGER)


@dataclass(frozen=True)
class Item:
    """One distinct message of a backlog and where it is delivered."""

    kind: str  # "candidature" (with_pdfs or not), "auto_reply", "newsletter"
    raw: bytes
    message_id: str
    sender: str
    mailboxes: tuple[str, ...]
    with_pdfs: bool = False


@dataclass
class Backlog:
    items: list[Item] = field(default_factory=list)

    @property
    def candidatures(self) -> list[Item]:
        return [i for i in self.items if i.kind == "candidature"]

    @property
    def robots(self) -> list[Item]:
        return [i for i in self.items if i.kind != "candidature"]

    @property
    def server_messages(self) -> int:
        return sum(len(i.mailboxes) for i in self.items)

    def deliver(self, dovecot) -> None:
        """Write the backlog into the maildirs (fast), in list order per mailbox."""
        for user in (NB, DB):
            dovecot.fill_maildir(user, [i.raw for i in self.items if user in i.mailboxes])


def candidature(
    n: int, *, tag: str = "c", with_pdfs: bool = False, mailboxes: tuple[str, ...] = (NB,)
) -> Item:
    sender_addr = f"porteur.{tag}{n}@asso{n % 7}.example.org"
    attachments: list[tuple[str, bytes, str]]
    if with_pdfs:
        attachments = [
            ("dossier_intention.pdf", dossier_pdf(), "application/pdf"),
            ("courrier_maire.pdf", letter_pdf(), "application/pdf"),
        ]
    else:
        attachments = [
            ("dossier_intention.txt", f"Intitule de l'action : Projet {n}".encode(), "text/plain")
        ]
    message = make_mail(
        subject=f"Candidature au label Béthune Smart City – projet {tag}{n}",
        sender=f"Porteur {tag.upper()}{n} <{sender_addr}>",
        to=tuple(ADDRESS[m] for m in mailboxes),
        body=(
            "Bonjour,\n\nVeuillez trouver ci-joint notre dossier d'intention pour le label "
            "Béthune Smart City ainsi que le courrier adressé à Monsieur le Maire.\n\n"
            f"Cordialement,\nPorteur {n}"
        ),
        attachments=attachments,
    )
    return Item(
        "candidature",
        as_bytes(message),
        message["Message-ID"],
        sender_addr,
        mailboxes,
        with_pdfs,
    )


_ROBOT_HEADERS: list[tuple[str, dict[str, str]]] = [
    ("Alice <alice{n}@example.org>", {"Auto-Submitted": "auto-replied"}),
    ("MAILER-DAEMON@mx{n}.example.org", {"Return-Path": "<>"}),
    ("noreply{n}@example.com", {}),
    ("Bob <bob{n}@example.org>", {"X-Autoreply": "yes"}),
    ("Carl <carl{n}@example.org>", {"X-Auto-Response-Suppress": "All", "Precedence": "junk"}),
]


def auto_reply(n: int, *, mailboxes: tuple[str, ...] = (NB,)) -> Item:
    sender, headers = _ROBOT_HEADERS[n % len(_ROBOT_HEADERS)]
    sender = sender.format(n=n)
    message = make_mail(
        subject=f"Réponse automatique : absent jusqu'au {n % 28 + 1} (label Smart City)",
        sender=sender,
        to=tuple(ADDRESS[m] for m in mailboxes),
        body="Je suis absent. Votre message concernant la candidature sera lu à mon retour.",
        headers=headers,
    )
    address = sender.rpartition("<")[2].rstrip(">")
    return Item("auto_reply", as_bytes(message), message["Message-ID"], address, mailboxes)


def newsletter(n: int, *, mailboxes: tuple[str, ...] = (NB,)) -> Item:
    sender = f"news{n}@lettres.example.net"
    message = make_mail(
        subject=f"La lettre d'information n°{n} : villes intelligentes",
        sender=f"Info Région <{sender}>",
        to=tuple(ADDRESS[m] for m in mailboxes),
        body="Découvrez nos actualités sur les villes intelligentes et les labels.",
        headers={"List-Id": f"<lettre{n}.example.net>", "Precedence": "bulk"},
    )
    return Item("newsletter", as_bytes(message), message["Message-ID"], sender, mailboxes)


def mixed_backlog(
    rng,
    *,
    candidatures: int,
    with_pdfs: int,
    to_both: int,
    auto_replies: int,
    newsletters: int,
    tag: str = "c",
) -> Backlog:
    """A shuffled backlog; ``to_both`` candidatures are delivered to both mailboxes."""
    items: list[Item] = []
    pdf_numbers = set(rng.sample(range(candidatures), with_pdfs))
    both_numbers = set(rng.sample(range(candidatures), to_both))
    for n in range(candidatures):
        boxes = (NB, DB) if n in both_numbers else (rng.choice((NB, DB)),)
        items.append(candidature(n, tag=tag, with_pdfs=n in pdf_numbers, mailboxes=boxes))
    for n in range(auto_replies):
        items.append(auto_reply(n, mailboxes=(rng.choice((NB, DB)),)))
    for n in range(newsletters):
        items.append(newsletter(n, mailboxes=(rng.choice((NB, DB)),)))
    rng.shuffle(items)
    return Backlog(items)


# -- processes -----------------------------------------------------------------------------


def service_process_env(service_env: dict[str, str], smtp_server=None, **extra: str) -> dict:
    """The environment of a `mailbot` subprocess: the test's servers, generous reply caps."""
    env = dict(os.environ)
    env.update(service_env)
    env.pop("MAILBOT_FAULT", None)
    env["MAILBOT_REPLIES__GLOBAL_HOURLY_CAP"] = "100000"
    if smtp_server is not None:
        env.update(
            {
                "MAILBOT_SMTP__HOST": smtp_server.host,
                "MAILBOT_SMTP__PORT": str(smtp_server.port),
                "MAILBOT_SMTP__SECURITY": "none",
                "MAILBOT_SMTP__USERNAME": "",
            }
        )
    env.update(extra)
    return env


def run_mailbot(
    env: dict[str, str],
    *args: str,
    fault: str | None = None,
    timeout: float = 300,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    run_env = dict(env)
    if fault:
        run_env["MAILBOT_FAULT"] = fault
    return subprocess.run(
        [str(MAILBOT), *args],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- the ledger ------------------------------------------------------------------------------


def rows(engine: Engine, model) -> list:
    with session_scope(engine) as session:
        return list(session.exec(select(model)).all())


def count(engine: Engine, model) -> int:
    return len(rows(engine, model))


@dataclass
class Figures:
    messages: int = 0
    sightings: int = 0
    dossiers: int = 0
    lost: int = 0
    duplicate_filings: int = 0
    duplicate_replies: int = 0
    replies_to_robots: int = 0
    replies_delivered: int = 0
    unflagged: int = 0

    def line(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def ledger_figures(
    engine: Engine,
    items: Iterable[Item],
    captured: list | None,
    *,
    flags: dict[str, dict[int, frozenset[str]]] | None = None,
) -> Figures:
    """Compare the ledger (and the captured replies) with what was delivered.

    Counts, rather than asserts, so that callers can print the figures then
    assert each is what it must be.
    """
    items = list(items)
    messages = rows(engine, Message)
    sightings = rows(engine, Sighting)
    dossiers = rows(engine, Dossier)
    fig = Figures(len(messages), len(sightings), len(dossiers))

    by_id = Counter(m.message_id for m in messages)
    for item in items:
        if by_id[item.message_id] == 0:
            fig.lost += 1
        fig.duplicate_filings += max(0, by_id[item.message_id] - 1)
    # Sightings: one per (mailbox, uid) delivery, never two for the same place.
    places = Counter((s.mailbox, s.folder, s.uidvalidity, s.uid) for s in sightings)
    fig.duplicate_filings += sum(n - 1 for n in places.values() if n > 1)
    # Dossiers: one per candidature sender.
    per_sender = Counter(d.sender for d in dossiers)
    fig.duplicate_filings += sum(n - 1 for n in per_sender.values() if n > 1)
    expected_senders = {i.sender.lower() for i in items if i.kind == "candidature"}
    fig.lost += len(expected_senders - set(per_sender))

    if captured is not None:
        recipients = Counter(rcpt.lower() for c in captured for rcpt in c.rcpt_tos)
        fig.replies_delivered = sum(recipients.values())
        fig.duplicate_replies = sum(n - 1 for n in recipients.values() if n > 1)
        robots = {i.sender.lower() for i in items if i.kind != "candidature"}
        fig.replies_to_robots = sum(n for r, n in recipients.items() if r in robots)
        fig.lost += len(expected_senders - set(recipients))

    if flags is not None:
        filed_places = {
            (s.mailbox, s.uid)
            for s in sightings
            for m in messages
            if m.id == s.message_pk and m.status in ("filed", "needs_review", "failed")
        }
        fig.unflagged = sum(
            1 for mailbox, uid in filed_places if KEYWORD not in flags[mailbox].get(uid, ())
        )
    return fig


def references_are_consecutive(engine: Engine) -> list[str]:
    """The dossier references, checked unique and numbered 1..N within each year."""
    references = sorted(d.reference for d in rows(engine, Dossier))
    assert len(set(references)) == len(references), "a reference was given twice"
    by_year: dict[str, list[int]] = {}
    for reference in references:
        match = REFERENCE.match(reference)
        assert match, reference
        by_year.setdefault(match.group(1), []).append(int(match.group(2)))
    for year, numbers in by_year.items():
        assert numbers == list(range(1, len(numbers) + 1)), (year, numbers)
    return references


def outbox_by_status(engine: Engine) -> Counter:
    return Counter(o.status for o in rows(engine, Outbox))


def this_year() -> int:
    return dt.datetime.now().year
