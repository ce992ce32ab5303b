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
