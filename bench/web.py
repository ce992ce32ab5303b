"""Back-office: the list, a search and a dossier page with 5,000 dossiers vs the bare SQL.

Run from the repository root:  .venv/bin/python -m bench.web [--quick] [--count N]

A fresh SQLite database gets ``count`` dossiers (default 5,000) built fast
through the repository functions, not the pipeline: each dossier with its
message, the message's sighting in one of the two mailboxes, two pieces and
its ``dossier.created`` event. Each page is then fetched through Starlette's
``TestClient`` with a logged-in session (routing, session, the queries,
Jinja rendering, security headers), and compared with the bare SQL behind it,
run with ``sqlite3`` on the same file:

- list: ``/dossiers``, first page (50 rows), newest first; baseline: the
  page query (``ORDER BY received_at DESC LIMIT 50``);
- search: ``/dossiers?q=…`` on a word of some titles; baseline: the same
  ``LIKE`` over reference, title, structure and sender, first 50 rows;
- dossier: ``/dossiers/<REF>`` of a realistic dossier (three messages seen
  in two mailboxes, four pieces, two replies, eight events, the evidence of
  every field); baseline: the six ``SELECT`` by key that fetch what the page
  shows (the dossier row with its fields and evidence, its pieces, messages,
  mailboxes, replies and history), same columns, same ``sqlite3`` driver.

Each page is timed four ways: through ``TestClient`` (an HTTP client in
this thread, the app in a portal thread: the figures before 2026-12-02 were
taken this way), over HTTP from ``mailbot web`` (uvicorn) started in a child
process (one keep-alive connection, as a browser keeps one), by calling
the ASGI application directly on one event loop kept for the run (every
middleware, the session cookie, the worker thread of the handler when it
has one; no HTTP client), and that same call in CPU
time of the process against the bare SQL's (on a loaded machine a thread
hop waits for a time slice that wall-clock time counts and CPU time does
not). The direct calls keep the cookies the pages set, as a browser does.
The dossier page is viewed again and again, so it is served from its kept
body (``mailbot.web.page_cache``: one query checks the login and the
dossier's version); its time is then split (CPU time of each part run alone
in this thread; skipped with ``--no-breakdown``): that check, the page
around the kept body, and what a change of the dossier costs on the next
view (reading, wording, rendering the body).

Interleaved rounds; medians. Goal: each page at most 3× its bare query.
Needs no mail server: ``run`` takes the harness's servers only to fit
``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import Figure
from mailbot.app import App
from mailbot.staff import add_staff
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Message, Outbox
from tests.fixtures.config import SHIPPED_CONFIG, TEST_SECRETS

BENCH = "6 web"
GOAL = 3.0
LOGIN, PASSWORD = "bench", "un mot de passe de banc d'essai"
SEARCH_WORD = "perroy"  # in the title of one dossier in seven
THEMATIQUES = ("habitat_environnement", "mobilite_transports", "loisirs_culture")
STATUSES = ("incomplete", "complete", "needs_review", "accepted")
MAILBOXES = ("n.bataillon", "d.berteloot")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def build_database(app: App, count: int) -> list[str]:
    """``count`` dossiers with message, sighting, pieces and event; returns their references."""
    references = []
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    places = ("Perroy", "Mont-Liébaut", "Catorive", "Quartier de la gare", "Centre", "Rotois")
    with session_scope(app.engine) as session:
        for n in range(count):
            received = start + timedelta(minutes=97 * n)
            place = places[n % len(places)] if n % 7 else "Perroy"
            sender = f"porteur{n}@example.org"
            dossier = repo.create_dossier(
                session=session,
                year=2026,
                sender=sender,
                sender_name=f"Porteur {n}",
                fields={
                    "intitule": f"Projet n° {n} du quartier {place}",
                    "porteur_structure": f"Association {n}",
                    "thematique": THEMATIQUES[n % len(THEMATIQUES)],
                    "criteres": ["collaborative", "durable"],
                    "budget": 1000 + n,
                },
                missing=[] if n % 3 else ["letter"],
                status=STATUSES[n % len(STATUSES)],
                received_at=received,
                actor="system",
            )
            message, _created = repo.add_message(
                session=session,
                message=Message(
                    dedup_key=f"bench-{n}",
                    sha256=f"{n:064x}",
                    size=48_000,
                    sender=sender,
                    subject=f"Candidature {n}",
                    verdict="candidature",
                    status="filed",
                    dossier_id=dossier.id,
                    first_seen_at=received,
                ),
            )
            repo.add_sighting(
                session=session,
                message=message,
                mailbox=MAILBOXES[n % 2],
                folder="INBOX",
                uidvalidity=1,
                uid=n + 1,
                seen_at=received,
            )
            for index, (name, role) in enumerate(
                (("dossier.pdf", "dossier"), ("courrier.pdf", "letter"))
            ):
                repo.add_piece(
                    session=session,
                    dossier=dossier,
                    message=message,
                    blob_sha256=f"{2 * n + index + 1:064x}",
                    filename=name,
                    content_type="application/pdf",
                    size=48_000,
                    role=role,
                )
            references.append(dossier.reference)
    return references


def enrich_dossier(app: App, reference: str) -> None:
    """Give ``reference`` what a dossier has after a few weeks: follow-ups, replies, history."""
    rules = app.config.rules
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        assert dossier is not None
        dossier.evidence = {
            key: {
                "source": f"line '{rule.label} : …' on page 1 of dossier.pdf",
                "raw": f"valeur lue pour {rule.label}",
                "layer": "text",
                "confidence": 0.9 if key != "criteres" else 0.4,
                "page": 1,
                "doubt": None if key != "criteres" else "several boxes read as ticked",
                "uncertain": key == "criteres",
            }
            for key, rule in rules.fields.items()
        }
        session.add(dossier)
        sender = dossier.sender
        for n in (1, 2):
            message, _created = repo.add_message(
                session=session,
                message=Message(
                    dedup_key=f"bench-follow-up-{n}",
                    sha256=f"{n:064x}".replace("0", "f", 1),
                    size=120_000,
                    sender=sender,
                    subject=f"Re: {reference} pièces complémentaires {n}",
                    verdict="follow_up",
                    status="filed",
                    dossier_id=dossier.id,
                    warnings=["photo.jpg: unreadable image"] if n == 2 else [],
                ),
            )
            repo.add_sighting(
                session=session,
                message=message,
                mailbox=MAILBOXES[n % 2],
                folder="INBOX",
                uidvalidity=1,
                uid=1_000_000 + n,
                seen_at=datetime.now(UTC),
            )
            repo.add_piece(
                session=session,
                dossier=dossier,
                message=message,
                blob_sha256=f"{n:064x}".replace("0", "e", 1),
                filename=f"photo-{n}.jpg",
                content_type="image/jpeg",
                size=800_000,
                role="supporting",
            )
            repo.record_event(
                session=session,
                actor="rule:dossier_reference",
                action="dossier.follow_up",
                dossier=dossier,
                message=message,
                details={"missing": [], "status": "complete"},
            )
        for n, (kind, status, reason) in enumerate(
            (("acknowledgement", "sent", None), ("completed", "suppressed", "sender_daily_cap"))
        ):
            session.add(
                Outbox(
                    dedup_key=f"bench-reply-{n}",
                    kind=kind,
                    dossier_id=dossier.id,
                    mailbox=MAILBOXES[0],
                    from_addr="n.bataillon@ville-bethune.fr",
                    to_addr=sender,
                    subject=f"Votre dossier {reference}",
                    message_id=f"<mailbot.{reference}.{kind}.{n}@ville-bethune.fr>",
                    raw=b"x" * 6000,  # a reply as sent: the page never shows it
                    status=status,
                    suppressed_reason=reason,
                    suppressed_details={"count": 3, "cap": 3} if reason else None,
                )
            )
            repo.record_event(
                session=session,
                actor="system",
                action="reply.queued" if status == "sent" else "reply.suppressed",
                dossier=dossier,
                details={"kind": kind},
            )
        for action, details in (
            ("dossier.field_corrected", {"field": "budget", "old": 1000, "new": 12500}),
            ("dossier.status_changed", {"old": "incomplete", "new": "complete"}),
            ("piece.viewed", {"piece": 1, "filename": "dossier.pdf"}),
        ):
            repo.record_event(
                session=session,
                actor="staff:bench",
                action=action,
                dossier=dossier,
                details={**details, "note": "vu avec le porteur"},
            )


def _bare_queries(database: Path, reference: str) -> dict[str, Callable[[], Any]]:
    """The SQL behind each page, run with ``sqlite3`` alone (rows fetched, nothing rendered)."""
    connection = sqlite3.connect(database, check_same_thread=False)
    pattern = f"%{SEARCH_WORD}%"

    def listing() -> Any:
        return connection.execute(
            "SELECT * FROM dossier ORDER BY received_at DESC, id DESC LIMIT 50"
        ).fetchall()

    def search() -> Any:
        return connection.execute(
            "SELECT * FROM dossier WHERE lower(reference) LIKE ?"
            " OR lower(json_extract(fields, '$.intitule')) LIKE ?"
            " OR lower(json_extract(fields, '$.porteur_structure')) LIKE ?"
            " OR lower(sender) LIKE ? OR lower(sender_name) LIKE ?"
            " ORDER BY received_at DESC, id DESC LIMIT 50",
            (pattern,) * 5,
        ).fetchall()

    def dossier() -> Any:
        # The columns the page shows (mailbot/web/dossier_page.py reads the same).
        row = connection.execute(
            "SELECT id, reference, status, fields, evidence, missing, sender, sender_name,"
            " received_at, updated_at, legal_hold, status_note FROM dossier WHERE reference = ?",
            (reference,),
        ).fetchone()
        key = (row[0],)
        return [
            row,
            connection.execute(
                "SELECT id, filename, role, size, content_type, warnings FROM piece"
                " WHERE dossier_id = ? ORDER BY id",
                key,
            ).fetchall(),
            connection.execute(
                "SELECT id, first_seen_at, sender, subject, warnings, verdict, status"
                " FROM message WHERE dossier_id = ? ORDER BY id",
                key,
            ).fetchall(),
            connection.execute(
                "SELECT DISTINCT sighting.mailbox FROM sighting"
                " JOIN message ON message.id = sighting.message_pk"
                " WHERE message.dossier_id = ? ORDER BY sighting.mailbox",
                key,
            ).fetchall(),
            connection.execute(
                "SELECT kind, to_addr, subject, status, created_at, sent_at, suppressed_reason,"
                " suppressed_details, failure_reason, attempts, last_error FROM outbox"
                " WHERE dossier_id = ? ORDER BY id",
                key,
            ).fetchall(),
            connection.execute(
                "SELECT at, actor, action, details FROM event WHERE dossier_id = ? ORDER BY id",
                key,
            ).fetchall(),
        ]

    return {"list": listing, "search": search, "dossier": dossier}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


class _Direct:
    """GET pages by calling the ASGI application on an event loop (no HTTP client)."""

    def __init__(self, web_app: Any, cookies: dict[str, str]) -> None:
        self.app = web_app
        self.cookies = dict(cookies)
        self.cookie = "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()
        self.loop = asyncio.new_event_loop()

    def get(self, path: str) -> bytes:
        target, _mark, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": target,
            "raw_path": target.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"cookie", self.cookie)],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.loop.run_until_complete(self.app(scope, receive, send))
        assert sent[0]["status"] == 200, (path, sent[0]["status"])
        # Keep the cookie the page sets, as a browser does (else a session
        # without its CSRF token would get a new one, and a new cookie, on
        # every page: a cost no browser makes the server pay).
        for name, value in sent[0].get("headers", []):
            if name.lower() == b"set-cookie":
                pair = value.split(b";", 1)[0].decode()
                key, _eq, cookie = pair.partition("=")
                self.cookies[key] = cookie
                self.cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode()
        return b"".join(m.get("body", b"") for m in sent[1:])

    def close(self) -> None:
        self.loop.close()


class _Http:
    """GET pages from ``mailbot web`` (uvicorn) in a child process, on one keep-alive connection.

    What a browser on the same machine would see: HTTP parsing, the server's
    event loop, everything the app does. Wall-clock time only: the server's
    CPU is in another process.
    """

    def __init__(self, config_dir: Path, cookies: dict[str, str]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = ["--config", str(config_dir), "web", "--host", "127.0.0.1", "--port", str(port)]
        code = f"import sys; from mailbot.cli import main; sys.exit(main({argv!r}))"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("mailbot web did not start") from None
                time.sleep(0.1)
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies = dict(cookies)

    def get(self, path: str) -> bytes:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.connection.request("GET", path, headers={"Cookie": cookie})
        response = self.connection.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status)
        for value in response.headers.get_all("set-cookie") or []:
            key, _eq, cookie = value.split(";", 1)[0].partition("=")
            self.cookies[key] = cookie
        return body

    def close(self) -> None:
        if getattr(self, "connection", None) is not None:
            self.connection.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# A pause before each timed call (not timed itself): a page that ran in a
# worker thread finishes there (releasing its connection, freeing its
# objects) after its response is sent. Without the pause, that tail ran
# during the next call and was counted for it (process CPU time of a
# dossier page rose from about 0.25 to 0.7 ms when it came after a list
# page). The tail is counted for no one: about 0.4 ms after a list page,
# 1 % of its CPU time. (Counting it by pausing inside the measurement does
# not work: an idle pause itself costs the process about 0.2 ms of CPU.)
SETTLE = 0.003


def _timed_alone(call: Callable[[], Any]) -> float:
    time.sleep(SETTLE)  # the previous call's tail, before this one starts
    return _timed(call)


_FLOOR_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route


async def page(request):
    return HTMLResponse("x" * 20000)


app = Starlette(routes=[Route("/", page)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning")
"""


