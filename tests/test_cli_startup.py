"""The command line starts light: each command imports only what it uses.

Behaviour checks, no timing: a fresh interpreter imports ``mailbot.cli`` (what
``mailbot --help`` pays) or runs ``mailbot dossiers list --json``, then lists
``sys.modules``. ``bench/startup.py`` measures the times. What was made
lighter still answers the same: the help lists every command's whole first
sentence, and ``dossiers list --json`` (mailboxes read for all dossiers at
once) prints exactly the per-dossier ``views.dossier_summary`` of each.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from sqlmodel import SQLModel

from mailbot import cli, views
from mailbot.app import App
from mailbot.config import load_config
from mailbot.errors import ConfigError
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Message

ROOT = Path(__file__).resolve().parents[1]

# Never needed to build the command tree or print the help.
HEAVY_FOR_HELP = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "pydantic",
    "pdfplumber",
    "pdfminer",
    "pypdf",
    "pypdfium2",
    "openpyxl",
    "reportlab",
    "docx",
    "starlette",
    "apscheduler",
    "jinja2",
    "mailbot.app",
    "mailbot.config",
    "storage.db",
    "parsers.rules",
    # Typer's Rich help renderer cost more than Typer itself: help is Click's plain text.
    "rich",
    "typer.rich_utils",
)
# Not needed to list the dossiers (the database needs SQLModel, the config
# pydantic: those stay). Templates are compiled only when used, the schema
# revision is read without Alembic, JSON needs no console.
UNUSED_BY_DOSSIERS_LIST = (
    "alembic",
    "mako",
    "jinja2",
    "rich",
    "pdfplumber",
    "pdfminer",
    "pypdf",
    "pypdfium2",
    "openpyxl",
    "reportlab",
    "docx",
    "starlette",
    "apscheduler",
    "parsers.documents",
    "parsers.mail",
    "parsers.sandbox",
    "mailbot.export",
    "mailbot.web",
)
# Not needed to list dossiers from SQLite either: the PostgreSQL dialect (the
# partial index gets its PostgreSQL condition only when created there), and the
# classifier that validating rules.toml needs (a listing classifies nothing).
UNUSED_BY_DOSSIERS_LIST_ON_SQLITE = (
    "sqlalchemy.dialects.postgresql",
    "psycopg",
    "parsers.classify",
    "parsers.addresses",
    "parsers.robots",
)


def _modules_after(script: str, *, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Run ``script`` in a fresh interpreter: its output, then the modules it imported."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output, _, modules = done.stdout.rstrip("\n").rpartition("\n")
    return set(json.loads(modules)), output


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [
        name for name in names if name in modules or any(m.startswith(name + ".") for m in modules)
    ]


def test_importing_the_cli_imports_no_service_module():
    modules, _output = _modules_after("import mailbot.cli")
    assert "typer" in modules and "mailbot.cli" in modules
    assert _loaded(modules, HEAVY_FOR_HELP) == []


def test_help_lists_the_commands_without_the_service_modules():
    modules, output = _modules_after(
        "from mailbot.cli import main\nmain(['--help'])",
        env={**os.environ, "COLUMNS": "120"},
    )
    assert "dossiers" in output and "staff" in output
    assert _loaded(modules, HEAVY_FOR_HELP) == []


def _first_sentence(help_text: str) -> str:
    words = help_text.split("\n\n")[0].split()
    ends = [n for n, word in enumerate(words) if word.endswith(".")]
    return " ".join(words[: ends[0] + 1] if ends else words)


@pytest.mark.parametrize("group", ["", "dossiers", "messages", "staff", "config", "db"])
def test_help_lists_each_command_with_its_whole_first_sentence(group, capsys):
    argv = [group, "--help"] if group else ["--help"]
    assert cli.main(argv) == 0
    output = capsys.readouterr().out
    shown = " ".join(output.split())  # as wrapped to the terminal, joined again
    command = typer.main.get_command(cli.app)
    if group:
        command = command.commands[group]  # type: ignore[attr-defined]
    assert output.startswith(f"Usage: mailbot {group}".rstrip() + " [OPTIONS] COMMAND")
    assert "╭" not in output  # no Rich box
    assert "..." not in output.split("\nCommands:\n")[1]  # no description cut short
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        assert f"{name} {_first_sentence(sub.help)}" in shown, name


def test_a_command_help_keeps_its_whole_text_and_options(capsys):
    assert cli.main(["erase-person", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "leaving a tombstone; legal holds are refused." in shown
    assert "other people's mail naming the person, to redact) is shown first." in shown
    assert "--server-copies / --no-server-copies" in shown
    assert "email <str> The person's e-mail address. [required]" in shown


@pytest.mark.parametrize(
    "command", [["dossiers", "list", "--json"], ["dossiers", "show", "BSC-2026-0001", "--json"]]
)
def test_dossiers_list_and_show_json_do_not_import_the_document_readers(
    config_dir, secrets_env, command
):
    app = App(str(config_dir))
    with session_scope(app.engine) as session:
        repo.create_dossier(
            session=session,
            year=2026,
            sender="alice@example.org",
            sender_name="Alice Martin",
            fields={"intitule": "Potager solidaire du Perroy"},
            missing=["letter"],
            status="incomplete",
            received_at=datetime(2026, 3, 15, 9, 30, tzinfo=UTC),
            actor="system",
        )
    app.close()
    modules, output = _modules_after(
        "from mailbot.cli import main\n"
        f"assert main(['--config', {str(config_dir)!r}, *{command!r}]) == 0",
        env={**os.environ, **secrets_env},
    )
    printed = json.loads(output)
    listed = printed if command[1] == "list" else [printed]
    assert [d["reference"] for d in listed] == ["BSC-2026-0001"]
    assert listed[0]["intitule"] == "Potager solidaire du Perroy"
    assert "sqlmodel" in modules  # it did query the database
    assert _loaded(modules, UNUSED_BY_DOSSIERS_LIST) == []
    if command[1] == "list":
        assert "sqlalchemy.dialects.sqlite" in modules
        assert _loaded(modules, UNUSED_BY_DOSSIERS_LIST_ON_SQLITE) == []


def test_a_listing_still_refuses_a_bad_settings_file(config_dir, secrets_env, capsys):
    """Rules are checked on first use by reading commands; mailbot.toml is checked at once."""
    settings = config_dir / "mailbot.toml"
    settings.write_text(settings.read_text() + "\n[unknown_section]\nkey = 1\n")
    assert cli.main(["--config", str(config_dir), "dossiers", "list", "--json"]) == 2
    assert "unknown_section" in capsys.readouterr().err


def test_rules_left_unchecked_at_load_are_checked_when_used(config_dir, secrets_env):
    rules = config_dir / "rules.toml"
    rules.write_text(rules.read_text() + "\n[unknown_rules_section]\nkey = 1\n")
    config = load_config(config_dir, check_rules=False)  # a listing loads it so
    with pytest.raises(ConfigError) as raised:
        config.rules  # noqa: B018 (the property validates)
    assert "unknown_rules_section" in str(raised.value)
    with pytest.raises(ConfigError, match="unknown_rules_section"):
        load_config(config_dir)  # config check, run, poll, try: at once


def test_models_create_the_partial_index_of_the_migration(db_url):
    """The PostgreSQL condition of ix_sighting_pending is added before the table is created."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        SQLModel.metadata.create_all(engine)
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                definition = connection.scalar(
                    sa.text(
                        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_sighting_pending'"
                    )
                )
            else:
                definition = connection.scalar(
                    sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_sighting_pending'")
                )
    finally:
        engine.dispose()
    assert "WHERE" in definition.upper() and "'pending'" in definition


