"""PDF pages through pdfium: words as pdfplumber would build them, ten times faster.

pdfium's characters are grouped exactly as pdfplumber groups pdfminer's; a
page whose reading could differ is left to pdfplumber. Tables are searched
only on pages that draw lines or boxes, over their graphics alone.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parsers.documents.layout import PageLayout, Word, _group_lines, join_lines, layout_page
from parsers.documents.marks import box_words
from parsers.documents.model import MIN_TEXT_CHARS, Table
from parsers.text import nfc


@dataclass
class _PageRead:
    """One page as read: its layout, tables, whether it needs OCR, what went wrong."""

    layout: PageLayout
    tables: tuple[Table, ...] = ()
    needs_ocr: bool = False
    problem: str = ""


# --------------------------------------------------------------------------
# PDF pages through pdfium
#
# pdfminer (under pdfplumber) interprets every glyph in Python; pdfium does it
# in C, about ten times faster. The words are rebuilt from pdfium's
# characters exactly as pdfplumber's ``extract_words(x_tolerance=2,
# y_tolerance=2)`` builds them from pdfminer's, with pdfminer's character
# boxes (origin + advance wide, font size high), so the layout code sees the
# same words. A page is left to pdfplumber whenever pdfium's reading could
# differ: rotated page or text, crop box or origin that pdfplumber would
# shift, a character without a Unicode mapping (pdfminer's "(cid:N)", which
# sends the page to OCR), or too little text (maybe a scan).

# pdfplumber's ligature expansion (``expand_ligatures=True``).
_LIGATURES = {"ﬀ": "ff", "ﬃ": "ffi", "ﬄ": "ffl", "ﬁ": "fi", "ﬂ": "fl", "ﬆ": "st", "ﬅ": "st"}
_SPACES = frozenset((9, 10, 13, 32, 0xA0))
_MAX_PAGE_OBJECTS = 20_000
_NOT_WORD_CHARACTER = re.compile(r"\W")


def _letters(words: Sequence[Word]) -> int:
    """How many word characters (letters, digits, "_") the words hold."""
    return sum(len(_NOT_WORD_CHARACTER.sub("", w.text)) for w in words)


@dataclass
class _PdfiumPage:
    """A page's words as pdfplumber would give them, and whether it draws paths."""

    words: list[Word]
    width: float
    height: float
    # Lines or boxes drawn (perhaps a ruled table): pdfplumber's table search runs.
    ruled: bool

    def layout(self, widgets: list[Any], number: int) -> PageLayout:
        _label_widgets(widgets, number, words=self.words, height=self.height)
        return layout_page(self.words, self.width, paragraphs=True)


def _pdfium_pages(data: bytes, wanted: int) -> dict[int, _PdfiumPage]:
    """The first ``wanted`` pages that pdfium reads faithfully; {} if it cannot open the file."""
    import pypdfium2 as pdfium

    out: dict[int, _PdfiumPage] = {}
    try:
        pdf = pdfium.PdfDocument(data, password="")
    except Exception:
        return {}
    try:
        for number in range(1, min(wanted, len(pdf)) + 1):
            try:
                page = pdf[number - 1]
                try:
                    read = _pdfium_page(page)
                finally:
                    page.close()
            except Exception:  # noqa: S112 - that page is read the full way
                continue
            if read is not None:
                out[number] = read
    finally:
        pdf.close()
    return out


def _pdfium_page(page: Any) -> _PdfiumPage | None:
    if page.get_rotation() % 360:
        return None
    box = tuple(page.get_mediabox())
    if box[:2] != (0, 0) or tuple(page.get_cropbox()) != box:
        return None
    width, height = page.get_size()
    textpage = page.get_textpage()
    try:
        chars = _pdfium_chars(textpage, height)
    finally:
        textpage.close()
    if chars is None:
        return None
    words = _plumber_words(chars)
    if _letters(words) < MIN_TEXT_CHARS:
        return None  # maybe a scan: the full way decides
    ruled = _draws_paths(page)
    if ruled is None:
        return None
    return _PdfiumPage(words, width, height, ruled)