def _http_floor(rounds: int) -> float:
    """Median wall time of a trivial 20 kB page from uvicorn in a child process (keep-alive)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", _FLOOR_APP, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the floor server did not start") from None
                time.sleep(0.1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def get() -> None:
            connection.request("GET", "/")
            connection.getresponse().read()

        for _ in range(10):
            get()
        samples = [_timed_alone(get) for _ in range(rounds * 3)]
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return _median_ms(samples)


def _thread_cpu(call: Callable[[], Any]) -> float:
    """CPU time of ``call`` in this thread only (no pause: other threads' tails do not count)."""
    started = time.thread_time()
    call()
    return time.thread_time() - started


def _cpu(call: Callable[[], Any]) -> float:
    """Process CPU time of ``call`` (every thread), the previous call's tail settled."""
    time.sleep(SETTLE)
    started = time.process_time()
    call()
    return time.process_time() - started


def _cpu_ms(call: Callable[[], Any], repeat: int) -> float:
    """CPU time of ``call`` run in this thread, median of ``repeat`` (load on other cores aside)."""
    samples = []
    for _ in range(repeat):
        started = time.thread_time()
        call()
        samples.append(time.thread_time() - started)
    return _median_ms(samples)


def _breakdown(app: App, web_app: Any, reference: str, bare: Callable[[], Any]) -> list[Figure]:
    """The dossier page's parts, each run alone in this thread: where its time goes."""
    from starlette.requests import Request

    from mailbot.web import pages
    from mailbot.web.dossier_page import read_dossier_page

    office = web_app.state.office
    rules = app.config.rules
    detail = read_dossier_page(app.engine, reference=reference)
    assert detail is not None
    body = pages._dossier_body(office, detail)

    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [],
            "session": {"login": LOGIN, "csrf_token": "x" * 43},
            "app": web_app,
            "state": {"login": LOGIN},
        }
    )
    parts = {
        "bare SQL (sqlite3)": bare,
        "check: login enabled and dossier version, one query": lambda: office.pages.check(
            login=LOGIN, reference=reference
        ),
        "kept page: its shell and body, with CSRF token and login": lambda: pages._dossier_response(
            request, reference, body
        ),
        "read (on a change): 6 SELECTs, JSON and times decoded": lambda: read_dossier_page(
            app.engine, reference=reference
        ),
        "wording (on a change): values and evidence in French": lambda: pages.dossier_fields(
            rules, detail
        ),
        "render (on a change): the body, Jinja2, autoescape": lambda: pages._dossier_body(
            office, read_dossier_page(app.engine, reference=reference)
        ),
    }
    measured = {name: _cpu_ms(call, 200) for name, call in parts.items()}
    base = measured["bare SQL (sqlite3)"]
    return [
        Figure(
            BENCH,
            f"(info) dossier page, CPU of one part alone: {name}",
            f"{base:.3f} ms (bare SQL)",
            f"{ms:.3f} ms",
            f"{ms / base:.1f}",
            "-",
            None,
        )
        for name, ms in measured.items()
        if name != "bare SQL (sqlite3)"
    ]