def _file_message(
    session, *, dossier, key: str, seen_in: list[str], at: datetime, uids: Iterator[int]
) -> None:
    message, _created = repo.add_message(
        session=session,
        message=Message(
            dedup_key=key,
            sha256=key.encode().hex().ljust(64, "0")[:64],
            size=1000,
            sender="alice@example.org",
            subject=f"Candidature {key}",
            verdict="candidature",
            status="filed",
            dossier_id=dossier.id if dossier else None,
            first_seen_at=at,
        ),
    )
    for mailbox in seen_in:
        repo.add_sighting(
            session=session,
            message=message,
            mailbox=mailbox,
            folder="INBOX",
            uidvalidity=1,
            uid=next(uids),
            seen_at=at,
        )


@pytest.fixture
def app_with_dossiers(config_dir, secrets_env):
    """Five dossiers: seen in two mailboxes (twice in one), in one, in none; statuses differ."""
    app = App(str(config_dir))
    start = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    seen = {
        0: [["n.bataillon", "d.berteloot"], ["n.bataillon"]],
        1: [["d.berteloot"]],
        2: [],
        3: [["n.bataillon"]],
        4: [["d.berteloot"], ["d.berteloot"]],
    }
    statuses = ["incomplete", "complete", "incomplete", "accepted", "needs_review"]
    uids = itertools.count(1)
    with session_scope(app.engine) as session:
        for n, messages in seen.items():
            dossier = repo.create_dossier(
                session=session,
                year=2026,
                sender=f"porteur{n}@example.org",
                sender_name=f"Porteur {n}",
                fields={"intitule": f"Projet n° {n}", "thematique": "Environnement"},
                missing=["letter"] if n % 2 else [],
                status=statuses[n],
                # Two dossiers received at the same time: the id decides their order.
                received_at=start + timedelta(hours=min(n, 3)),
                actor="system",
            )
            for index, mailboxes in enumerate(messages):
                _file_message(
                    session,
                    dossier=dossier,
                    key=f"d{n}m{index}",
                    seen_in=mailboxes,
                    at=start,
                    uids=uids,
                )
        _file_message(
            session, dossier=None, key="loose", seen_in=["n.bataillon"], at=start, uids=uids
        )
    yield app
    app.close()


def _per_dossier_json(app: App, *, status: str | None = None) -> str:
    """What ``dossiers list --json`` printed when it asked each dossier's mailboxes apart."""
    with session_scope(app.engine) as session:
        data = [
            views.dossier_summary(session, d)
            for d in repo.list_dossiers(session=session, status=status)
        ]
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


@pytest.mark.parametrize("ids_per_query", [500, 2])
@pytest.mark.parametrize("status", [None, "incomplete"])
def test_dossiers_list_json_is_the_per_dossier_summary_of_each(
    app_with_dossiers, config_dir, capsys, monkeypatch, status, ids_per_query
):
    monkeypatch.setattr(views, "_IDS_PER_QUERY", ids_per_query)  # several queries, same answer
    expected = _per_dossier_json(app_with_dossiers, status=status)
    option = ["--status", status] if status else []
    assert cli.main(["--config", str(config_dir), "dossiers", "list", "--json", *option]) == 0
    printed = capsys.readouterr().out
    assert printed == expected
    listed = json.loads(printed)
    assert len(listed) == (2 if status else 5)
    if not status:
        assert [d["mailboxes"] for d in listed] == [
            ["d.berteloot"],
            ["n.bataillon"],
            [],
            ["d.berteloot"],
            ["d.berteloot", "n.bataillon"],
        ]