def _pdfium_chars(textpage: Any, height: float) -> list[list[Any]] | None:
    """[x0, x1, top, bottom, text, loose x1] per character, in pdfminer's geometry.

    None when a character has no faithful reading (no Unicode, rotated).
    """
    import ctypes

    import pypdfium2.raw as pdfium_c

    raw = textpage.raw
    count = min(textpage.count_chars(), 100_000)
    codes = _pdfium_codes(raw, count)
    is_generated = pdfium_c.FPDFText_IsGenerated
    map_error = pdfium_c.FPDFText_HasUnicodeMapError
    loose_box = pdfium_c.FPDFText_GetLooseCharBox
    char_matrix = pdfium_c.FPDFText_GetMatrix
    char_box = pdfium_c.FPDFText_GetCharBox
    font_size = pdfium_c.FPDFText_GetFontSize
    loose = pdfium_c.FS_RECTF()
    matrix = pdfium_c.FS_MATRIX()
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    origin_x, origin_y = ctypes.c_double(), ctypes.c_double()
    glyph_width = ctypes.c_float()
    # The text object of a character, as a plain address (the binding's own
    # prototype returns a pointer object, slower to make and to compare).
    text_object = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)(
        ctypes.cast(pdfium_c.FPDFText_GetTextObject, ctypes.c_void_p).value
    )
    raw_address = ctypes.cast(raw, ctypes.c_void_p).value
    # Matrix and font size belong to the text object: read once per object.
    current = None
    a = d = size = 0.0
    chars: list[list[Any]] = []
    for index, code in enumerate(codes):
        if code in _SPACES and is_generated(raw, index) == 1:
            # pdfium's own word and line breaks: pdfplumber goes by the gaps.
            continue
        if (
            (code < 32 and code not in _SPACES)
            or code >= 0x110000
            or 0xD800 <= code < 0xE000
            or code in (0xFFFD, 0xFFFE, 0xFFFF)
            or map_error(raw, index)
        ):
            return None
        obj = text_object(raw_address, index)
        if obj is None or obj != current:
            if not char_matrix(raw, index, matrix):
                return None
            a, d = matrix.a, matrix.d
            if not (a * d > 0 and matrix.b * matrix.c <= 0):
                return None  # not upright: pdfplumber reads it another way
            size = font_size(raw, index)
            current = obj
        if not (loose_box(raw, index, loose) and char_box(raw, index, left, right, bottom, top)):
            return None
        x0, x1 = loose.left, loose.right
        # pdfium's loose box also covers the glyph's ink (an italic or an "f"
        # overhanging its advance); pdfminer's box is the origin plus the advance.
        if x0 == left.value or x1 == right.value:
            pdfium_c.FPDFText_GetCharOrigin(raw, index, origin_x, origin_y)
            x0 = origin_x.value
            if x1 == right.value:
                handle = ctypes.cast(obj, pdfium_c.FPDF_PAGEOBJECT) if obj else None
                font = pdfium_c.FPDFTextObj_GetFont(handle) if handle else None
                if not font or not pdfium_c.FPDFFont_GetGlyphWidth(font, code, size, glyph_width):
                    return None
                x1 = x0 + a * glyph_width.value
        char_bottom = height - loose.bottom
        chars.append([x0, x1, char_bottom - size * d, char_bottom, chr(code), loose.right])
    # A ligature comes as one character per letter, all at the glyph's origin;
    # pdfminer has one character as wide as the glyph.
    for a_char, b_char in itertools.pairwise(chars):
        if a_char[0] == b_char[0] and a_char[2] == b_char[2]:
            a_char[1] = b_char[1] = max(a_char[5], b_char[5])
    return chars


