"""Ink Tesseract's page layout left unread, read again on its own.

Tesseract's page segmentation (``--psm 3``) sometimes drops a whole block of
text as if it were a picture: on a phone photo of a two-column table, the
bold labels of the referent's rows ("Nom et prénom du référent", "Courriel",
"Téléphone") came back with no word at all, so every value beside them was
lost (corpus dossier 083). The ink is on the page, only the layout missed it.

``unread_regions`` finds blocks of text-sized ink that no OCR word covers;
the caller reads each one again as a block (``--psm 6``) and adds the words
it validates. Nothing is guessed: every word added is what Tesseract read
from that ink.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from parsers.documents.layout import Word
from parsers.normalize import EMAIL_RE

# Cell of the coarse ink grid (pixels of the 300 dpi page).
_CELL = 8
# A grey level under this is ink.
_INK = 150
# A cell holds ink when this share of its pixels is ink (0-255 scale of the reduced mask).
_CELL_INK = 12
# Words' boxes grown by this many cells before their ink counts as read.
_WORD_MARGIN = 1
# A region worth reading: at least this many cells wide and tall, and this share of ink cells.
_MIN_WIDTH_CELLS, _MIN_HEIGHT_CELLS = 12, 3
_MAX_HEIGHT_CELLS = 60
_MIN_FILL = 0.15
# Ink this many cells apart sideways or less is one line: a justified line's
# widest word gap (about a line height), narrower than a table's gutter.
_WORD_GAP_CELLS = 8
# Blocks this many cells apart or less, one above the other, are read together.
_LINE_GAP_CELLS = 4
# A word this many line heights or less from a read word on its row belongs
# to that word's line (a table's gutter is wider).
_SAME_LINE_GAP = 2.0
# At most this many regions read again on a page (time).
MAX_REGIONS = 6


def unread_regions(grey: Any, words: Sequence[Word]) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, top, x1, bottom, in pixels) of text-like ink no word covers, largest first."""
    from PIL import Image

    ink = grey.point(lambda v: 255 if v < _INK else 0)
    cols, rows = max(1, grey.width // _CELL), max(1, grey.height // _CELL)
    grid_image = ink.resize((cols, rows), Image.Resampling.BOX)
    values = grid_image.get_flattened_data()
    grid = [v >= _CELL_INK for v in values]
    for word in words:
        c0 = max(0, int(word.x0) // _CELL - _WORD_MARGIN)
        c1 = min(cols - 1, int(word.x1) // _CELL + _WORD_MARGIN)
        r0 = max(0, int(word.top) // _CELL - _WORD_MARGIN)
        r1 = min(rows - 1, int(word.bottom) // _CELL + _WORD_MARGIN)
        for r in range(r0, r1 + 1):
            base = r * cols
            for c in range(c0, c1 + 1):
                grid[base + c] = False
    regions = []
    for c0, r0, c1, r1, filled in _stacked(_components(grid, cols, rows)):
        width, height = c1 - c0 + 1, r1 - r0 + 1
        if width < _MIN_WIDTH_CELLS or not _MIN_HEIGHT_CELLS <= height <= _MAX_HEIGHT_CELLS:
            continue
        if filled < _MIN_FILL * width * height:
            continue
        regions.append(
            (
                max(0, (c0 - 1) * _CELL),
                max(0, (r0 - 1) * _CELL),
                min(grey.width, (c1 + 2) * _CELL),
                min(grey.height, (r1 + 2) * _CELL),
            )
        )
    regions.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return regions[:MAX_REGIONS]


def beside_read_word(word: Word, read: Sequence[Word]) -> bool:
    """A word read again lies on the row of a word the first reading gave, a few
    letters from it: the first reading's line lost words in its middle, and
    the new ones, laid out as a line of their own, would scramble it (measured:
    "matériaux ☒ énergie renouvelable. / réemployés ☒ innovante")."""
    for other in read:
        overlap = min(word.bottom, other.bottom) - max(word.top, other.top)
        if overlap < 0.5 * min(word.height, other.height):
            continue
        gap = max(other.x0 - word.x1, word.x0 - other.x1)
        if gap < _SAME_LINE_GAP * max(word.height, other.height):
            return True
    return False


def _stacked(
    boxes: list[tuple[int, int, int, int, int]],
) -> list[tuple[int, int, int, int, int]]:
    """Boxes one above the other in the same column (rows of labels) joined into one
    block, so that a dropped column is read at once."""
    boxes = sorted(boxes, key=lambda b: (b[1], b[0]))
    merged: list[tuple[int, int, int, int, int]] = []
    for box in boxes:
        for index, other in enumerate(merged):
            overlap = min(box[2], other[2]) - max(box[0], other[0])
            narrower = min(box[2] - box[0], other[2] - other[0]) + 1
            if overlap >= 0.5 * narrower and 0 <= box[1] - other[3] <= _LINE_GAP_CELLS:
                merged[index] = (
                    min(box[0], other[0]),
                    other[1],
                    max(box[2], other[2]),
                    max(box[3], other[3]),
                    box[4] + other[4],
                )
                break
        else:
            merged.append(box)
    return merged


def _components(grid: list[bool], cols: int, rows: int) -> list[tuple[int, int, int, int, int]]:
    """Bounding boxes (c0, r0, c1, r1) and cell counts of ink cells joined across a
    word gap (``_WORD_GAP_CELLS`` sideways, one up or down): the lines of a block."""
    seen = bytearray(len(grid))
    out = []
    side = _WORD_GAP_CELLS
    reach = [(dc, dr) for dc in range(-side, side + 1) for dr in (-1, 0, 1) if dc or dr]
    for start, inked in enumerate(grid):
        if not inked or seen[start]:
            continue
        seen[start] = 1
        stack = [start]
        c0 = c1 = start % cols
        r0 = r1 = start // cols
        count = 0
        while stack:
            index = stack.pop()
            count += 1
            r, c = divmod(index, cols)
            c0, c1, r0, r1 = min(c0, c), max(c1, c), min(r0, r), max(r1, r)
            for dc, dr in reach:
                nc, nr = c + dc, r + dr
                if 0 <= nc < cols and 0 <= nr < rows:
                    other = nr * cols + nc
                    if grid[other] and not seen[other]:
                        seen[other] = 1
                        stack.append(other)
        out.append((c0, r0, c1, r1, count))
    return out


# --------------------------------------------------------------------------
# An e-mail address read again on its own

# Characters OCR puts where an address's dot was lost or blurred.
_SEPARATORS = re.compile(r"[\s._,'`·]")
# A word that may belong to an address written beside the word holding "@".
_ADDRESS_PART = re.compile(r"[\w.\-_+,'`·@]+")
# Characters at which two words of an address are joined without a space.
_JOINERS = ".@-_"
# What an address read from a photo may hold (stray "{" or "|" are misreadings).
_PLAIN_ADDRESS = re.compile(r"[a-z0-9][a-z0-9._+-]*@[a-z0-9.-]+")


def address_clusters(words: Sequence[Word]) -> list[list[Word]]:
    """Groups of words that together hold one e-mail address the first reading
    did not give as one valid word: the word with "@" and the address-like
    words a letter's gap before or after it on its line."""
    lines: dict[Any, list[Word]] = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    clusters = []
    for line in lines.values():
        line.sort(key=lambda w: w.x0)
        for index, word in enumerate(line):
            if "@" not in word.text:
                continue
            gap = 1.2 * word.height
            first = last = index
            while first > 0 and _joins(line[first - 1], line[first], gap):
                first -= 1
            while last + 1 < len(line) and _joins(line[last], line[last + 1], gap):
                last += 1
            cluster = line[first : last + 1]
            if len(cluster) == 1 and _valid_address(word.text):
                continue
            if sum(c.isalpha() for w in cluster for c in w.text) < 4:
                continue  # a radio button read as "@)"
            clusters.append(cluster)
    return clusters


def _joins(left: Word, right: Word, gap: float) -> bool:
    return right.x0 - left.x1 <= gap and all(_ADDRESS_PART.fullmatch(w.text) for w in (left, right))


def _valid_address(text: str) -> bool:
    address = text.strip().lower()
    return bool(EMAIL_RE.match(address)) and ".." not in address


def joined_address(texts: Sequence[str]) -> str | None:
    """The words of one reading as one e-mail address, or None.

    Words are joined without a space only where the ink shows a separator at
    the boundary ("jean-pierre." + "delattre@gmail.com": OCR often splits an
    address after its dot); any other gap means the reading lost something.
    """
    parts = [t.strip() for t in texts if t.strip()]
    if not parts:
        return None
    address = parts[0]
    for part in parts[1:]:
        if address[-1] in _JOINERS or part[0] in _JOINERS:
            address += part
        else:
            return None
    address = address.lower()
    return address if _PLAIN_ADDRESS.fullmatch(address) and _valid_address(address) else None


def letters(texts: Sequence[str]) -> str:
    """A reading's characters without the separators OCR loses or invents."""
    return _SEPARATORS.sub("", "".join(texts)).lower()


def confirmed_address(readings: Sequence[Sequence[str]]) -> str | None:
    """An address one reading gives whole and another confirms letter for letter.

    Each reading is the words of the same crop (the first reading's words, then
    the crop read again under other preparations). A reading that joins into
    a valid address counts only when another reading has exactly its letters
    (dots and spaces aside): the letters are then seen twice, the dots at
    least once. Nothing is added that no reading saw.
    """
    for index, reading in enumerate(readings):
        address = joined_address(reading)
        if address is None:
            continue
        mine = letters([address])
        if any(letters(other) == mine for j, other in enumerate(readings) if j != index):
            return address
    return None
