"""A scanned or photographed page made fit for Tesseract.

Tesseract reads a flat, evenly lit, upright page of about 300 dpi nearly
word for word; what applicants send is rarely that. Measured on the reading
corpus (``bench.accuracy``), phone photos read as they are lost a field in
two: text lines bent by the perspective were cut into pieces, the dark
corner of an unevenly lit page lost its words, and at 120 dpi small letters
ran together. So, before OCR, with Pillow's C operations only (no Python
loop over full-size pixels):

- ``find_page``: a photo's page, brighter than what lies around it, is found
  as a quadrilateral and warped flat (``flatten_page``);
- ``even_light``: the page is divided by its own blurred background, so
  paper is white and ink dark from corner to corner;
- ``sharpen_photo``: a photo's edges, blurred by the warp from 120 to 300
  dpi, sharpened back;
- ``deskew_angle``: a scan's small rotation is found by projection profiles;
- ``ocr_scale``: the page is brought to about 300 dpi;
- ``erase_rules``: the long ruled lines of form fields and table cells are
  whitened, so that a box's edge is not read as "(", "[" or "l" before the
  value beside it.
"""

from __future__ import annotations

import math
from typing import Any

# Resolution Tesseract reads best; a page is scaled towards it.
TARGET_DPI = 300
# An A4 page's width and height in inches: the scale of a photographed page, whose
# declared resolution means nothing.
PAGE_WIDTH_INCHES, PAGE_HEIGHT_INCHES = 8.27, 11.69
# Side of the thumbnail the page is looked for in (pixels).
_THUMB = 300
# A photo's page covers between these shares of the picture.
_PAGE_AREA = (0.3, 0.97)
# Skews tried for a scan, in degrees (a scanner's feed is off by a degree or two).
_SKEWS = [step / 4 for step in range(-12, 13)]
# A ruled line is at least this long, in points (1/72 inch), and fills
# ``_CELLS`` cells in a row. Horizontal: a field's box or a table's rule runs
# 90 pt or more, while a blurred bold word (solid across its letters) runs
# 70 pt at most ("prévisionnelle"). Vertical: a one-line field's box is 20 pt
# high; a letter is 12 pt at most (with a rule it touches, 15 pt).
_RULE_POINTS = 80
_EDGE_POINTS = 18
_CELLS = 6
# Unsharp mask of a flattened photo: radius (pixels at 300 dpi), strength (%).
_SHARPEN = (1, 100)
# Rows of a page divided at once (memory: see ``_divide``).
_STRIP_ROWS = 256


def otsu_threshold(histogram: list[int]) -> int:
    """The grey level that best splits a histogram in two classes (Otsu)."""
    total = sum(histogram)
    weighted = sum(level * count for level, count in enumerate(histogram))
    below = below_weighted = 0
    best_level, best_variance = 0, -1.0
    for level, count in enumerate(histogram[:256]):
        below += count
        if below == 0:
            continue
        above = total - below
        if above == 0:
            break
        below_weighted += level * count
        mean_below = below_weighted / below
        mean_above = (weighted - below_weighted) / above
        variance = below * above * (mean_below - mean_above) ** 2
        if variance > best_variance:
            best_level, best_variance = level, variance
    return best_level


def _divide(image: Any, background: Any, *, scale: int) -> Any:
    """``image * scale / background``, clipped to 0-255 (both grey, same size).

    Done in strips: ImageMath works on 32-bit pixels, and a whole 300 dpi
    page at once took 160 MB more (the sandbox child's budget is 200 MB).
    """
    from PIL import Image, ImageMath

    out = Image.new("L", image.size)
    for top in range(0, image.height, _STRIP_ROWS):
        box = (0, top, image.width, min(image.height, top + _STRIP_ROWS))
        strip = ImageMath.lambda_eval(
            lambda n: n["convert"](n["min"](n["a"] * scale / (n["b"] + 1), 255), "L"),
            a=image.crop(box),
            b=background.crop(box),
        )
        out.paste(strip, box)
    return out


