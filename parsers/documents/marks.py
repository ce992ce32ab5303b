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

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from parsers.documents.ink import unread_ink
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


# --------------------------------------------------------------------------
# Boxes on a scan or a photo, found beside the OCR'd words

UNSURE_BOX = "⍰"
_INK = 140  # a grey level darker than this is ink (a tick)
# A box's outline may be printed grey, and a blurred scan greys it more: an
# outline is this much darker than the paper around it (the median of the
# search), and never lighter than _OUTLINE.
_OUTLINE = 215
_OUTLINE_CONTRAST = 40
# Ink inside a box (its middle half): above _TICKED_INK it is ticked, under
# _EMPTY_INK empty; between the two the box cannot be told.
_TICKED_INK, _EMPTY_INK = 0.05, 0.02
# A box is at least this share of its line's median word height (a printed
# ☐ is smaller than "Mobilité", whose box the OCR takes from the accent).
_BOX_SMALLEST = 0.6
# A box before its option is at most this many line heights from it.
_BOX_GAP = 1.5


def _letters(text: str) -> int:
    return sum(1 for c in text if c.isalpha())


def ink_boxes(image: Any, words: Sequence[Word]) -> list[Word]:
    """OCR words with each tick box beside an option replaced by ``☒``, ``☐`` or ``⍰``.

    ``image``: the grey page Tesseract read (same pixel coordinates as the
    words). Left of each word of text, back to the previous word of text, a
    small closed shape (square or circle, about a text line high) is a box;
    the ink in its middle says whether it is ticked. What Tesseract made of
    the box itself ("[]", "6)", "&)", "V1", "©") is dropped. Ink that no
    word covers is marked too (``ink.unread_ink``).
    """
    lines: dict[Any, list[Word]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    drop: set[int] = set()
    added: list[Word] = []
    for line in lines.values():
        line.sort(key=lambda w: w.x0)
        text_words = [w for w in line if _letters(w.text) >= 2]
        if not text_words:
            continue
        # The lower median: a word whose box the OCR took with a mark above is taller.
        height = sorted(w.height for w in text_words)[(len(text_words) - 1) // 2]
        previous_end = -1.0
        boxed_before = len(added)
        unboxed: list[Word] = []
        for word in line:
            if _letters(word.text) < 2:
                continue
            start = max(previous_end + 1, word.x0 - 5 * height)
            if _letters(word.text) >= 3:
                # What OCR makes of a box may have two letters ("CO]"): only a
                # longer word bounds the search for the next box.
                previous_end = word.x1
            box = _find_box(image, left=start, right=word.x0 - 1, word=word, height=height)
            if box is None or _over_text(box, line):
                unboxed.append(word)
                continue
            x0, top, x1, bottom, ink = box
            mark = _mark(ink)
            for other in line:
                real = (
                    len(other.text) >= 2
                    and (other.text.isalpha() or other.text.isdigit())
                    and not _BOX_AS_LETTERS.fullmatch(other.text)
                )
                if other is not word and not real and _letters(other.text) < 3:
                    overlap = min(other.x1, x1) - max(other.x0, x0)
                    if overlap > 0.5 * max(1.0, other.x1 - other.x0):
                        drop.add(id(other))
            added.append(Word(x0, x1, top, bottom, mark, word.line))
        if len(added) > boxed_before:
            # Boxes on this line: an option's box the OCR took into its word
            # ("[Associatif", "☐ Privé" read "Privé" over both).
            boxes = added[boxed_before:]
            unboxed = [w for w in unboxed if id(w) not in drop and _letters(w.text) >= 3]
            for word, box in _boxes_inside(image, unboxed, line=line, height=height, boxes=boxes):
                x0, top, x1, bottom, ink = box
                added.append(Word(x0, x1, top, bottom, _mark(ink), word.line))
                drop.add(id(word))
                text = word.text.lstrip(_BOX_JUNK)
                if text[:1] in ("O", "o", "0", "C") and _letters(text[1:]) >= 3:
                    text = text[1:]  # "OPrivé": the box read as a letter
                added.append(Word(x1 + 1, word.x1, word.top, word.bottom, text, word.line))
        # A box at the end of the line, its option wrapped to the next line
        # (what the OCR made of the box, "©", "O", may follow the last word).
        last = text_words[-1]
        if len(text_words) > 1 and _BOX_AS_LETTERS.fullmatch(last.text):
            last = text_words[-2]  # "Associatif OC": the box read as letters
        trailing = line[line.index(last) + 1 :]
        if _letters(last.text) >= 3 and all(
            _END_JUNK.fullmatch(w.text) or _BOX_AS_LETTERS.fullmatch(w.text) for w in trailing
        ):
            box = _find_box(
                image,
                left=last.x1 + 1,
                right=last.x1 + 4 * height,
                word=last,
                height=height,
                before_word=False,
            )
            if box is not None:
                added.append(Word(box[0], box[2], box[1], box[3], _mark(box[4]), last.line))
                drop.update(id(w) for w in trailing if min(w.x1, box[2]) > max(w.x0, box[0]))
    marks = [w for w in added if w.text in (TICKED_BOX, EMPTY_BOX, UNSURE_BOX)]
    for word in words:
        # What the OCR made of a box, on a line of its own ("5" for a "☒").
        if len(word.text) <= 3 and _letters(word.text) < 3 and _covered(word, marks):
            drop.add(id(word))
    kept = [w for w in words if id(w) not in drop] + added
    # And the ink no word covers: a value the OCR lost, not an empty box.
    return kept + unread_ink(image, kept)


# What the OCR makes of a box at a line's end ("©", "O", "[]").
_END_JUNK = re.compile(r"[©®@&Oo\[\]|()]{1,3}")
# What the OCR makes of a box glued to its option's word ("[Associatif").
_BOX_JUNK = "[(|{©®@&"


def _boxes_inside(
    image: Any,
    unboxed: Sequence[Word],
    *,
    line: Sequence[Word],
    height: float,
    boxes: Sequence[Word],
) -> list[tuple[Word, tuple[float, float, float, float, float]]]:
    """Boxes read as the start of a word ("[Associatif", "Privé" over its box).

    A closed shape at the word's left end, as large as the boxes found on the
    same line (``boxes``), and parted from the letters after it by a gap wider
    than letters have inside a word.
    """
    sizes = [b.x1 - b.x0 for b in boxes]
    found = []
    for word in unboxed:
        # From left of the word (a narrow search would take the box's own
        # edges for a ruled line) to its first letters.
        before = [w.x1 for w in line if w.x1 <= word.x0]
        left = max([word.x0 - 1.5 * height, *(end + 1 for end in before)])
        right = min(word.x1, word.x0 + 1.6 * height)
        box = _find_box(image, left=left, right=right, word=word, height=height)
        if box is None:
            continue
        x0, _, x1, _, _ = box
        if not any(abs((x1 - x0) - size) <= 0.2 * size for size in sizes):
            continue
        gap_end = min(image.width, int(x1 + 0.25 * height))
        top, bottom = int(word.top), int(word.bottom)
        gap = image.crop((int(x1) + 1, top, gap_end, bottom))
        if gap.width and gap.getextrema()[0] < _INK:
            continue  # a letter of the word ("O" of "Orange"), not a box
        others = [w for w in line if w is not word]
        if not _over_text(box, others):
            found.append((word, box))
    return found


def _covered(word: Word, boxes: Sequence[Word]) -> bool:
    """Most of ``word`` lies on one of ``boxes``."""
    return any(
        min(word.x1, b.x1) - max(word.x0, b.x0) > 0.5 * max(1.0, word.x1 - word.x0)
        and min(word.bottom, b.bottom) - max(word.top, b.top) > 0.5 * word.height
        for b in boxes
    )


def _mark(ink: float) -> str:
    if ink >= _TICKED_INK:
        return TICKED_BOX
    if ink <= _EMPTY_INK:
        return EMPTY_BOX
    return UNSURE_BOX


# What the OCR makes of a box that looks like a word ("Cl", "Ol", "LJ"; ticked "EX").
_BOX_AS_LETTERS = re.compile(r"[CcOoDUL0][lI1|\]JjOo0Cc]|[EBDX][Xx]")


def _over_text(box: tuple[float, ...], line: Sequence[Word]) -> bool:
    """The shape is text OCR read ("12", "62400", "du"), not a box."""
    x0, _, x1, _, _ = box
    return any(
        min(w.x1, x1) - max(w.x0, x0) > 0
        and len(w.text) >= 2
        and (w.text.isdigit() or w.text.isalpha() or (w.text.isalnum() and _letters(w.text) >= 2))
        and not _BOX_AS_LETTERS.fullmatch(w.text)
        for w in line
    )


def _find_box(
    image: Any, *, left: float, right: float, word: Word, height: float, before_word: bool = True
) -> tuple[float, float, float, float, float] | None:
    """(x0, top, x1, bottom, ink inside) of the box right before ``word``, or None."""
    if right - left < 0.6 * height:
        return None
    top = int(max(0, word.middle - 0.9 * height))
    bottom = int(min(image.height, word.middle + 0.9 * height))
    x0, x1 = int(max(0, left)), int(min(image.width, right))
    if x1 - x0 < 3 or bottom - top < 3:
        return None
    region = image.crop((x0, top, x1, bottom))
    width, rows = region.size
    pixels = region.load()
    outline = min(_OUTLINE, _median(region.histogram()) - _OUTLINE_CONTRAST)
    # A table's ruled line across the search is not part of a box.
    ruled = {
        y
        for y in range(rows)
        if sum(1 for x in range(width) if pixels[x, y] < outline) > 0.6 * width
    }
    ruled |= {y + step for y in ruled for step in (-2, -1, 1, 2)}  # its blurred edges
    # Columns with ink near the word's middle (a letter's descender from the
    # line above would widen the box).
    centre = word.middle - top
    kept_rows = [y for y in range(rows) if y not in ruled and abs(y - centre) <= 0.75 * height]
    dark_columns = [sum(1 for y in kept_rows if pixels[x, y] < outline) for x in range(width)]
    # Runs of columns with ink, the nearest to the word first.
    runs: list[tuple[int, int]] = []
    x = width - 1
    while x >= 0:
        if dark_columns[x]:
            end = x
            while x >= 0 and dark_columns[x]:
                x -= 1
            runs.append((x + 1, end + 1))
        x -= 1
    next_ink = x1 - x0  # where the ink right of the run begins (the word, or "2 -")
    for run_start, run_end in runs:
        if before_word and next_ink - run_end > _BOX_GAP * height:
            break  # an asterisk or a speck across a table's gutter: a box sits by its option
        next_ink = run_start
        size = run_end - run_start
        if not (_BOX_SMALLEST * height <= size <= 1.5 * height):
            continue
        inked = [
            y not in ruled and any(pixels[c, y] < outline for c in range(run_start, run_end))
            for y in range(rows)
        ]
        # The rows of ink around the word's middle (options stacked close
        # together bring the boxes above and below into the search).
        middle = min(rows - 1, max(0, int(word.middle) - top))
        spans = _row_spans(inked)
        if not spans:
            continue
        box_top, box_bottom = min(spans, key=lambda s: _distance(s, middle))
        tall = box_bottom - box_top
        if not (_BOX_SMALLEST * height <= tall <= 1.5 * height and 0.8 <= size / tall <= 1.25):
            continue
        box = (run_start, box_top, run_end, box_bottom)
        if not _closed(pixels, box=box, size=(width, rows), outline=outline):
            continue
        ink = _ink_inside(pixels, box=(run_start, box_top, run_end, box_bottom))
        return (x0 + run_start, top + box_top, x0 + run_end, top + box_bottom, ink)
    return None


def _row_spans(inked: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last + 1) of each run of rows with ink."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for y, ink in enumerate([*inked, False]):
        if ink and start is None:
            start = y
        elif not ink and start is not None:
            spans.append((start, y))
            start = None
    return spans


def _distance(span: tuple[int, int], y: int) -> int:
    return 0 if span[0] <= y < span[1] else min(abs(span[0] - y), abs(span[1] - 1 - y))


def _median(histogram: Sequence[int]) -> int:
    half, seen = sum(histogram) / 2, 0
    for level, count in enumerate(histogram):
        seen += count
        if seen >= half:
            return level
    return 255


def _closed(
    pixels: Any, *, box: tuple[int, int, int, int], size: tuple[int, int], outline: int
) -> bool:
    """Ink at the middle of each of the four sides: a square or a circle's outline."""
    x0, top, x1, bottom = box
    width, rows = size
    cx, cy = (x0 + x1) // 2, (top + bottom) // 2
    reach_x, reach_y = max(1, (x1 - x0) // 6), max(1, (bottom - top) // 6)

    def inked(xs: range, ys: range) -> bool:
        return any(pixels[x, y] < outline for x in xs for y in ys)

    # Two pixels beyond each side: a ruled line may run along the box's edge.
    return (
        inked(range(max(0, x0 - 2), x0 + reach_x + 1), range(cy - reach_y, cy + reach_y + 1))
        and inked(
            range(x1 - reach_x - 1, min(width, x1 + 2)), range(cy - reach_y, cy + reach_y + 1)
        )
        and inked(range(cx - reach_x, cx + reach_x + 1), range(max(0, top - 2), top + reach_y + 1))
        and inked(
            range(cx - reach_x, cx + reach_x + 1),
            range(bottom - reach_y - 1, min(rows, bottom + 2)),
        )
    )


def _ink_inside(pixels: Any, *, box: tuple[int, int, int, int]) -> float:
    """Share of ink in the middle half of a box (its outline left out)."""
    x0, top, x1, bottom = box
    w, h = x1 - x0, bottom - top
    xs = range(x0 + w // 4, x1 - w // 4)
    ys = range(top + h // 4, bottom - h // 4)
    total = len(xs) * len(ys)
    if not total:
        return 0.0
    return sum(1 for x in xs for y in ys if pixels[x, y] < _INK) / total
