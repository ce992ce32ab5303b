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
- dossier: ``/dossiers/<REF>``; baseline: the dossier row, then its pieces,
  messages, replies and events (five ``SELECT`` by key).

Interleaved rounds; medians. Goal: each page at most 3× its bare query.
Needs no mail server: ``run`` takes the harness's servers only to fit
``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
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
from storage.models import Message
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
        row = connection.execute("SELECT * FROM dossier WHERE reference = ?", (reference,))
        dossier_id = row.fetchone()[0]
        return [
            connection.execute(
                f"SELECT * FROM {table} WHERE dossier_id = ?", (dossier_id,)
            ).fetchall()
            for table in ("piece", "message", "outbox", "event")
        ]

    return {"list": listing, "search": search, "dossier": dossier}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run(srv: object = None, *, quick: bool = False, count: int = 5000) -> list[Figure]:
    """Build the database, then time each page against its bare query."""
    from starlette.testclient import TestClient

    from mailbot.web.app import create_app

    del srv  # no mail server needed
    rounds = 15 if quick else 40
    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-web-"))
    saved = {}
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
            built = time.perf_counter() - started
            add_staff(app, login=LOGIN, display_name=None, password=PASSWORD, actor="bench")
            reference = references[len(references) // 2]
            pages = {
                "list": "/dossiers",
                "search": f"/dossiers?q={SEARCH_WORD}",
                "dossier": f"/dossiers/{reference}",
            }
            bare = _bare_queries(database, reference)
            with TestClient(create_app(app), follow_redirects=False) as client:
                token = CSRF_RE.search(client.get("/login").text).group(1)
                client.post(
                    "/login", data={"login": LOGIN, "password": PASSWORD, "csrf_token": token}
                )

                def fetch(path: str) -> Callable[[], Any]:
                    def get() -> Any:
                        response = client.get(path)
                        assert response.status_code == 200, (path, response.status_code)
                        return response.text

                    return get

                for name, path in pages.items():  # warm-up: caches, templates
                    fetch(path)()
                    bare[name]()
                page_times: dict[str, list[float]] = {name: [] for name in pages}
                query_times: dict[str, list[float]] = {name: [] for name in pages}
                for _round in range(rounds):
                    for name, path in pages.items():
                        page_times[name].append(_timed(fetch(path)))
                        query_times[name].append(_timed(bare[name]))
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
        page_ms, query_ms = _median_ms(page_times[name]), _median_ms(query_times[name])
        ratio = page_ms / query_ms if query_ms else float("inf")
        figures.append(
            Figure(
                BENCH,
                f"{name} page, {count} dossiers (built in {built:.0f} s), median of {rounds}",
                f"{query_ms:.2f} ms (bare SQL)",
                f"{page_ms:.2f} ms",
                f"{ratio:.1f}",
                f"<= {GOAL:.0f}x",
                ratio <= GOAL,
            )
        )
    return figures


def main() -> None:
    from bench import harness

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--count", type=int, default=5000, help="dossiers in the database")
    args = parser.parse_args()
    harness.quiet_logs()
    harness.print_table(run(quick=args.quick, count=args.count))


if __name__ == "__main__":
    main()
