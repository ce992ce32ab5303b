"""Shared set-up of the service benchmarks: real servers, a temp config, fresh databases.

Everything runs on loopback, in a temp dir removed at the end:

- Dovecot from ``tests/fixtures/dovecot.py`` (``DovecotServer``, as root it drops
  to the ``dovecot`` user), users ``n.bataillon`` and ``d.berteloot``;
- aiosmtpd from ``tests/fixtures/smtp.py`` (``SMTPTestServer``), which here
  also stamps the arrival time of each message;
- a copy of ``config/`` pointed at both through ``MAILBOT_*`` environment
  overrides (as ``tests/fixtures/config.py`` does), and one fresh SQLite
  database and blob store per ``Stage`` (``stage()``), so that no figure
  depends on what an earlier one left.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import email.utils
import itertools
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailbot.app import App
from mailbot.config import load_config
from tests.fixtures.config import SHIPPED_CONFIG, use_test_authentication
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import CapturedMessage, SMTPTestServer

NB, DB = "n.bataillon", "d.berteloot"
REPO_ROOT = Path(__file__).resolve().parents[1]
MAILBOT = REPO_ROOT / ".venv" / "bin" / "mailbot"

_ids = itertools.count(1)


class StampingSMTPServer(SMTPTestServer):
    """The test SMTP server, also recording when each message arrived (monotonic clock)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[float] = []

    def _record_message(self, captured: CapturedMessage) -> None:
        with self._cond:
            self.arrivals.append(time.monotonic())
        super()._record_message(captured)


@dataclass
class Servers:
    dovecot: DovecotServer
    smtp: StampingSMTPServer
    root: Path


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """Dovecot + SMTP + a temp dir, all gone at the end."""
    root = Path(tempfile.mkdtemp(prefix="mailbot-bench-"))
    dovecot = DovecotServer(tls=False)
    smtp = StampingSMTPServer()
    try:
        dovecot.start()
        smtp.start()
        yield Servers(dovecot, smtp, root)
    finally:
        smtp.stop()
        dovecot.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Stage:
    """One config dir + database + blob store, its environment, and an App over it."""

    env: dict[str, str]
    root: Path
    app: App
    extra: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        self.app.close()


def stage_env(srv: Servers, root: Path, **settings: str) -> dict[str, str]:
    """MAILBOT_* overrides pointing a copy of the shipped config at the bench servers."""
    config = root / "config"
    if not config.exists():
        shutil.copytree(SHIPPED_CONFIG, config)
        use_test_authentication(config)
    env = {
        "MAILBOT_CONFIG": str(config),
        "MAILBOT_DATABASE__URL": f"sqlite:///{root / 'var' / 'mailbot.sqlite3'}",
        "MAILBOT_STORAGE__BLOB_DIR": str(root / "var" / "blobs"),
        "MAILBOT_IMAP_PASSWORD_NBATAILLON": srv.dovecot.users[NB],
        "MAILBOT_IMAP_PASSWORD_DBERTELOOT": srv.dovecot.users[DB],
        "MAILBOT_SMTP_PASSWORD": "secret-smtp",
        "MAILBOT_SMTP__HOST": srv.smtp.host,
        "MAILBOT_SMTP__PORT": str(srv.smtp.port),
        "MAILBOT_SMTP__SECURITY": "none",
        "MAILBOT_SMTP__USERNAME": "",
        "MAILBOT_SERVICE__HEARTBEAT_FILE": str(root / "var" / "heartbeat"),
        "MAILBOT_SERVICE__LOG_LEVEL": "WARNING",
        # Far away: each benchmark says when it wants mail read.
        "MAILBOT_SCHEDULE__POLL_INTERVAL_SECONDS": "3600",
        "MAILBOT_SCHEDULE__SEND_INTERVAL_SECONDS": "3600",
        "MAILBOT_DIGEST__AT": "23:59",
        # A bench sends hundreds of replies: the anti-flood caps are not what we measure.
        "MAILBOT_REPLIES__GLOBAL_HOURLY_CAP": "100000",
        "MAILBOT_REPLIES__GLOBAL_DAILY_CAP": "100000",
        "MAILBOT_REPLIES__PER_DOMAIN_DAILY_CAP": "100000",
    }
    for index, user in enumerate((NB, DB)):
        env[f"MAILBOT_MAILBOXES__{index}__HOST"] = srv.dovecot.host
        env[f"MAILBOT_MAILBOXES__{index}__PORT"] = str(srv.dovecot.port)
        env[f"MAILBOT_MAILBOXES__{index}__SECURITY"] = "none"
        env[f"MAILBOT_MAILBOXES__{index}__USERNAME"] = user
        env[f"MAILBOT_MAILBOXES__{index}__TIMEOUT_SECONDS"] = "120"
    env.update({f"MAILBOT_{k.upper()}": v for k, v in settings.items()})
    return env


