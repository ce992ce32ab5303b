"""Applicant text printed to a terminal is plain: no markup, no control sequences."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from mailbot.terminal import cell, console, plain

HOSTILE = "Projet [/bold] sans fin \x1b]0;pwned\x07\x1b[8mcaché\x1b[0m \u202eevil\x9b2J"


def test_control_characters_and_bidi_overrides_are_removed() -> None:
    text = plain(HOSTILE)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\u202e" not in text
    assert "[/bold]" in text  # kept as text, shown as typed
    assert plain("a\tb\nc", single_line=True) == "a b c"
    assert plain(None) == ""


def test_markup_in_data_is_printed_as_typed() -> None:
    buffer = io.StringIO()
    out = console()
    out.file = buffer
    out.print(plain(HOSTILE))
    table = Table("intitulé")
    table.add_row(cell(HOSTILE))
    out.print(table)
    printed = buffer.getvalue()
    assert printed.count("[/bold]") == 2
    assert "\x1b" not in printed


def test_a_default_console_would_fail_on_the_same_text() -> None:
    # The reason this module exists: Rich's default console reads markup.
    risky = Console(file=io.StringIO())
    try:
        risky.print("Projet [/bold] sans fin")
    except Exception as err:  # rich.errors.MarkupError
        assert "closing tag" in str(err)
    else:
        raise AssertionError("Rich no longer interprets markup by default")


def test_the_cli_prints_hostile_applicant_text_as_typed(config_dir, secrets_env, capsys) -> None:
    """An intitulé with Rich markup and escape sequences: list and show print it inert."""
    from datetime import UTC, datetime

    from mailbot.app import App
    from mailbot.cli import main
    from storage import repositories as repo
    from storage.db import session_scope

    app = App(str(config_dir))
    with session_scope(app.engine) as session:
        repo.create_dossier(
            session=session,
            year=2026,
            sender="alice@example.org",
            sender_name="Alice \x1b]0;pwned\x07Martin",
            fields={"intitule": HOSTILE, "porteur_structure": "[bold]Asso[/bold]"},
            missing=["letter"],
            status="incomplete",
            received_at=datetime(2026, 3, 15, 9, 30, tzinfo=UTC),
            actor="system",
        )
    app.close()
    for command in (["dossiers", "list"], ["dossiers", "show", "BSC-2026-0001"]):
        assert main(["--config", str(config_dir), *command]) == 0, command
        printed = capsys.readouterr().out
        assert "\x1b]" not in printed and "\x07" not in printed and "\x9b" not in printed
        assert "\u202e" not in printed
        assert "[/bold]" in printed, command