def find_page(grey: Any) -> list[tuple[float, float]] | None:
    """Corners (top-left, top-right, bottom-right, bottom-left) of a photographed
    page lighter than its surroundings, or None (a scan: the page is the picture)."""
    from PIL import ImageFilter

    small = grey.copy()
    small.thumbnail((_THUMB, _THUMB))
    scale = grey.width / small.width
    # Light falls unevenly on a photo: the page's dark corner may be darker
    # than the table in the bright one. Dividing by a wide blur compares each
    # pixel with its surroundings instead.
    lit = _divide(small, small.filter(ImageFilter.GaussianBlur(small.width / 4)), scale=128)
    threshold = otsu_threshold(lit.histogram())
    # Opening: specks of light outside the page and ink inside it go away.
    mask = (
        lit.point(lambda v: 255 if v > threshold else 0)
        .filter(ImageFilter.MinFilter(5))
        .filter(ImageFilter.MaxFilter(5))
    )
    width, height = mask.size
    area = mask.histogram()[255] / (width * height)
    if not _PAGE_AREA[0] <= area <= _PAGE_AREA[1]:
        return None
    box = mask.getbbox()
    if box is None:
        return None
    # Border strips mostly dark: something lies around the page.
    strips = [
        mask.crop((0, 0, width, 3)),
        mask.crop((0, height - 3, width, height)),
        mask.crop((0, 0, 3, height)),
        mask.crop((width - 3, 0, width, height)),
    ]
    lit_border = sum(s.histogram()[255] for s in strips) / sum(s.width * s.height for s in strips)
    if lit_border > 0.5:
        return None
    corners = _extreme_corners(mask)
    if corners is None:
        return None
    quad = [((x + 0.5) * scale, (y + 0.5) * scale) for x, y in corners]
    if not _plausible(quad, area=grey.width * grey.height):
        return None
    return quad


def _extreme_corners(mask: Any) -> list[tuple[int, int]] | None:
    """The lit pixels furthest towards each corner (x+y, x−y extremes)."""
    pixels = mask.load()
    width, height = mask.size
    best: dict[str, tuple[int, int, int]] = {}
    for y in range(height):
        for x in range(width):
            if not pixels[x, y]:
                continue
            for name, value in (("tl", -x - y), ("tr", x - y), ("br", x + y), ("bl", y - x)):
                if name not in best or value > best[name][0]:
                    best[name] = (value, x, y)
    if len(best) < 4:
        return None
    return [(best[n][1], best[n][2]) for n in ("tl", "tr", "br", "bl")]


def _plausible(quad: list[tuple[float, float]], *, area: float) -> bool:
    """A convex four-sided page, not a sliver: sides of comparable lengths."""
    sides = [math.dist(quad[i], quad[(i + 1) % 4]) for i in range(4)]
    if min(sides) < 0.25 * max(sides):
        return False
    cross = []
    for i in range(4):
        (ax, ay), (bx, by), (cx, cy) = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        cross.append((bx - ax) * (cy - by) - (by - ay) * (cx - bx))
    if not (all(c > 0 for c in cross) or all(c < 0 for c in cross)):
        return False
    shoelace = 0.5 * abs(
        sum(quad[i][0] * quad[(i + 1) % 4][1] - quad[(i + 1) % 4][0] * quad[i][1] for i in range(4))
    )
    return shoelace >= _PAGE_AREA[0] * area


def flatten_page(grey: Any, quad: list[tuple[float, float]], *, width: int) -> Any:
    """The page inside ``quad`` warped to an upright rectangle ``width`` pixels wide."""
    from PIL import Image

    top = math.dist(quad[0], quad[1])
    bottom = math.dist(quad[3], quad[2])
    left = math.dist(quad[0], quad[3])
    right = math.dist(quad[1], quad[2])
    height = round(width * (left + right) / max(1.0, top + bottom))
    target = [(0, 0), (width, 0), (width, height), (0, height)]
    coefficients = _perspective(target, quad)
    return Image.Image.transform(
        grey,
        (width, height),
        Image.Transform.PERSPECTIVE,
        coefficients,
        Image.Resampling.BILINEAR,
        fillcolor=255,
    )


def _perspective(
    target: list[tuple[float, float]], source: list[tuple[float, float]]
) -> list[float]:
    """Pillow's eight coefficients mapping output (target) points to input (source) ones."""
    rows: list[list[float]] = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, v])
    # Gauss-Jordan elimination with partial pivoting (8 unknowns).
    for col in range(8):
        pivot = max(range(col, 8), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(8):
            if r != col and rows[r][col]:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][8] / rows[i][i] for i in range(8)]


