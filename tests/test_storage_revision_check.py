"""``open_database`` checks the schema revision without Alembic, and still migrates when needed.

Every command opens the database; importing Alembic and loading its scripts
only to learn that the schema is at head cost each of them about 55 ms
(issue 18). The head is read from the revision files instead, and must be
Alembic's own; anything but a database at that head still goes through
``upgrade`` (and its refusal of a newer release), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from storage.db import (
    alembic_config,
    current_revision,
    head_in_files,
    head_revision,
    make_engine,
    open_database,
    stored_revision,
)
from storage.errors import MigrationError

ROOT = Path(__file__).resolve().parents[1]


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    assert head_in_files() is not None
    assert head_in_files() == head_revision()


def _revision_file(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(body, encoding="utf-8")


def test_head_in_files_follows_the_chain_whatever_the_file_names(tmp_path: Path) -> None:
    _revision_file(tmp_path, "z_first.py", 'revision = "ab12"\ndown_revision = None\n')
    _revision_file(
        tmp_path,
        "a_second.py",
        "from collections.abc import Sequence\n"
        'revision: str = "cd34"\n'
        'down_revision: str | Sequence[str] | None = "ab12"\n',
    )
    _revision_file(tmp_path, "m_third.py", "revision = 'ef56'\ndown_revision = 'cd34'\n")
    assert head_in_files(tmp_path) == "ef56"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("branch.py", 'revision = "x9"\ndown_revision = "ab12"\n'),  # two heads
        ("merge.py", 'revision = "x9"\ndown_revision = ("ab12", "cd34")\n'),
        ("computed.py", 'revision = "x" + "9"\ndown_revision = "cd34"\n'),
        ("unnamed.py", 'down_revision = "cd34"\n'),
        ("broken.py", "revision = (\n"),
    ],
)
def test_head_in_files_gives_up_when_the_chain_is_not_plain(
    tmp_path: Path, name: str, body: str
) -> None:
    _revision_file(tmp_path, "first.py", 'revision = "ab12"\ndown_revision = None\n')
    _revision_file(tmp_path, "second.py", 'revision = "cd34"\ndown_revision = "ab12"\n')
    _revision_file(tmp_path, name, body)
    assert head_in_files(tmp_path) is None


def test_head_in_files_of_an_empty_directory_is_none(tmp_path: Path) -> None:
    assert head_in_files(tmp_path) is None


def test_stored_revision_reads_what_alembic_reads(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert stored_revision(engine) is None  # empty database
    finally:
        engine.dispose()
    engine = open_database(db_url)
    try:
        assert stored_revision(engine) == current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_opening_a_database_at_head_does_not_import_alembic(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    script = (
        "import json, sys\n"
        "from storage.db import open_database, stored_revision\n"
        "engine = open_database(sys.argv[1])\n"
        "revision = stored_revision(engine)\n"
        "engine.dispose()\n"
        "print(json.dumps([revision, sorted(m for m in sys.modules if m.startswith('alembic'))]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    revision, alembic_modules = json.loads(done.stdout)
    assert revision == head_revision()
    assert alembic_modules == []


def test_opening_a_database_at_an_older_revision_migrates_it(db_url: str) -> None:
    older = (
        ScriptDirectory.from_config(alembic_config()).get_revision(head_revision()).down_revision
    )
    assert isinstance(older, str)
    engine = make_engine(db_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, older)
        assert stored_revision(engine) == older != head_revision()
    finally:
        engine.dispose()
    engine = open_database(db_url)
    try:
        assert stored_revision(engine) == current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_opening_a_database_from_a_newer_release_is_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dcafe'")
    with pytest.raises(MigrationError, match="f00dcafe"):
        open_database(engine.url.render_as_string(hide_password=False))
