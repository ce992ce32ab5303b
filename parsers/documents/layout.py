"""Layout: positioned words turned into lines, columns and rows.

One line builder serves PDF words and Tesseract's: a wide gap inside a line
becomes a tab (a cell boundary), and a page with a vertical gutter is also
given column by column and as (left block, right block) rows.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parsers.documents.model import Table

# --------------------------------------------------------------------------
# Layout: words -> lines, columns, rows


# A vertical gap between two lines wider than this many line heights is a
# paragraph break (an empty paragraph, or spacing after a paragraph); wrapped
# lines of one paragraph sit about 0.2 line heights apart, paragraphs 1.3 or more.
PARAGRAPH_GAP = 1.2


@dataclass(frozen=True)
class Word:
    x0: float
    x1: float
    top: float
    bottom: float
    text: str
    # Words of the same seed line (Tesseract's line id); None for PDF words.
    line: Any = None

    @property
    def height(self) -> float:
        return max(1.0, self.bottom - self.top)

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True)
class PageLayout:
    lines: tuple[str, ...]
    columns: str = ""
    column_rows: Table = ()


def _group_lines(words: Sequence[Word]) -> list[list[Word]]:
    """Words on the same visual line, top to bottom, each line left to right."""
    seeds: dict[Any, list[Word]] = {}
    loose: list[Word] = []
    for word in words:
        if word.line is None:
            loose.append(word)
        else:
            seeds.setdefault(word.line, []).append(word)
    groups = list(seeds.values())
    # PDF words: cluster by vertical middle, tolerance half a line height.
    for word in sorted(loose, key=lambda w: (w.middle, w.x0)):
        for group in reversed(groups[-6:]):
            ref = group[-1]
            if abs(ref.middle - word.middle) <= 0.5 * min(ref.height, word.height):
                group.append(word)
                break
        else:
            groups.append([word])
    # Seed lines side by side (Tesseract splits columns into blocks) are one row.
    groups.sort(key=lambda g: min(w.top for w in g))
    merged: list[list[Word]] = []
    for group in groups:
        top, bottom = min(w.top for w in group), max(w.bottom for w in group)
        for other in reversed(merged[-6:]):
            o_top, o_bottom = min(w.top for w in other), max(w.bottom for w in other)
            overlap = min(bottom, o_bottom) - max(top, o_top)
            if overlap > 0.5 * min(bottom - top, o_bottom - o_top) and _disjoint(group, other):
                other.extend(group)
                break
        else:
            merged.append(list(group))
    for group in merged:
        group.sort(key=lambda w: w.x0)
    merged.sort(key=lambda g: statistics.median(w.middle for w in g))
    return merged


def join_lines(
    lines: Sequence[Sequence[Word]], *, paragraphs: bool = True, tabs: bool = True
) -> list[str]:
    """Each line's text; with ``paragraphs``, an empty line where the gap above a
    line is wider than a line of text (an empty paragraph or paragraph spacing),
    so that paragraph breaks survive while visual wraps stay single newlines.
    Without ``tabs``, words are joined by spaces whatever their gaps (inside one
    table cell, where wide gaps are justified text, not cell boundaries)."""
    out: list[str] = []
    last_bottom: float | None = None
    for line in lines:
        if not line:
            continue
        top = min(w.top for w in line)
        height = statistics.median(w.height for w in line)
        if paragraphs and last_bottom is not None and top - last_bottom > PARAGRAPH_GAP * height:
            out.append("")
        out.append(_join_line(line) if tabs else " ".join(w.text for w in line))
        last_bottom = max(w.bottom for w in line)
    return out


def _disjoint(a: Sequence[Word], b: Sequence[Word]) -> bool:
    a0, a1 = min(w.x0 for w in a), max(w.x1 for w in a)
    b0, b1 = min(w.x0 for w in b), max(w.x1 for w in b)
    return a1 <= b0 or b1 <= a0


def _join_line(words: Sequence[Word]) -> str:
    """Words joined by spaces, or by a tab across a wide gap (a cell boundary)."""
    height = statistics.median(w.height for w in words)
    parts = [words[0].text]
    for prev, word in itertools.pairwise(words):
        gap = word.x0 - prev.x1
        parts.append("\t" if gap > 1.6 * height else " ")
        parts.append(word.text)
    return "".join(parts)


def _find_gutter(lines: list[list[Word]], width: float) -> tuple[float, float] | None:
    """A vertical band, near the middle, that no line crosses: two columns."""
    if len(lines) < 4:
        return None
    height = statistics.median(w.height for line in lines for w in line)
    step = max(1.0, width / 400)
    best: tuple[float, float] | None = None
    start: float | None = None
    positions: list[float] = []
    x = width * 0.25
    while x <= width * 0.75 + step:
        positions.append(x)
        x += step
    for x, crossing in zip(positions, _crossings(lines, positions), strict=True):
        if crossing <= max(1, len(lines) // 20) and x <= width * 0.75:
            start = x if start is None else start
        elif start is not None:
            # The band is [start, x - step]: the last position no line crossed.
            if best is None or x - step - start > best[1] - best[0]:
                best = (start, x - step)
            start = None
    if best is None or best[1] - best[0] < 1.5 * height:
        return None
    left = sum(1 for line in lines if any(w.x1 <= best[0] + step for w in line))
    right = sum(1 for line in lines if any(w.x0 >= best[1] - step for w in line))
    if left < 3 or right < 3:
        return None
    return best


def _crossings(lines: list[list[Word]], positions: list[float]) -> list[int]:
    """For each of the (increasing) ``positions``, the lines with a word across it
    (``x0 < x < x1``): each word covers a run of positions, found by bisection."""
    changes = [0] * (len(positions) + 1)
    for line in lines:
        runs = sorted(
            (bisect.bisect_right(positions, w.x0), bisect.bisect_left(positions, w.x1))
            for w in line
            if w.x0 == w.x0 and w.x1 == w.x1  # NaN crosses nothing
        )
        # A line counts once where its words' runs overlap.
        low = high = -1
        for run_low, run_high in runs:
            if run_low >= run_high:
                continue
            if run_low > high:
                if high > low:
                    changes[low] += 1
                    changes[high] -= 1
                low, high = run_low, run_high
            else:
                high = max(high, run_high)
        if high > low:
            changes[low] += 1
            changes[high] -= 1
    return list(itertools.accumulate(changes[:-1]))


def _spans(line: Sequence[Word], g0: float, g1: float) -> bool:
    left = [w for w in line if w.x1 <= (g0 + g1) / 2]
    right = [w for w in line if w.x0 >= (g0 + g1) / 2]
    if len(left) + len(right) < len(line):
        return True  # a word sits on the gutter
    if not left or not right:
        return False
    height = statistics.median(w.height for w in line)
    return min(w.x0 for w in right) - max(w.x1 for w in left) <= 1.6 * height


def _column_views(lines: list[list[Word]], gutter: tuple[float, float]) -> tuple[str, Table]:
    """The page read column by column, and as (left block, right block) rows."""
    g0, g1 = gutter
    # A line running across the gutter with ordinary word spacing (a title)
    # is full width: keep it whole, on the left.
    crossing = [_spans(line, g0, g1) for line in lines]
    left = [
        line if cross else [w for w in line if w.x1 <= g1]
        for line, cross in zip(lines, crossing, strict=True)
    ]
    right = [
        [] if cross else [w for w in line if w.x1 > g1]
        for line, cross in zip(lines, crossing, strict=True)
    ]
    left_text = [_join_line(ws) for ws in left if ws]
    right_text = [_join_line(ws) for ws in right if ws]
    columns = "\n".join(left_text + right_text)
    # Left blocks: consecutive left lines close together (a wrapped label).
    blocks: list[tuple[float, list[str]]] = []
    last_bottom = None
    for ws in left:
        if not ws:
            continue
        top = min(w.top for w in ws)
        height = statistics.median(w.height for w in ws)
        if last_bottom is None or top - last_bottom > 0.9 * height:
            blocks.append((top, []))
        blocks[-1][1].append(_join_line(ws))
        last_bottom = max(w.bottom for w in ws)
    rows: list[tuple[str, ...]] = []
    for index, (top, texts) in enumerate(blocks):
        end = blocks[index + 1][0] if index + 1 < len(blocks) else float("inf")
        values = [
            _join_line(ws) for ws in right if ws and top - 2 <= min(w.top for w in ws) < end - 2
        ]
        rows.append(("\n".join(texts), "\n".join(values)))
    return columns, tuple(rows)


def layout_page(words: Sequence[Word], width: float, *, paragraphs: bool = False) -> PageLayout:
    """Lines (tabs at wide gaps), plus column views when the page has two columns.

    ``paragraphs``: an empty line marks each paragraph break (text pages,
    whose line spacing is regular; not OCR, whose line boxes are not).
    """
    words = [w for w in words if w.text.strip()]
    if not words:
        return PageLayout(())
    lines = _group_lines(words)
    text_lines = tuple(join_lines(lines, paragraphs=paragraphs))
    gutter = _find_gutter(lines, width)
    if gutter is None:
        return PageLayout(text_lines)
    columns, rows = _column_views(lines, gutter)
    return PageLayout(text_lines, columns, rows)
