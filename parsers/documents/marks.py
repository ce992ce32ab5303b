"""Tick boxes drawn on a PDF page, told ticked or empty from what is drawn inside.

A form filled then flattened (pdftk ``flatten``, "print to PDF", preview
apps) keeps its boxes and radio buttons as vector drawings: an empty box is a
light square or circle; a ticked one has a dark shape inside (a dot, a check
mark, a cross, a filled square) or is itself filled dark. The page's text
layer lists every option, so the choice survives only in these drawings.

``box_words`` turns each box into a pseudo-word, ``☒`` (ticked) or ``☐``
(empty), at the box's place, so that the line builder writes it before the
option's text ("☐ 1 - Initiative réalisée  ☒ 2 - Projet") and the dossier
reader reads ticks the same way as in a typed form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from parsers.documents.layout import Word

TICKED_BOX = "☒"
EMPTY_BOX = "☐"
# A box is a small, nearly square shape (points).
_BOX_MIN, _BOX_MAX = 5.0, 18.0
# A shape darker than this (0 black, 1 white) is ink.
_DARK = 0.5
_MAX_SHAPES = 2000


@dataclass
class _Shape:
    x0: float
    x1: float
    top: float
    bottom: float
    dark: bool

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def contains(self, other: _Shape, slack: float = 1.0) -> bool:
        cx, cy = (other.x0 + other.x1) / 2, (other.top + other.bottom) / 2
        return (
            self.x0 - slack <= cx <= self.x1 + slack
            and self.top - slack <= cy <= self.bottom + slack
        )


def darkness(color: Any) -> float | None:
    """How light a pdfplumber colour is (0 black, 1 white); None if unknown (a pattern)."""
    if isinstance(color, int | float):
        color = (color,)
    if not isinstance(color, tuple | list) or not color:
        return None
    try:
        values = [float(v) for v in color]
    except (TypeError, ValueError):
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 3:
        return 0.299 * values[0] + 0.587 * values[1] + 0.114 * values[2]
    if len(values) == 4:
        c, m, y, k = values
        return (
            (1 - min(1.0, c + k)) * 0.3
            + (1 - min(1.0, m + k)) * 0.59
            + (1 - min(1.0, y + k)) * 0.11
        )
    return None


def _shapes(objects: Iterable[dict[str, Any]]) -> list[_Shape]:
    out: list[_Shape] = []
    for obj in objects:
        try:
            x0, x1, top, bottom = (float(obj[k]) for k in ("x0", "x1", "top", "bottom"))
        except (KeyError, TypeError, ValueError):
            continue
        if x1 - x0 > _BOX_MAX or bottom - top > _BOX_MAX:
            continue
        filled = bool(obj.get("fill"))
        stroked = bool(obj.get("stroke"))
        dark = False
        if filled:
            light = darkness(obj.get("non_stroking_color"))
            dark = light is not None and light < _DARK
        if not dark and stroked and (x1 - x0 < _BOX_MIN or bottom - top < _BOX_MIN):
            # The strokes of a check mark or a cross drawn inside a box.
            light = darkness(obj.get("stroking_color"))
            dark = light is not None and light < _DARK and not filled
        out.append(_Shape(x0, x1, top, bottom, dark))
        if len(out) > _MAX_SHAPES:
            return []
    return out


def box_words(objects: Iterable[dict[str, Any]], words: Sequence[Word]) -> list[Word]:
    """A ``☒``/``☐`` pseudo-word per drawn box that has an option's text just right of it.

    ``objects``: the page's rects, curves and lines as pdfplumber gives them.
    """
    shapes = _shapes(objects)
    boxes: list[_Shape] = []
    for shape in shapes:
        w, h = shape.width, shape.height
        if not (_BOX_MIN <= w <= _BOX_MAX and _BOX_MIN <= h <= _BOX_MAX and 0.6 <= w / h <= 1.6):
            continue
        same = next((b for b in boxes if b.contains(shape, 2.0) and shape.contains(b, 2.0)), None)
        if same is not None:
            same.dark = same.dark or shape.dark
            same.x0, same.x1 = min(same.x0, shape.x0), max(same.x1, shape.x1)
            same.top, same.bottom = min(same.top, shape.top), max(same.bottom, shape.bottom)
            continue
        boxes.append(_Shape(shape.x0, shape.x1, shape.top, shape.bottom, shape.dark))
    # A box inside another (a radio button's inner ring) is the same box.
    boxes = [
        b
        for b in boxes
        if not any(o is not b and o.contains(b) and o.width > b.width + 1 for o in boxes)
    ]
    out: list[Word] = []
    for box in boxes:
        if not _option_beside(box, words):
            continue
        ticked = box.dark or any(
            s.dark and box.contains(s) and s.width <= box.width + 1 and s.height <= box.height + 1
            for s in shapes
        )
        text = TICKED_BOX if ticked else EMPTY_BOX
        out.append(Word(box.x0, box.x1, box.top, box.bottom, text))
    return out


def _option_beside(box: _Shape, words: Sequence[Word]) -> bool:
    """Some text starts just right of the box, on its line (the option it ticks)."""
    middle = (box.top + box.bottom) / 2
    reach = box.x1 + 3 * max(box.width, 6.0)
    return any(box.x1 - 1 <= w.x0 <= reach and w.top - 2 <= middle <= w.bottom + 2 for w in words)
