"""One document: every candidate value read from one ``DocumentText``.

Owns ``_read_document`` (form, table, text and OCR layers of one document),
the choice between the column and line views of a page, and tables split
across pages rejoined.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from parsers.documents import DocumentText
from parsers.dossier.cells import (
    _cell_hits,
    _cell_label,
    _explode_inline,
    _Hit,
    _page_label,
    _Reading,
    _stream_hits,
)
from parsers.dossier.forms import (
    _form_hits,
)
from parsers.dossier.glyphs import (
    _restored,
)
from parsers.dossier.ink import ink_at_line_ends
from parsers.dossier.labels import (
    LabelIndex,
    label_index,
)

if TYPE_CHECKING:
    from parsers.rules import Rules


# --------------------------------------------------------------------------
# One document


def _describe_line(doc: DocumentText, layer: str) -> Any:
    def describe(page: int | None, line: str) -> str:
        shown = " ".join(line.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "…"
        where = _page_label(doc, page)
        if layer == "ocr":
            return f"ocr line '{shown}' on {where}"
        return f"line '{shown}' on {where}"

    return describe


def _read_document(doc: DocumentText, rules: Rules) -> _Reading:
    index = label_index(rules)
    doc = ink_at_line_ends(_restored(doc, rules))
    reading = _Reading(doc)
    _form_hits(reading, index, rules)
    ocr_pages = set(doc.ocr_pages)
    cell_hits: list[_Hit] = []
    streams: dict[str, list[tuple[int | None, str]]] = {"text": [], "ocr": []}
    all_tables = _rejoined_tables(doc, index)
    for number, page_text in enumerate(doc.pages, start=1):
        page = number if doc.kind in ("pdf", "image") else None
        tables = all_tables[number - 1] if number - 1 < len(all_tables) else ()
        # A two-column page reads column by column; otherwise line by line.
        columns = doc.columns[number - 1] if number - 1 < len(doc.columns) else ""
        if columns and number in ocr_pages and _better_view(columns, page_text, index) != columns:
            columns = ""  # and its (left block, right block) rows are not pairs either
        cell_hits += _page_cells(
            doc,
            number=number,
            page=page,
            index=index,
            is_ocr=number in ocr_pages,
            tables=tables,
            columns=bool(columns),
        )
        stream = streams["ocr" if number in ocr_pages else "text"]
        stream.extend((page, line) for line in (columns or page_text).split("\n"))
    line_hits: list[_Hit] = []
    for kind, lines in streams.items():
        # One stream per document, so that a value runs on across a page break.
        layer = "ocr" if kind == "ocr" else ("docx" if doc.kind == "docx" else "text")
        describe = _describe_line(doc, layer)
        hits = _stream_hits(lines, index, fuzzy=kind == "ocr", describe=describe, layer=layer)
        line_hits += _explode_inline(hits, index)
    # Where a table has a field's label cell, the table says what the field
    # holds (even nothing); the same words read as lines do not.
    in_tables = {(h.page, h.key) for h in cell_hits}
    page_hits = cell_hits + [h for h in line_hits if (h.page, h.key) not in in_tables]
    density: dict[int | None, set[str]] = {}
    for hit in page_hits:
        density.setdefault(hit.page, set()).add(hit.key)
    for order, hit in enumerate(page_hits):
        hit.density = max(hit.density, len(density[hit.page]))
        hit.order = order
    reading.hits.extend(page_hits)
    for hit in reading.hits:
        reading.labels[hit.key] = reading.labels.get(hit.key, False) or hit.sure
    return reading


def _better_view(columns: str, lines: str, index: LabelIndex) -> str:
    """The reading of an OCR'd page that finds more values: column by column, or line by line.

    A scanned two-column table whose rows sit close together is found to
    have two columns, but its labels then cannot be paired with their values;
    read line by line, each row gives "label<tab>value".
    """

    def found(text: str) -> int:
        pairs = [(None, line) for line in text.split("\n")]
        hits = _stream_hits(pairs, index, fuzzy=True, describe=lambda p, t: "", layer="ocr")
        return len({h.key for h in hits if h.raw.strip()})

    return lines if found(lines) > found(columns) else columns


def _page_cells(
    doc: DocumentText,
    *,
    number: int,
    page: int | None,
    index: LabelIndex,
    is_ocr: bool,
    tables: Sequence[Any],
    columns: bool = True,
) -> list[_Hit]:
    """Hits from the tables of one page and from its two-column rows."""
    layer = "ocr" if is_ocr else ("docx" if doc.kind == "docx" else "text")
    table_layer = "ocr" if is_ocr else ("docx" if doc.kind == "docx" else "table")
    where = _page_label(doc, page)
    hits: list[_Hit] = []
    for table in tables:
        kind = "docx table" if doc.kind == "docx" else "table row"
        source = f"{kind} on {where}" if page else f"{kind} in {doc.filename}"
        hits += _cell_hits(table, index, fuzzy=is_ocr, source=source, layer=table_layer, page=page)
    rows = doc.column_rows[number - 1] if columns and number - 1 < len(doc.column_rows) else ()
    if rows:
        source = f"two-column row on {where}"
        hits += _cell_hits(
            rows, index, fuzzy=is_ocr, source=source, layer=layer, page=page, pairs_only=True
        )
    return _explode_inline(hits, index)


def _rejoined_tables(doc: DocumentText, index: LabelIndex) -> list[tuple[Any, ...]]:
    """The tables of each page, a row split across a page break made whole again.

    A table row that starts at the foot of a page and goes on at the top of
    the next (its label cell continued, or empty) is one row: it is given on
    the first page, and dropped from the second.
    """
    pages: list[list[Any]] = [list(tables) for tables in doc.tables]
    for number in range(1, len(pages)):
        before, after = pages[number - 1], pages[number]
        if not before or not after or not before[-1] or not after[0]:
            continue
        last, first = before[-1][-1], after[0][0]
        if len(last) != len(first) or len(first) < 2:
            continue
        label_cell, next_label = last[0].strip(), first[0].strip()
        if next_label and _cell_label(next_label, index, False) is not None:
            continue  # the next page starts a new row
        if not (
            _cell_label(label_cell, index, False) or index.is_prefix(" ".join(label_cell.split()))
        ):
            continue
        merged = tuple(
            _join_parts(a, b, label=column == 0)
            for column, (a, b) in enumerate(zip(last, first, strict=True))
        )
        before[-1] = (*before[-1][:-1], merged)
        after[0] = after[0][1:]
        if not after[0]:
            after.pop(0)
    return [tuple(tables) for tables in pages]


def _join_parts(top: str, bottom: str, *, label: bool) -> str:
    """Two parts of one cell, cut by a page break."""
    top, bottom = top.strip(), bottom.strip()
    if not top or not bottom:
        return top or bottom
    if label:
        return f"{top}\n{bottom}"
    # A cut after a full sentence, the next part starting anew: a paragraph break.
    if re.search(r"[.!?…]$", top) and (bottom[0].isupper() or bottom[0].isdigit()):
        return f"{top}\n\n{bottom}"
    return f"{top}\n{bottom}"