def _pdfium_codes(raw: Any, count: int) -> list[int]:
    """The Unicode code of each character, read in one call when possible."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    buffer = (ctypes.c_ushort * (count + 1))()
    written = pdfium_c.FPDFText_GetText(raw, 0, count, buffer) if count else 0
    units = list(buffer[: max(0, written - 1)])
    if len(units) == count and not any(0xD800 <= u < 0xE000 for u in units):
        return units  # one UTF-16 unit per character
    return [pdfium_c.FPDFText_GetUnicode(raw, index) for index in range(count)]


def _plumber_words(chars: list[list[Any]]) -> list[Word]:
    """pdfplumber's ``extract_words(x_tolerance=2, y_tolerance=2)`` over upright characters."""
    # Lines: characters clustered by top, each value within 2 of the previous one.
    line_of: dict[float, int] = {}
    line = -1
    last = -math.inf
    for value in sorted({c[2] for c in chars}):
        if value > last + 2:
            line += 1
        line_of[value] = line
        last = value
    lines: dict[int, list[list[Any]]] = {}
    for char in chars:
        lines.setdefault(line_of[char[2]], []).append(char)
    words: list[Word] = []
    w_x0 = w_x1 = w_top = w_bottom = prev_x0 = prev_x1 = prev_top = 0.0
    for key in sorted(lines):
        text: list[str] = []
        for x0, x1, top, bottom, char, _ in sorted(lines[key], key=_first):
            if char.isspace():
                if text:
                    words.append(Word(w_x0, w_x1, w_top, w_bottom, nfc("".join(text))))
                    text = []
                continue
            if text and (x0 < prev_x0 or x0 > prev_x1 + 2 or abs(top - prev_top) > 2):
                words.append(Word(w_x0, w_x1, w_top, w_bottom, nfc("".join(text))))
                text = []
            if text:
                w_x1, w_top, w_bottom = max(w_x1, x1), min(w_top, top), max(w_bottom, bottom)
            else:
                w_x0, w_x1, w_top, w_bottom = x0, x1, top, bottom
            text.append(_LIGATURES.get(char, char))
            prev_x0, prev_x1, prev_top = x0, x1, top
        if text:
            words.append(Word(w_x0, w_x1, w_top, w_bottom, nfc("".join(text))))
    return words


def _first(item: Sequence[Any]) -> Any:
    return item[0]


def _draws_paths(page: Any) -> bool | None:
    """Whether the page paints any path (form XObjects included); None if too many objects."""
    import pypdfium2.raw as pdfium_c

    pending = [(pdfium_c.FPDFPage_CountObjects(page.raw), page.raw, False)]
    seen = 0
    while pending:
        count, parent, is_form = pending.pop()
        for index in range(count):
            seen += 1
            if seen > _MAX_PAGE_OBJECTS:
                return None
            if is_form:
                obj = pdfium_c.FPDFFormObj_GetObject(parent, index)
            else:
                obj = pdfium_c.FPDFPage_GetObject(parent, index)
            kind = pdfium_c.FPDFPageObj_GetType(obj)
            if kind == pdfium_c.FPDF_PAGEOBJ_PATH:
                return True
            if kind == pdfium_c.FPDF_PAGEOBJ_FORM:
                pending.append((pdfium_c.FPDFFormObj_CountObjects(obj), obj, True))
    return False


def _graphics_layout(page: Any) -> Any:
    """pdfplumber's ``page.layout`` without the text: lines, boxes, curves and images only.

    The table search needs only the page's edges; skipping the glyphs (and
    their fonts) is most of pdfminer's work. Same interpreter, same device.
    """
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfplumber.page import PDFPageAggregatorWithMarkedContent

    class NoFonts(PDFResourceManager):
        def get_font(self, objid: object, spec: Any) -> Any:
            return None

    class GraphicsOnly(PDFPageInterpreter):
        def do_Tf(self, fontid: Any, fontsize: Any) -> None:
            pass

        def do_TJ(self, seq: Any) -> None:
            pass

        def do_Tj(self, s: Any) -> None:
            pass

        def do__q(self, s: Any) -> None:
            pass

        def do__w(self, aw: Any, ac: Any, s: Any) -> None:
            pass

    resources = NoFonts()
    device = PDFPageAggregatorWithMarkedContent(
        resources, pageno=page.page_number, laparams=page.pdf.laparams
    )
    GraphicsOnly(resources, device).process_page(page.page_obj)
    return device.get_result()


