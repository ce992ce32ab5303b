"""Start-up of the command line: ``mailbot --help`` and ``dossiers list --json`` vs bare imports.

Run from the repository root:  .venv/bin/python -m bench.startup [--quick] [--count N]

Each command runs in a fresh process, as a user types it; the median of the
runs (interleaved with their baseline) is compared with:

- help: ``mailbot --help`` vs ``python -c "import typer"`` (Typer itself, and
  the Rich it loads to print help, is the floor). Goal: at most 2×. Printing
  the help loads Typer's own renderer (``typer.rich_utils``: Rich tables,
  Markdown, tracebacks), which ``import typer`` alone does not: on an idle
  machine that renderer is most of the difference.
- list: ``mailbot dossiers list --json`` on a SQLite database of ``count``
  dossiers (default 1,000, built fast through the repository functions as in
  ``bench.web``) vs ``python -c "import sqlmodel"`` plus the bare ``SELECT``
  of every dossier, newest first, through a SQLModel session. Goal: at most 1.5×.
  Beyond the baseline, the command pays for loading the config (it compiles
  the reply templates), the schema-revision check (Alembic) and one query per
  dossier for its mailboxes (``views.dossier_summary``).

Needs no mail server: ``run`` takes the harness's servers only to fit
``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def _seconds(command: list[str], *, env: dict[str, str]) -> float:
    """Wall time of one run of ``command`` in a fresh process (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True, timeout=300)
    return time.perf_counter() - started


def _compare(
    *, measured: list[str], baseline: list[str], env: dict[str, str], rounds: int
) -> tuple[float, float]:
    """Medians (seconds) of ``measured`` and ``baseline``, run alternately after one warm-up."""
    _seconds(measured, env=env)
    _seconds(baseline, env=env)
    times: dict[str, list[float]] = {"measured": [], "baseline": []}
    for _round in range(rounds):
        times["measured"].append(_seconds(measured, env=env))
        times["baseline"].append(_seconds(baseline, env=env))
    return median(times["measured"]), median(times["baseline"])


def _figure(*, what: str, measured: float, baseline: float, goal: float) -> Figure:
    ratio = measured / baseline
    return Figure(
        BENCH,
        what,
        f"{baseline * 1000:.0f} ms",
        f"{measured * 1000:.0f} ms",
        f"{ratio:.2f}",
        f"<= {goal}x",
        ratio <= goal,
    )


def run(srv: object = None, *, quick: bool = False, count: int = 1000) -> list[Figure]:
    """Build the database, then time both commands against their baselines."""
    from bench.web import build_database
    from mailbot.app import App
    from tests.fixtures.config import SHIPPED_CONFIG, TEST_SECRETS

    del srv  # no mail server needed
    rounds = 5 if quick else 15
    python = sys.executable
    mailbot = shutil.which("mailbot", path=os.path.dirname(python)) or "mailbot"
    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-startup-"))
    try:
        config_dir = work / "config"
        shutil.copytree(SHIPPED_CONFIG, config_dir)
        database_url = f"sqlite:///{work / 'var' / 'mailbot.sqlite3'}"
        env = {
            **os.environ,
            **TEST_SECRETS,
            "MAILBOT_CONFIG": str(config_dir),
            "MAILBOT_DATABASE__URL": database_url,
            "MAILBOT_STORAGE__BLOB_DIR": str(work / "var" / "blobs"),
        }
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            app = App(str(config_dir))
            try:
                build_database(app, count)
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
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        _figure(
            what=f"mailbot --help vs import typer, median of {rounds}",
            measured=help_s,
            baseline=typer_s,
            goal=HELP_GOAL,
        ),
        _figure(
            what=(
                f"dossiers list --json, {count} dossiers, vs import sqlmodel + bare SELECT, "
                f"median of {rounds}"
            ),
            measured=list_s,
            baseline=bare_s,
            goal=LIST_GOAL,
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
