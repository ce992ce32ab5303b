"""Start-up of the command line: ``mailbot --help`` and ``dossiers list --json`` vs bare imports.

Run from the repository root:  .venv/bin/python -m bench.startup [--quick] [--count N]

Each command runs in a fresh process, as a user types it; the median of the
runs (interleaved with their baseline) is compared with:

- help: ``mailbot --help`` vs ``python -c "import typer"`` (Typer itself is
  the floor). Goal: at most 2×. The help is Click's plain text: Typer's Rich
  renderer (``typer.rich_utils``) alone cost more than ``import typer``.
- list: ``mailbot dossiers list --json`` on a SQLite database of ``count``
  dossiers (default 1,000, built fast through the repository functions as in
  ``bench.web``) vs ``python -c "import sqlmodel"`` plus the bare ``SELECT``
  of every dossier, newest first, through a SQLModel session. Goal: at most 1.5×.
  Beyond the baseline, the command pays for Typer (the invoked command alone is
  converted), the table models, loading and validating the settings (rules are
  validated, with the classifier, only when used; templates only when
  rendered), the schema-revision check (no Alembic at head), the ORM objects,
  one query for the mailboxes of every 500 dossiers, and the JSON. On SQLite it
  imports no PostgreSQL dialect.
- (info) ``mailbot config check`` (every template compiled and rendered) vs
  ``import typer``, and ``mailbot dossiers show REF --json`` vs the list's
  baseline.

Python may write its bytecode caches (``PYTHONDONTWRITEBYTECODE`` is
dropped): the warm-up run of each command writes them, as installing a
package does. Wall time is what the goals are about; each figure is followed by the same
ratio in CPU time (user + system of the child), which other work on a shared
machine disturbs less.

Needs no mail server: ``run`` takes the harness's servers only to fit
``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Figure, median

BENCH = "7 startup"
HELP_GOAL = 2.0
LIST_GOAL = 1.5
BARE_LIST = """\
import sys
from sqlmodel import Session, create_engine, text
engine = create_engine(sys.argv[1])
with Session(engine) as session:
    rows = session.exec(text("SELECT * FROM dossier ORDER BY received_at DESC, id DESC")).all()
"""


@dataclass(frozen=True)
class Timing:
    """Medians, in seconds, of one command's runs."""

    wall: float
    cpu: float


def _seconds(command: list[str], *, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU time of one run of ``command`` in a fresh process (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _compare(
    *, measured: list[str], baseline: list[str], env: dict[str, str], rounds: int
) -> tuple[Timing, Timing]:
    """Medians of ``measured`` and ``baseline``, run alternately after one warm-up."""
    _seconds(measured, env=env)
    _seconds(baseline, env=env)
    runs: dict[str, list[tuple[float, float]]] = {"measured": [], "baseline": []}
    for _round in range(rounds):
        runs["measured"].append(_seconds(measured, env=env))
        runs["baseline"].append(_seconds(baseline, env=env))
    timings = [
        Timing(wall=median([w for w, _c in runs[k]]), cpu=median([c for _w, c in runs[k]]))
        for k in ("measured", "baseline")
    ]
    return timings[0], timings[1]


def _figures(*, what: str, measured: Timing, baseline: Timing, goal: float | None) -> list[Figure]:
    """The wall-time figure (judged against ``goal``), then the same in CPU time (info)."""
    ratio = measured.wall / baseline.wall
    cpu_ratio = measured.cpu / baseline.cpu
    return [
        Figure(
            BENCH,
            what,
            f"{baseline.wall * 1000:.0f} ms",
            f"{measured.wall * 1000:.0f} ms",
            f"{ratio:.2f}",
            f"<= {goal}x" if goal else "-",
            ratio <= goal if goal else None,
        ),
        Figure(
            BENCH,
            "(info) same, CPU time of the process",
            f"{baseline.cpu * 1000:.0f} ms",
            f"{measured.cpu * 1000:.0f} ms",
            f"{cpu_ratio:.2f}",
            "-",
            None,
        ),
    ]


def run(srv: object = None, *, quick: bool = False, count: int = 1000) -> list[Figure]:
    """Build the database, then time both commands against their baselines."""
    from bench.web import build_database
    from mailbot.app import App
    from tests.fixtures.config import SHIPPED_CONFIG, TEST_AUTHENTICATION_ENV, TEST_SECRETS

    del srv  # no mail server needed
    rounds = 5 if quick else 15
    python = sys.executable
    mailbot = shutil.which("mailbot", path=os.path.dirname(python)) or "mailbot"
    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-startup-"))
    try:
        config_dir = work / "config"
        shutil.copytree(SHIPPED_CONFIG, config_dir)
        database_url = f"sqlite:///{work / 'var' / 'mailbot.sqlite3'}"
        # Bytecode written by the warm-up run, as an installed package has it
        # (compiling SQLAlchemy from source at every run would be measured otherwise).
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = {
            **inherited,
            **TEST_SECRETS,
            # `config check` refuses the shipped config without its authserv-id (issue 14).
            **TEST_AUTHENTICATION_ENV,
            "MAILBOT_CONFIG": str(config_dir),
            "MAILBOT_DATABASE__URL": database_url,
            "MAILBOT_STORAGE__BLOB_DIR": str(work / "var" / "blobs"),
        }
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            app = App(str(config_dir))
            try:
                references = build_database(app, count)
            finally:
                app.close()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        help_s, typer_s = _compare(
            measured=[mailbot, "--help"],
            baseline=[python, "-c", "import typer"],
            env=env,
            rounds=rounds,
        )
        list_s, bare_s = _compare(
            measured=[mailbot, "dossiers", "list", "--json"],
            baseline=[python, "-c", BARE_LIST, database_url],
            env=env,
            rounds=rounds,
        )
        check_s, check_typer_s = _compare(
            measured=[mailbot, "config", "check"],
            baseline=[python, "-c", "import typer"],
            env=env,
            rounds=rounds,
        )
        show_s, show_bare_s = _compare(
            measured=[mailbot, "dossiers", "show", references[0], "--json"],
            baseline=[python, "-c", BARE_LIST, database_url],
            env=env,
            rounds=rounds,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        *_figures(
            what=f"mailbot --help vs import typer, median of {rounds}",
            measured=help_s,
            baseline=typer_s,
            goal=HELP_GOAL,
        ),
        *_figures(
            what=(
                f"dossiers list --json, {count} dossiers, vs import sqlmodel + bare SELECT, "
                f"median of {rounds}"
            ),
            measured=list_s,
            baseline=bare_s,
            goal=LIST_GOAL,
        ),
        *_figures(
            what=f"(info) config check vs import typer, median of {rounds}",
            measured=check_s,
            baseline=check_typer_s,
            goal=None,
        ),
        *_figures(
            what=(
                f"(info) dossiers show REF --json vs import sqlmodel + bare SELECT of "
                f"{count}, median of {rounds}"
            ),
            measured=show_s,
            baseline=show_bare_s,
            goal=None,
        ),
    ]


def main() -> None:
    from bench import harness

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--count", type=int, default=1000, help="dossiers in the database")
    args = parser.parse_args()
    harness.quiet_logs()
    harness.print_table(run(quick=args.quick, count=args.count))


if __name__ == "__main__":
    main()