def _page_tables(page: Any, words: Sequence[Word]) -> tuple[Table, ...]:
    tables: list[Table] = []
    for table in page.find_tables()[:20]:
        # Every cell lies within the table: its words are looked for among the table's.
        inside = _words_in(table.bbox, words)
        rows = tuple(
            tuple(_cell_text(cell, inside) for cell in row.cells) for row in table.rows[:200]
        )
        if len(rows) >= 1 and max((len(r) for r in rows), default=0) >= 2:
            tables.append(rows)
    return tuple(tables)


def _read_page(page: Any, widgets: list[Any], number: int) -> _PageRead:
    """One page the full way: pdfplumber words and tables."""
    words = [
        Word(w["x0"], w["x1"], w["top"], w["bottom"], nfc(w["text"]))
        for w in page.extract_words(x_tolerance=2, y_tolerance=2, keep_blank_chars=False)
    ]
    if not any(w.page == number for w in widgets):
        # A flattened form: its boxes are drawings, ticked or not.
        words += box_words([*page.rects, *page.curves, *page.lines], words)
    layout = layout_page(words, float(page.width), paragraphs=True)
    tables = _page_tables(page, words)
    _label_widgets(widgets, number, words=words, height=float(page.height))
    letters = _letters(words)
    graphics = len(page.images) + (1 if len(page.curves) + len(page.rects) > 40 else 0)
    # Fonts without a character map come out as "(cid:42)": the page must be
    # read from its image.
    garbled = sum(1 for w in words if "(cid:" in w.text) > 0.3 * max(1, len(words))
    return _PageRead(layout, tables, garbled or (letters < MIN_TEXT_CHARS and graphics > 0))


def _cell_text(bbox: Any, words: Sequence[Word]) -> str:
    """A table cell's text, line by line, paragraph breaks kept (one cell: no tabs)."""
    if bbox is None:
        return ""
    inside = _words_in(bbox, words)
    if not inside:
        return ""
    return "\n".join(join_lines(_group_lines(inside), tabs=False)).strip()


def _words_in(bbox: Any, words: Sequence[Word]) -> list[Word]:
    """The words whose middle lies in ``bbox`` (x0, top, x1, bottom), give or take a point."""
    x0, top, x1, bottom = bbox
    return [
        w
        for w in words
        if x0 - 1 <= (w.x0 + w.x1) / 2 <= x1 + 1 and top - 1 <= w.middle <= bottom + 1
    ]


def _label_widgets(widgets: list[Any], number: int, *, words: list[Word], height: float) -> None:
    """Printed text next to each widget of this page: its label, or its option text."""
    for widget in widgets:
        if widget.page != number:
            continue
        x0, y0, x1, y1 = widget.rect
        top, bottom = height - max(y0, y1), height - min(y0, y1)
        x0, x1 = min(x0, x1), max(x0, x1)
        same_row = [w for w in words if top <= w.middle <= bottom]
        left = [w for w in same_row if w.x1 <= x0 + 2 and w.x0 >= x0 - 260]
        right = sorted((w for w in same_row if w.x0 >= x1 - 2), key=lambda w: w.x0)
        right_text: list[str] = []
        edge = x1
        for w in right:
            if w.x0 - edge > 14:
                break
            right_text.append(w.text)
            edge = w.x1
        # The line just above: for a small box (a radio button) it starts at
        # the box and runs right; for a text box it spans the box.
        reach = max(x1, x0 + 300)
        above = [
            w for w in words if top - 30 <= w.bottom <= top + 2 and w.x1 > x0 - 5 and w.x0 < reach
        ]
        if above:
            nearest = max(w.bottom for w in above)
            above = [w for w in above if w.bottom >= nearest - 4]
        label_left = " ".join(w.text for w in sorted(left, key=lambda w: w.x0))
        if not label_left and above:
            label_left = " ".join(w.text for w in sorted(above, key=lambda w: w.x0))
        widget.label_left = label_left
        widget.label_right = " ".join(right_text)