def even_light(grey: Any) -> Any:
    """The page divided by its blurred background: white paper, dark ink, everywhere."""
    from PIL import Image, ImageFilter

    step = 8
    small = grey.resize((max(1, grey.width // step), max(1, grey.height // step)), Image.BOX)
    # The maximum over a few letters' width is the paper under them.
    background = (
        small.filter(ImageFilter.MaxFilter(7))
        .filter(ImageFilter.GaussianBlur(3))
        .resize(grey.size, Image.Resampling.BILINEAR)
    )
    return _divide(grey, background, scale=255)


def sharpen_photo(grey: Any) -> Any:
    """A flattened photo's edges sharpened back (unsharp mask, one pixel at 300 dpi).

    A phone photo's page is about 120 dpi, blown up to 300 by the warp: the
    edges of a tick box or of a ticked box's cross spread over three or four
    pixels, Tesseract's word boxes grow with them, and the box reader's search
    took in the next line's ink (corpus 083, 085, 086: the category's boxes
    not found, read "À", "Æ", "&)"). Sharpened, all three read.
    """
    from PIL import ImageFilter

    return grey.filter(
        ImageFilter.UnsharpMask(radius=_SHARPEN[0], percent=_SHARPEN[1], threshold=2)
    )


def deskew_angle(grey: Any) -> float:
    """Degrees to turn a scan counter-clockwise so its lines run level (0: leave it).

    Lines of text are level when the rows of the page are most unequal
    (dark text rows, white gaps between): the variance of the row means is
    largest at the right angle.
    """
    from PIL import Image, ImageOps

    small = grey.copy()
    small.thumbnail((1000, 1000))
    ink = ImageOps.invert(
        small.point(lambda v: 255 if v > otsu_threshold(small.histogram()) else 0)
    )
    best_angle, best_score = 0.0, -1.0
    scores: dict[float, float] = {}
    for angle in _SKEWS:
        turned = ink.rotate(angle, resample=Image.Resampling.NEAREST, fillcolor=0)
        rows = turned.resize((1, turned.height), Image.Resampling.BOX).get_flattened_data()
        mean = sum(rows) / len(rows)
        score = sum((r - mean) ** 2 for r in rows)
        scores[angle] = score
        if score > best_score:
            best_angle, best_score = angle, score
    # Turning a level page does not pay: keep 0 unless clearly better.
    if best_angle and best_score < 1.02 * scores[0.0]:
        return 0.0
    return best_angle


def erase_rules(grey: Any, *, dpi: int) -> Any:
    """The page with its long horizontal and vertical ruled lines whitened.

    Ink is averaged over cells a quarter of a rule long (``reduce``); a rule
    fills four cells in a row, letters fade. Those runs, with the partly
    filled cells at their ends, grown back to full size, are painted white.
    """
    from PIL import Image, ImageChops

    dark = grey.point(lambda v: 255 if v < 200 else 0)
    found = []
    for points, horizontal in ((_RULE_POINTS, True), (_EDGE_POINTS, False)):
        cell = max(2, round(points * dpi / 72 / _CELLS))
        reduced = dark.reduce((cell, 1) if horizontal else (1, cell))
        runs = _runs(reduced.point(lambda v: 255 if v > 235 else 0), horizontal=horizontal)
        ends = _shift_max(runs, horizontal=horizontal, steps=(-1, 1))
        partly = reduced.point(lambda v: 255 if v > 60 else 0)
        found.append(ImageChops.lighter(runs, ImageChops.darker(ends, partly)))
    del dark
    # Painted strip by strip, so that the full-size masks never all live at
    # once (memory: see ``_divide``); two rows of margin for the growth.
    out = grey.copy()
    width, height = grey.size
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(height, top + _STRIP_ROWS)
        t0, t1 = max(0, top - 2), min(height, bottom + 2)
        parts = [
            runs.resize(
                (width, t1 - t0),
                Image.Resampling.NEAREST,
                box=(0, t0 * runs.height / height, runs.width, t1 * runs.height / height),
            )
            for runs in found
        ]
        mask = ImageChops.lighter(parts[0], parts[1])
        # Grown by two pixels for the rule's blurred edges (by offsets: a
        # rank filter on the full page costs seconds).
        grown = _shift_max(mask, horizontal=True, steps=(-2, -1, 1, 2))
        grown = _shift_max(grown, horizontal=False, steps=(-2, -1, 1, 2))
        # The ink under it, and the grey of those edges.
        ink = grey.crop((0, t0, width, t1)).point(lambda v: 255 if v < 230 else 0)
        rules = ImageChops.multiply(grown, ink).crop((0, top - t0, width, bottom - t0))
        out.paste(255, (0, top, width, bottom), rules)
    return out


def _runs(full: Any, *, horizontal: bool) -> Any:
    """Cells belonging to a run of ``_CELLS`` full cells along the axis (an opening)."""
    from PIL import ImageChops

    start = full
    for step in range(1, _CELLS):
        start = ImageChops.darker(start, _offset(full, step, horizontal=horizontal))
    return _shift_max(start, horizontal=horizontal, steps=[-s for s in range(1, _CELLS)])


def _shift_max(image: Any, *, horizontal: bool, steps: Any) -> Any:
    from PIL import ImageChops

    out = image
    for step in steps:
        out = ImageChops.lighter(out, _offset(image, step, horizontal=horizontal))
    return out


def _offset(image: Any, step: int, *, horizontal: bool) -> Any:
    """``image`` moved by ``-step`` cells (pixel x+step lands on x), wrapping around."""
    from PIL import ImageChops

    return ImageChops.offset(image, -step if horizontal else 0, 0 if horizontal else -step)