def stage(srv: Servers, name: str, **settings: str) -> Stage:
    """A fresh database and blob store (under ``srv.root/name``) and an App over them."""
    root = srv.root / name
    root.mkdir(parents=True, exist_ok=True)
    env = stage_env(srv, root, **settings)
    # Passwords are read from os.environ (``secret()``): they are the same for every stage.
    for key, value in env.items():
        if key.startswith(("MAILBOT_IMAP_PASSWORD", "MAILBOT_SMTP_PASSWORD")):
            os.environ[key] = value
    config = load_config(env["MAILBOT_CONFIG"], environ={**os.environ, **env})
    app = App(env["MAILBOT_CONFIG"], _config=config)
    return Stage(env, root, app)


def process_env(st: Stage) -> dict[str, str]:
    """Environment for a ``mailbot`` subprocess over ``st``."""
    env = dict(os.environ)
    env.update(st.env)
    return env


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mailbot", "storage", "parsers", "apscheduler", "mail.log"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- messages -----------------------------------------------------------------------------


def message_id(tag: str) -> str:
    return f"<bench.{tag}.{next(_ids)}.{os.getpid()}@example.org>"


_NEWSLETTER_HTML = (
    "<html><body><h1>La lettre d'information n°{i}</h1>"
    + "<p>Découvrez les actualités de la semaine, les rendez-vous du territoire et "
    "les appels à projets de la région Hauts-de-France.</p>" * 12 + "</body></html>"
)


def everyday_messages(count: int, *, date: dt.datetime | None = None) -> list[bytes]:
    """``count`` raw messages that are NOT candidatures, like a city mailbox's usual mail.

    Three kinds in turn: a newsletter (multipart/alternative, List-Id), a colleague's
    plain-text mail, a meeting reply; 1.5 to 9 KB each, unique Message-IDs, and
    each its own Date (47 s before the previous one, from ``date``, now by
    default: 20,000 messages span 11 days), as in a real mailbox, so that no
    reading of a Date line is measured as if every message had the same.
    """
    start = date or dt.datetime.now(dt.UTC)
    out = []
    for i in range(count):
        mid = message_id("everyday")
        when = email.utils.format_datetime(start - dt.timedelta(seconds=47 * i))
        kind = i % 3
        if kind == 0:
            boundary = f"=-bench-{i}"
            text = _NEWSLETTER_HTML.format(i=i).replace("<p>", "\r\n").replace("</p>", "")
            raw = (
                f"From: Info Région <news@region.example.net>\r\n"
                f"To: n.bataillon@ville-bethune.fr\r\nSubject: La lettre d'information n°{i}\r\n"
                f"Date: {when}\r\nMessage-ID: {mid}\r\nList-Id: <news.region.example.net>\r\n"
                "Precedence: bulk\r\nMIME-Version: 1.0\r\n"
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
                f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{_NEWSLETTER_HTML.format(i=i)}\r\n"
                f"--{boundary}--\r\n"
            )
        elif kind == 1:
            body = (
                "Bonjour Nicolas,\r\n\r\nPeux-tu me renvoyer le compte rendu de la réunion "
                "du conseil de quartier de mardi ? Il manque la liste des présents.\r\n"
                * 4
                + "\r\nMerci,\r\nSophie\r\n"
            )
            raw = (
                f"From: Sophie Durand <s.durand@ville-bethune.fr>\r\n"
                f"To: n.bataillon@ville-bethune.fr\r\nSubject: Compte rendu réunion {i}\r\n"
                f"Date: {when}\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
            )
        else:
            raw = (
                f"From: Marc Petit <marc.petit@example.com>\r\n"
                f"To: n.bataillon@ville-bethune.fr\r\nSubject: Re: rendez-vous {i}\r\n"
                f"Date: {when}\r\nMessage-ID: {mid}\r\n"
                f"In-Reply-To: <rdv.{i}@ville-bethune.fr>\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
                "Bonjour,\r\n\r\nJeudi 14 h me convient. À jeudi.\r\n\r\nMarc Petit\r\n"
                "> Le mardi, vous avez écrit :\r\n> Seriez-vous disponible jeudi ?\r\n"
            )
        out.append(raw.encode())
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Figure:
    """One line of the table."""

    bench: str
    what: str
    baseline: str
    measured: str
    ratio: str
    goal: str
    met: bool | None

    def row(self) -> list[str]:
        verdict = {True: "met", False: "NOT met", None: "-"}[self.met]
        return [self.bench, self.what, self.baseline, self.measured, self.ratio, self.goal, verdict]


def print_table(figures: list[Figure]) -> None:
    header = ["bench", "what", "baseline", "mailbot", "ratio", "goal", "verdict"]
    rows = [header] + [f.row() for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def main(run: Callable[..., list[Figure]], doc: str, *, default_count: int | None = None) -> None:
    """Command line of one bench: ``--quick`` (and ``--count`` where it has a size)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    if default_count is not None:
        parser.add_argument("--count", type=int, default=default_count)
    args = parser.parse_args()
    quiet_logs()
    extra = {"count": args.count} if default_count is not None else {}
    with servers() as srv:
        print_table(run(srv, quick=args.quick, **extra))
