"""Ink on a scanned or photographed page that the OCR did not read.

Tesseract sometimes loses a whole value (a blurred line, a word beside an
erased table rule): the page then reads "Label" with nothing after it, as
if the box had been left empty. The two are told apart on the page image:
ink that no OCR word covers is marked with a pseudo-word ``▒``
(``UNREAD_INK``) at its place, so that the dossier reader sees "Label ▒"
(a value is there, unread: a doubt) where a truly empty box reads "Label"
alone (nothing written: the field is missing).

Specks, the remains of erased rules and asterisks are too small to count;
what counts is ink at least half a text line high.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parsers.documents.layout import Word

UNREAD_INK = "▒"
# A grey level darker than this is ink.
_INK = 140
# Around each OCR word, this share of its height is the word's own (accents,
# descenders, a letter's blur).
_WORD_PAD = 0.3
# The page's edges (a scanner's border, what lies around a photo's page).
_EDGE = 0.04
# A block of the reduced page is inked from this mean (0-255: 12 % of its
# pixels ink; a letter's stroke fills more, a scan's noise less).
_BLOCK_INK = 31
# Ink the size of letters: this share of its box dark at least, and this
# many dark pixels (in square line heights); sparse noise has fewer.
_LEAST_DENSITY, _LEAST_PIXELS = 0.08, 0.2
# Unread ink counts from this size, in text line heights (an asterisk, a
# speck or a rule's remains are smaller).
_LEAST_HEIGHT, _LEAST_WIDTH = 0.5, 0.3
# Pieces of unread ink on one line closer than this (line heights) are one.
_JOIN_GAP = 1.0
_MOST_MARKS = 400


def unread_ink(image: Any, words: Sequence[Word]) -> list[Word]:
    """``▒`` pseudo-words where ``image`` shows ink that none of ``words`` covers.

    ``image``: the grey page the OCR read (the words' pixel coordinates);
    ``words``: what it read there (tick boxes included). Each mark takes the
    line id of the nearest word on its row (or one of its own).
    """
    from PIL import Image, ImageDraw

    heights = sorted(w.height for w in words if sum(c.isalpha() for c in w.text) >= 2)
    if not heights:
        return []
    height = heights[len(heights) // 2]
    mask = image.point(lambda v: 255 if v < _INK else 0)
    draw = ImageDraw.Draw(mask)
    pad = _WORD_PAD * height
    for w in words:
        draw.rectangle((w.x0 - pad, w.top - pad, w.x1 + pad, w.bottom + pad), fill=0)
    edge_x, edge_y = int(_EDGE * image.width), int(_EDGE * image.height)
    draw.rectangle((0, 0, image.width, edge_y), fill=0)
    draw.rectangle((0, image.height - edge_y, image.width, image.height), fill=0)
    draw.rectangle((0, 0, edge_x, image.height), fill=0)
    draw.rectangle((image.width - edge_x, 0, image.width, image.height), fill=0)
    step = max(2, round(height / 5))
    small = mask.reduce(step) if step > 1 else mask
    if not isinstance(small, Image.Image):  # pragma: no cover - Pillow always gives one
        return []
    pieces = _components(small.tobytes(), small.width, small.height)
    boxes = []
    for x0, y0, x1, y1 in pieces:
        tight = mask.crop((x0 * step, y0 * step, (x1 + 1) * step, (y1 + 1) * step))
        inner = tight.getbbox()
        if inner is None:
            continue
        left, top, right, bottom = inner
        width, tall = right - left, bottom - top
        if tall < _LEAST_HEIGHT * height or width < _LEAST_WIDTH * height:
            continue
        dark = tight.histogram()[255]
        if dark < _LEAST_PIXELS * height * height or dark < _LEAST_DENSITY * width * tall:
            continue
        boxes.append((x0 * step + left, y0 * step + top, x0 * step + right, y0 * step + bottom))
    marks: list[Word] = []
    for x0, top, x1, bottom in _joined(sorted(boxes), gap=_JOIN_GAP * height):
        line = _line_of((x0, top, x1, bottom), words)
        marks.append(Word(x0, x1, top, bottom, UNREAD_INK, line or ("unread ink", len(marks))))
        if len(marks) >= _MOST_MARKS:
            break
    return marks


def _line_of(box: tuple[float, float, float, float], words: Sequence[Word]) -> Any:
    """The OCR line ink at ``box`` (x0, top, x1, bottom) sits on (half its height shared)."""
    x0, top, x1, bottom = box
    best: tuple[float, Any] | None = None
    for w in words:
        shared = min(bottom, w.bottom) - max(top, w.top)
        if w.line is None or shared <= 0.5 * min(bottom - top, w.bottom - w.top):
            continue
        distance = max(0.0, w.x0 - x1, x0 - w.x1)
        if best is None or distance < best[0]:
            best = (distance, w.line)
    return best[1] if best else None


def _components(data: bytes, width: int, rows: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each 8-connected group of inked blocks."""
    inked = {i for i, v in enumerate(data) if v >= _BLOCK_INK}
    out: list[tuple[int, int, int, int]] = []
    while inked:
        seed = inked.pop()
        stack = [seed]
        x0 = x1 = seed % width
        y0 = y1 = seed // width
        while stack:
            i = stack.pop()
            x, y = i % width, i // width
            x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < width and 0 <= ny < rows:
                        j = ny * width + nx
                        if j in inked:
                            inked.discard(j)
                            stack.append(j)
        out.append((x0, y0, x1, y1))
    return out


def _joined(
    boxes: Sequence[tuple[int, int, int, int]], *, gap: float
) -> list[tuple[int, int, int, int]]:
    """Boxes on the same line (half their height shared) and close together, merged."""
    out: list[list[int]] = []
    for x0, top, x1, bottom in boxes:
        for box in out:
            shared = min(bottom, box[3]) - max(top, box[1])
            if shared > 0.5 * min(bottom - top, box[3] - box[1]) and x0 - box[2] <= gap:
                box[0], box[1] = min(box[0], x0), min(box[1], top)
                box[2], box[3] = max(box[2], x1), max(box[3], bottom)
                break
        else:
            out.append([x0, top, x1, bottom])
    return [(a, b, c, d) for a, b, c, d in out]
