"""The commands that read mail migrate their database in a child process.

A worker lives for months and keeps what it imports: Alembic, Mako and
Pygments (about 16 MB) would stay in it after one migration at its first
start. ``open_database(url, upgrade_apart=True)`` (used by ``poll`` and
``run``) has a short-lived child migrate instead. These tests run the
opening in a fresh process, on SQLite and PostgreSQL, and look at what that
process imported and at the schema it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from storage.db import head_in_files, head_revision, make_engine, open_database, upgrade_in_child
from storage.errors import MigrationError
from tests.fixtures.candidatures import candidature
from tests.fixtures.database import stored_revisions

REPO = Path(__file__).resolve().parents[1]

# Opens the database of argv[1] (after argv[3], a start time) with
# upgrade_apart=(argv[2] == "apart"); prints the revision reached and
# whether Alembic was imported by this process.
_OPEN = """
import json, sys, time
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
from storage.db import current_revision, open_database, stored_revision
engine = open_database(sys.argv[1], upgrade_apart=sys.argv[2] == "apart")
print(json.dumps({"revision": stored_revision(engine), "alembic": "alembic" in sys.modules}))
engine.dispose()
"""


def _open_in_process(url: str, *, apart: bool, start_at: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _OPEN, url, "apart" if apart else "here", str(start_at)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outcome(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    return json.loads(stdout)


def test_head_is_read_from_the_files():
    # The parent compares the child's result with this head.
    assert head_in_files() == head_revision()


@pytest.mark.parametrize("apart", [True, False], ids=["apart", "in-process"])
def test_a_fresh_database_is_migrated_and_alembic_stays_out_of_the_worker(db_url, apart):
    outcome = _outcome(_open_in_process(db_url, apart=apart))
    assert outcome["revision"] == head_revision()
    # In process, Alembic is imported (the check can fail); apart, it is not.
    assert outcome["alembic"] is not apart


def test_a_database_at_head_needs_no_child_and_no_alembic(db_url):
    open_database(db_url).dispose()  # migrated here, first
    outcome = _outcome(_open_in_process(db_url, apart=False))
    assert outcome == {"revision": head_revision(), "alembic": False}


def test_four_workers_starting_together_migrate_once(db_url):
    start_at = time.time() + 1.5
    workers = [_open_in_process(db_url, apart=True, start_at=start_at) for _ in range(4)]
    outcomes = [_outcome(worker) for worker in workers]
    assert outcomes == [{"revision": head_revision(), "alembic": False}] * 4
    assert stored_revisions(db_url) == [head_revision()]


def test_the_childs_refusal_reaches_the_caller_as_a_migration_error(db_url):
    engine = open_database(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    finally:
        engine.dispose()
    with pytest.raises(MigrationError, match=r"f00dfeed.*unknown to this version"):
        open_database(db_url, upgrade_apart=True)


def test_a_child_that_cannot_reach_the_database_is_a_migration_error_without_the_password(
    tmp_path,
):
    # A directory where the SQLite file should be: the child cannot open it.
    (tmp_path / "db.sqlite3").mkdir()
    with pytest.raises(MigrationError) as raised:
        upgrade_in_child(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert "db.sqlite3" in str(raised.value)
    url = "postgresql+psycopg://mailbot:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(MigrationError) as raised:
        upgrade_in_child(url)
    assert "s3cret-pw" not in str(raised.value)


def test_an_in_memory_database_is_migrated_in_process():
    engine = open_database("sqlite://", upgrade_apart=True)
    try:
        with engine.connect() as connection:
            assert sa.inspect(connection).has_table("dossier")
    finally:
        engine.dispose()


# ``mailbot poll`` run as a user runs it, over a fresh database: the
# candidature is filed and the worker process never imported Alembic.
_POLL = """
import atexit, sys
atexit.register(lambda: print("ALEMBIC", "alembic" in sys.modules, file=sys.stderr))
sys.argv = ["mailbot", "poll", "--once", "--no-send"]
from mailbot.cli import main
main()
"""


def test_mailbot_poll_files_into_a_fresh_database_without_importing_alembic(service_env, dovecot):
    dovecot.append("n.bataillon", candidature(1))
    done = subprocess.run(
        [sys.executable, "-c", _POLL],
        cwd=REPO,
        env=dict(os.environ, **service_env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ALEMBIC False" in done.stderr
    database = make_url(service_env["MAILBOT_DATABASE__URL"]).database
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            filed = connection.exec_driver_sql("SELECT count(*) FROM dossier").scalar_one()
            revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert revision.scalar_one() == head_revision()
    finally:
        engine.dispose()
    assert filed == 1
