"""The faster layout helpers give exactly what the plain loops they replace gave."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.documents import Word, layout


def _gutter_by_scanning(lines: list[list[Word]], width: float) -> tuple[float, float] | None:
    """``_find_gutter`` as it was: every position tested against every word."""
    import statistics

    if len(lines) < 4:
        return None
    height = statistics.median(w.height for line in lines for w in line)
    step = max(1.0, width / 400)
    best: tuple[float, float] | None = None
    start: float | None = None
    x = width * 0.25
    while x <= width * 0.75 + step:
        crossing = sum(1 for line in lines if any(w.x0 < x < w.x1 for w in line))
        if crossing <= max(1, len(lines) // 20) and x <= width * 0.75:
            start = x if start is None else start
        elif start is not None:
            if best is None or x - step - start > best[1] - best[0]:
                best = (start, x - step)
            start = None
        x += step
    if best is None or best[1] - best[0] < 1.5 * height:
        return None
    left = sum(1 for line in lines if any(w.x1 <= best[0] + step for w in line))
    right = sum(1 for line in lines if any(w.x0 >= best[1] - step for w in line))
    if left < 3 or right < 3:
        return None
    return best


WIDTH = 600.0
_edges = st.one_of(
    st.floats(min_value=-50, max_value=650, allow_nan=False),
    # On a scan position exactly (the comparisons are strict).
    st.integers(min_value=0, max_value=400).map(lambda i: WIDTH * 0.25 + i * 1.5),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@st.composite
def _word(draw) -> Word:
    x0 = draw(_edges)
    x1 = draw(st.one_of(_edges, st.floats(min_value=0, max_value=120).map(lambda d: x0 + d)))
    top = draw(st.floats(min_value=0, max_value=800))
    return Word(x0, x1, top, top + draw(st.floats(min_value=1, max_value=20)), "mot")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_word(), min_size=1, max_size=8), min_size=0, max_size=40))
def test_gutter_search_matches_the_plain_scan(lines):
    assert layout._find_gutter(lines, WIDTH) == _gutter_by_scanning(lines, WIDTH)


def _two_columns(gap: float) -> list[list[Word]]:
    lines = []
    for row in range(12):
        top = 50.0 + 14 * row
        lines.append(
            [
                Word(50, 120, top, top + 10, "gauche"),
                Word(125, 300 - gap / 2, top, top + 10, "gauche"),
                Word(300 + gap / 2, 420, top, top + 10, "droite"),
                Word(425, 550, top, top + 10, "droite"),
            ]
        )
    return lines


def test_gutter_search_on_real_shaped_pages():
    for gap in (0.0, 3.0, 14.0, 15.0, 16.5, 40.0):
        lines = _two_columns(gap)
        assert layout._find_gutter(lines, WIDTH) == _gutter_by_scanning(lines, WIDTH)
    assert layout._find_gutter(_two_columns(40.0), WIDTH) is not None


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.lists(_word(), min_size=1, max_size=8), min_size=0, max_size=30),
    st.floats(min_value=1, max_value=3),
)
def test_crossings_count_each_line_once_per_position(lines, step):
    positions = [WIDTH * 0.25 + i * step for i in range(int(WIDTH * 0.5 / step))]
    expected = [sum(1 for line in lines if any(w.x0 < x < w.x1 for w in line)) for x in positions]
    assert layout._crossings(lines, positions) == expected
