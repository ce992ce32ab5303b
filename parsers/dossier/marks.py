"""Ticked boxes: which options of a choice field a text ticks (``ticked_options``).

Owns the patterns of ticked and unticked boxes as drawn, typed or read by
OCR, and the ``Label : oui/non`` answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parsers.documents.marks import TICKED_BOX, UNSURE_BOX

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------
# Ticked boxes

# Boxes and radio buttons as drawn, typed, or read by OCR from a printed
# form (a selected ◉ often comes out as "@)" or "®", an empty ◯ as "6)" or
# "O)", an empty ☐ as "[]", "[|" or "[").
_TICKED = r"☒|☑|✓|✔|✗|✘|⊠|▣|■|◉|●|⦿|®|\[\s*[xX✓✔]\s*\]|\(\s*[xX✓✔•●]\s*\)|@\)?(?=\s*\S)"
_UNTICKED = (
    r"⍰|☐|□|❏|◻|▢|○|◯|\[\s*\]|\(\s*\)|\[[|lI_]\]?|\[(?=\s+\w)"
    r"|(?<![\w(])[6oO0]\)(?=\s)|(?<!\w)(?:L\]|LJ|C\])(?=\s)"
)
# A lone X before an option ("X Collaborative   Durable"): in a choice
# field's value a standalone X is a tick.
_BARE_X = r"(?<!\S)[xX][.,]?(?=\s+\w)"
_MARK = re.compile(rf"(?P<t>{_TICKED})|(?P<u>{_UNTICKED})|(?P<x>{_BARE_X})", re.MULTILINE)
# The boxes the page readers draw in the text (typed, drawn, or measured on a scan).
_BOX_GLYPH = re.compile(r"[☐☒⍰]")
_BOUNDARY = re.compile(r"\t|\n|\s{2,}|\s\|\s")
_YES_NO = re.compile(r"([^\W\d_][\w'’ -]{1,40}?)\s*[:=]\s*(oui|non|yes|no)\b", re.IGNORECASE)


def ticked_options(text: str, *, ocr: bool = False) -> list[str] | None:
    """Option texts next to ticked boxes; [] if all boxes are empty; None if no boxes.

    ``ocr``: a scan of a printed form, where a tick mark is often lost while
    the empty boxes are read: an option left without any box, among options
    with empty boxes and none ticked, is taken as the ticked one.
    """
    return _ticks(text, ocr=ocr).options


@dataclass(frozen=True)
class _Ticks:
    """Options read as ticked, and how they were told apart."""

    options: list[str] | None
    # The ticks were guessed (an OCR'd option without its box), not seen.
    guessed: bool = False
    # Boxes seen, ticked and empty.
    ticked: int = 0
    empty: int = 0
    # Boxes whose ink could not say ticked or empty (⍰, from a scan).
    unsure: int = 0
    # Ticks measured as ink inside a located box (☒ of a scan or photo),
    # not guessed from what the OCR made of a glyph ("@)", "®", "[x]").
    measured_ticks: int = 0


def _ticks(text: str, *, ocr: bool = False) -> _Ticks:
    marks = list(_MARK.finditer(text))
    if not marks:
        return _Ticks(_yes_no_options(text))
    ticked_marks = sum(1 for m in marks if m.lastgroup in ("t", "x"))
    empty_marks = len(marks) - ticked_marks
    if ocr and not ticked_marks:
        bare = [
            part.strip(" :;,-–")
            for part in _BOUNDARY.split(text)
            if part.strip() and not _MARK.search(part) and re.search(r"[^\W\d_]{3}", part)
        ]
        if bare:
            return _Ticks(bare, guessed=True, empty=empty_marks)
    before = text[: marks[0].start()]
    after = text[marks[-1].end() :]
    follow = bool(before.strip()) and not after.strip()
    ticked: list[str] = []
    for number, mark in enumerate(marks):
        if follow:
            begin = marks[number - 1].end() if number else 0
            segment = text[begin : mark.start()]
            pieces = _BOUNDARY.split(segment)
            option = pieces[-1] if pieces else ""
        else:
            end = marks[number + 1].start() if number + 1 < len(marks) else len(text)
            # lstrip(): an option's text may have wrapped to the next line.
            option = _BOUNDARY.split(text[mark.end() : end].lstrip())[0]
        option = option.strip(" :;,-–\t")
        if mark.lastgroup in ("t", "x") and option:
            ticked.append(option)
    unsure = sum(1 for m in marks if m.group(0) == UNSURE_BOX)
    measured = sum(1 for m in marks if m.group(0) == TICKED_BOX)
    return _Ticks(
        ticked,
        ticked=ticked_marks,
        empty=empty_marks,
        unsure=unsure,
        measured_ticks=measured,
    )


def _yes_no_options(text: str) -> list[str] | None:
    """ "Collaborative : oui  Durable : non": the options answered yes."""
    answers = list(_YES_NO.finditer(text))
    if not answers:
        return None
    return [m.group(1).strip() for m in answers if m.group(2).lower() in ("oui", "yes")]