def run(
    srv: object = None, *, quick: bool = False, count: int = 5000, breakdown: bool = True
) -> list[Figure]:
    """Build the database, then time each page against its bare query."""
    from starlette.testclient import TestClient

    from mailbot.web.app import create_app

    del srv  # no mail server needed
    rounds = 15 if quick else 40
    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-web-"))
    saved = {}
    parts: list[Figure] = []
    try:
        config_dir = work / "config"
        shutil.copytree(SHIPPED_CONFIG, config_dir)
        database = work / "var" / "mailbot.sqlite3"
        overrides = {
            **TEST_SECRETS,
            "MAILBOT_DATABASE__URL": f"sqlite:///{database}",
            "MAILBOT_STORAGE__BLOB_DIR": str(work / "var" / "blobs"),
        }
        for name, value in overrides.items():
            saved[name] = os.environ.get(name)
            os.environ[name] = value
        app = App(str(config_dir))
        try:
            started = time.perf_counter()
            references = build_database(app, count)
            reference = references[len(references) // 2]
            enrich_dossier(app, reference)
            built = time.perf_counter() - started
            add_staff(app, login=LOGIN, display_name=None, password=PASSWORD, actor="bench")
            pages = {
                "list": "/dossiers",
                "search": f"/dossiers?q={SEARCH_WORD}",
                "dossier": f"/dossiers/{reference}",
            }
            bare = _bare_queries(database, reference)
            web_app = create_app(app)
            with TestClient(web_app, follow_redirects=False) as client:
                token = CSRF_RE.search(client.get("/login").text).group(1)
                client.post(
                    "/login", data={"login": LOGIN, "password": PASSWORD, "csrf_token": token}
                )
                direct = _Direct(web_app, dict(client.cookies.items()))
                served = _Http(config_dir, dict(client.cookies.items()))

                def fetch(path: str) -> Callable[[], Any]:
                    def get() -> Any:
                        response = client.get(path)
                        assert response.status_code == 200, (path, response.status_code)
                        return response.text

                    return get

                for name, path in pages.items():  # warm-up: caches, templates
                    fetch(path)()
                    direct.get(path)
                    served.get(path)
                    bare[name]()
                http_times: dict[str, list[float]] = {name: [] for name in pages}
                page_times: dict[str, list[float]] = {name: [] for name in pages}
                direct_times: dict[str, list[float]] = {name: [] for name in pages}
                query_times: dict[str, list[float]] = {name: [] for name in pages}
                direct_cpu: dict[str, list[float]] = {name: [] for name in pages}
                query_cpu: dict[str, list[float]] = {name: [] for name in pages}
                thread_cpu: list[float] = []
                thread_query_cpu: list[float] = []
                for _round in range(rounds):
                    for name, path in pages.items():
                        page_times[name].append(_timed_alone(fetch(path)))
                        direct_times[name].append(_timed_alone(lambda path=path: direct.get(path)))
                        http_times[name].append(_timed_alone(lambda path=path: served.get(path)))
                        query_times[name].append(_timed_alone(bare[name]))
                        # CPU time of the whole process (the worker thread
                        # included): what the page costs whatever the load
                        # of the machine, against the same for the bare SQL.
                        direct_cpu[name].append(_cpu(lambda path=path: direct.get(path)))
                        query_cpu[name].append(_cpu(bare[name]))
                        if name == "dossier":  # a kept page runs all in this thread
                            thread_cpu.append(_thread_cpu(lambda path=path: direct.get(path)))
                            thread_query_cpu.append(_thread_cpu(bare[name]))
                direct.close()
                served.close()
                if breakdown:
                    parts = _breakdown(app, web_app, reference, bare["dossier"])
        finally:
            app.close()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(work, ignore_errors=True)
    figures = []
    for name in pages:
        for how, times, baseline in (
            ("ASGI call", direct_times, query_times),
            ("TestClient", page_times, query_times),
            ("HTTP to uvicorn in a child process", http_times, query_times),
            ("CPU time of the ASGI call", direct_cpu, query_cpu),
        ):
            query_ms = _median_ms(baseline[name])
            page_ms = _median_ms(times[name])
            ratio = page_ms / query_ms if query_ms else float("inf")
            figures.append(
                Figure(
                    BENCH,
                    f"{name} page ({how}), {count} dossiers (built in {built:.0f} s), "
                    f"median of {rounds}",
                    f"{query_ms:.2f} ms (bare SQL)",
                    f"{page_ms:.2f} ms",
                    f"{ratio:.1f}",
                    f"<= {GOAL:.0f}x",
                    ratio <= GOAL,
                )
            )
    floor_ms, query_ms = _http_floor(rounds), _median_ms(query_times["dossier"])
    figures.append(
        Figure(
            BENCH,
            "(info) HTTP floor: a trivial 20 kB page from uvicorn in a child process "
            f"(no session, no database), against the dossier's bare SQL, median of {rounds * 3}",
            f"{query_ms:.2f} ms (bare SQL)",
            f"{floor_ms:.2f} ms",
            f"{floor_ms / query_ms:.1f}",
            "-",
            None,
        )
    )
    query_ms, page_ms = _median_ms(thread_query_cpu), _median_ms(thread_cpu)
    figures.append(
        Figure(
            BENCH,
            "(info) dossier page, CPU time of this thread (a kept page is served on the "
            f"event loop, in this thread), median of {rounds}",
            f"{query_ms:.2f} ms (bare SQL)",
            f"{page_ms:.2f} ms",
            f"{page_ms / query_ms:.1f}",
            "-",
            None,
        )
    )
    return figures + parts


def main() -> None:
    from bench import harness

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--count", type=int, default=5000, help="dossiers in the database")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the CPU time of each part of the page"
    )
    args = parser.parse_args()
    harness.quiet_logs()
    harness.print_table(run(quick=args.quick, count=args.count, breakdown=not args.no_breakdown))


if __name__ == "__main__":
    main()
