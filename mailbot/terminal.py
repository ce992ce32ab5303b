"""What the service prints to a terminal is plain text, whoever wrote it.

Applicant text (an intitulé, a subject, a file name) reaches staff terminals
through ``mailbot dossiers list``, ``messages list`` and ``try``. It must
neither be read as Rich markup (``Projet [/bold] sans fin`` made the table
fail) nor drive the terminal: C0 and C1 control characters (escape
sequences that set a window title or hide text) and bidirectional
overrides (which reorder what is shown) are removed. Consoles made here
never interpret markup, emoji codes or highlighting; styles are applied
with ``rich.text.Text`` by our own code only.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

# C0 except TAB and LF, DEL, C1, and the bidi embedding/override/isolate marks.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(value: Any, *, single_line: bool = False) -> str:
    """``value`` as text safe for a terminal; newlines and tabs become spaces on one line."""
    text = "" if value is None else str(value)
    text = _UNSAFE.sub("", text)
    if single_line:
        text = " ".join(text.split())
    return text


def cell(value: Any, style: str | None = None) -> Text:
    """A table cell: plain text, never markup."""
    return Text(plain(value, single_line=True), style=style or "")


def strong(value: Any) -> Text:
    """Our own emphasis (a reference, a verdict), applied as a style, never as markup."""
    return Text(plain(value, single_line=True), style="bold")


class PlainConsole(Console):
    """Every string it renders (printed text, table cells) goes through ``plain`` first."""

    def render_str(self, text: str, **options: Any) -> Text:  # type: ignore[override]
        options["markup"] = False
        options["emoji"] = False
        options["highlight"] = False
        return super().render_str(plain(text), **options)


def console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A console that prints data as it is: no markup, no emoji codes, no highlighting."""
    return PlainConsole(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        width=width,
    )
