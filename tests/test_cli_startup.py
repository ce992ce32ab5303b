"""The command line starts light: each command imports only what it uses.

Behaviour checks, no timing: a fresh interpreter imports ``mailbot.cli`` (what
``mailbot --help`` pays) or runs ``mailbot dossiers list --json``, then lists
``sys.modules``. ``bench/startup.py`` measures the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from mailbot.app import App
from storage import repositories as repo
from storage.db import session_scope

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
)
# Not needed to list the dossiers (the config's templates need jinja2, the
# database SQLModel: those stay).
UNUSED_BY_DOSSIERS_LIST = (
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
    assert _loaded(modules, (*HEAVY_FOR_HELP, "rich.table")) == []


def test_help_lists_the_commands_without_the_service_modules():
    modules, output = _modules_after(
        "from mailbot.cli import main\nmain(['--help'])",
        env={**os.environ, "COLUMNS": "120"},
    )
    assert "dossiers" in output and "staff" in output
    assert _loaded(modules, HEAVY_FOR_HELP) == []


def test_dossiers_list_json_does_not_import_the_document_readers(config_dir, secrets_env, tmp_path):
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
        f"assert main(['--config', {str(config_dir)!r}, 'dossiers', 'list', '--json']) == 0",
        env={**os.environ, **secrets_env},
    )
    listed = json.loads(output)
    assert [d["reference"] for d in listed] == ["BSC-2026-0001"]
    assert listed[0]["intitule"] == "Potager solidaire du Perroy"
    assert "sqlmodel" in modules  # it did query the database
    assert _loaded(modules, UNUSED_BY_DOSSIERS_LIST) == []
