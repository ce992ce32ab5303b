"""Candidate values (hits) from text lines and from table cells and rows.

Owns ``_Hit``/``_Reading``, the label-line stream of a text, wrapped labels,
several labels on one line, and the label cell / value cell pairs of tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from parsers.documents import DocumentText
from parsers.documents.ink import UNREAD_INK
from parsers.dossier.ink import only_ink
from parsers.dossier.labels import (
    _AFTER_LABEL,
    _SKIP,
    LabelIndex,
    LabelLine,
    _is_stop,
    _tokens,
    parse_label_line,
)
from parsers.dossier.marks import (
    _BOX_GLYPH,
    _MARK,
    _TICKED,
    _UNTICKED,
)
from parsers.dossier.results import (
    _MAX_LINES,
    CELL_PAIR,
    CHOICE_KINDS,
    INLINE,
    LABEL_ALONE,
)
from parsers.text import fold

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------
# Hits: candidate values


@dataclass
class _Hit:
    key: str
    raw: str
    strength: int
    source: str
    layer: str
    density: int = 0
    order: int = 0
    page: int | None = None
    sure: bool = True


@dataclass
class _Reading:
    """Everything read from one document."""

    doc: DocumentText
    hits: list[_Hit] = field(default_factory=list)
    # Field key -> whether a sure label (printed, or several words) names it.
    labels: dict[str, bool] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)  # keys the form has fields for
    # Choice field key -> options whose form checkbox is ticked.
    ticks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label_score(self) -> float:
        """Labels seen; a lone common word ("Contact", "Mail") counts half."""
        return sum(1.0 if sure else 0.5 for sure in self.labels.values())


def _page_label(doc: DocumentText, page: int | None) -> str:
    name = doc.filename or "(no name)"
    return f"page {page} of {name}" if page else name


def _stream_hits(
    lines: Sequence[tuple[int | None, str]],
    index: LabelIndex,
    *,
    fuzzy: bool,
    describe: Callable[[int | None, str], str],
    layer: str,
) -> list[_Hit]:
    """Label lines and their values in a stream of (page, line) pairs."""
    hits: list[_Hit] = []
    current: _Hit | None = None
    boxes: str | None = None
    taken = 0
    i = 0
    while i < len(lines):
        page, line = lines[i]
        if not line.strip() or _SKIP.search(fold(line)):
            if current is not None and not line.strip():
                kind = index.kinds[current.key]
                if kind == "text":
                    current = None  # a blank line ends a short value
                elif kind == "multiline" and current.raw and not current.raw.endswith("\n"):
                    current.raw += "\n"  # a paragraph break, kept
            i += 1
            continue
        if _is_stop(line, index):
            current = None
            i += 1
            continue
        if not re.search(r"\w", line) and not _MARK.search(line):
            if current is not None and only_ink(line):
                # Ink the OCR did not read, where the value goes on: it was lost.
                current.raw = f"{current.raw}\n{UNREAD_INK}" if current.raw else UNREAD_INK
            i += 1  # a rule, dots, OCR specks: neither a value nor an end
            continue
        found, used = _label_segments(lines, i, index, fuzzy=fuzzy)
        if found and fuzzy and _runs_on(current, line, index):
            found, used = [], 1  # "partenaires." inside a description: not the label
        if not found:
            limit = _MAX_LINES.get(index.kinds[current.key], 1) if current else 0
            if current is not None and taken < limit and _continues(current, line, index):
                current.raw = f"{current.raw}\n{line}" if current.raw else line
                taken += 1
            else:
                current = None
                # Options with their boxes, read before their label (a scanned
                # cell whose label sits lower than its first line of options).
                boxes = line if _BOX_GLYPH.search(line) else None
            i += 1
            continue
        for label_line, lead in found:
            if label_line is None:
                if current is not None and _continues(current, lead, index):
                    current.raw = f"{current.raw}\n{lead}" if current.raw else lead
                continue
            raw = label_line.value
            if boxes and index.kinds[label_line.key] in CHOICE_KINDS and not _MARK.search(raw):
                raw = f"{boxes}\n{raw}" if raw else boxes
            boxes = None
            hit = _Hit(
                key=label_line.key,
                raw=raw,
                strength=label_line.strength,
                source=describe(page, line),
                layer=layer,
                page=page,
                sure=label_line.sure,
            )
            hits.append(hit)
            current, taken = hit, 0
        i += used
    return hits


def _runs_on(current: _Hit | None, line: str, index: LabelIndex) -> bool:
    """An OCR'd line inside a long value that starts, lower case, with a label's word.

    Printed labels start with a capital; a wrapped sentence of a description
    ("partenaires. Une première phase…") goes on.
    """
    if current is None or index.kinds[current.key] != "multiline" or not current.raw:
        return False
    stripped = line.lstrip()
    return bool(stripped) and stripped[0].islower() and "\t" not in line


def _continues(hit: _Hit, line: str, index: LabelIndex) -> bool:
    """Whether ``line`` carries on the value of ``hit``."""
    kind = index.kinds[hit.key]
    if kind in CHOICE_KINDS:
        # Options listed one per line under the label, or an option's text
        # wrapped after its box.
        if _MARK.search(line) or (not hit.raw and len(line.split()) <= 8):
            return True
        return bool(re.search(rf"(?:{_TICKED}|{_UNTICKED})\s*$", hit.raw))
    if kind == "multiline":
        return True
    if kind == "email" and hit.raw:
        # "claire.vandenbussche@asso-" / "bethune.fr": an address wrapped in
        # its cell; or specks the OCR read beside the label ("Courriel Le"),
        # the address on the line below.
        address = re.fullmatch(r"[\w.-]+(?:@[\w.-]+)?", line.strip())
        if "@" not in hit.raw and len(hit.raw.split()) == 1:
            return bool(address and "@" in line)
        return bool(address and re.search(r"[-.@_]$", hit.raw.strip()))
    if kind in ("date", "amount", "phone"):
        # "1er juin" / "2025": a short value broken over two lines.
        return not hit.raw or (len(line.split()) <= 3 and bool(re.search(r"\d", line)))
    if kind == "text":
        # A wrapped value goes on mid-sentence or with a short line; a full
        # sentence after a short answer is something else (a declaration),
        # and drawn boxes belong to a choice field.
        if _BOX_GLYPH.search(line):
            return False
        if not hit.raw:
            return True
        stripped = line.strip()
        if re.search(r"[.!?]$", hit.raw.strip()):
            return False
        return not (stripped.endswith(".") and len(stripped.split()) >= 6)
    return not hit.raw


def _label_segments(
    lines: Sequence[tuple[int | None, str]], i: int, index: LabelIndex, *, fuzzy: bool
) -> tuple[list[tuple[LabelLine | None, str]], int]:
    """Label lines found at line ``i``, and how many lines they use.

    A line may hold several cells (tab-separated: a table or two columns
    flattened); each cell may open a field, and cells before the first label
    continue the field above. Returns [(label line, "") or (None, lead text)].
    """
    line = lines[i][1]
    wrapped = _wrapped_label_cell(lines, i, index, fuzzy=fuzzy)
    if wrapped is not None:
        return [(wrapped, "")], 2
    if parse_label_line(line, index, fuzzy=fuzzy) is None and "\t" not in line:
        # A label wrapped over two or three lines.
        joined = line
        for extra in (1, 2):
            if i + extra >= len(lines) or not index.is_prefix(joined):
                break
            joined = f"{joined} {lines[i + extra][1]}"
            candidate = parse_label_line(joined, index, fuzzy=fuzzy)
            if candidate is not None and candidate.strength >= LABEL_ALONE - 1:
                return [(candidate, "")], 1 + extra
        return [], 1
    results: list[tuple[LabelLine | None, str]] = []
    pending: LabelLine | None = None
    lead: list[str] = []
    for segment in (s.strip() for s in line.split("\t")):
        speck = not re.search(r"[^\W_]", segment) and not _MARK.search(segment)
        if speck and not only_ink(segment):
            continue  # stray punctuation between cells, an OCR'd speck "_"
        cell = parse_label_line(segment, index, fuzzy=fuzzy)
        if cell is not None:
            if pending is not None:
                results.append((pending, ""))
            pending = cell
        elif pending is None:
            lead.append(segment)
        elif not pending.value:
            # "Label<tab>value": the cell right of a label is its value.
            pending = _with_value(pending, segment, max(pending.strength, INLINE))
        else:
            pending = _with_value(pending, f"{pending.value}\t{segment}", pending.strength)
    if pending is not None:
        results.append((pending, ""))
    if not results:
        return [], 1
    if lead:
        results.insert(0, (None, "\t".join(lead)))
    return results, 1


def _wrapped_label_cell(
    lines: Sequence[tuple[int | None, str]], i: int, index: LabelIndex, *, fuzzy: bool
) -> LabelLine | None:
    """A label cell wrapped over two lines, its value in the cell beside it.

    "Date de réalisation ou date<tab>12/10/2025" then "prévisionnelle *": the
    label is the whole of the first cells, not the shorter label that its first
    line happens to hold ("Date de réalisation"), and the value is the cells
    right of it on both lines.
    """
    line = lines[i][1]
    if "\t" not in line or i + 1 >= len(lines):
        return None
    head, _, value = line.partition("\t")
    if not index.is_prefix(head.strip()):
        return None
    below = lines[i + 1][1]
    below_head, _, below_value = below.partition("\t")
    if len(below_head.split()) > 6:
        return None
    joined = parse_label_line(f"{head.strip()} {below_head.strip()}", index, fuzzy=fuzzy)
    if joined is None or joined.value or joined.strength < LABEL_ALONE - 1:
        return None
    shorter = parse_label_line(head.strip(), index, fuzzy=fuzzy)
    if shorter is not None and shorter.key == joined.key and not shorter.value:
        return None  # the first line holds the whole label already
    value = "\n".join(v.strip() for v in (value, below_value) if v.strip())
    return _with_value(joined, value, max(joined.strength, INLINE))


def _with_value(line: LabelLine, value: str, strength: int) -> LabelLine:
    return LabelLine(line.key, value, strength, line.fuzzy, line.sure)


def _inline_labels(text: str, index: LabelIndex) -> list[tuple[int, LabelLine]]:
    """``Label : value`` pairs further along one line ("… Courriel : x@y.fr")."""
    found: list[tuple[int, LabelLine]] = []
    for token in _tokens(text)[1:]:
        if found and token.start < found[-1][0]:
            continue
        match = index.match(text, start=token.start)
        if match is None or match.size < 1:
            continue
        after = text[match.end :]
        after = after[_AFTER_LABEL.match(after).end() :]  # type: ignore[union-attr]
        if not re.match(r"^\s*[:：]", after):
            continue
        parsed = parse_label_line(text[token.start :], index)
        if parsed is not None and parsed.strength >= INLINE:
            found.append((token.start, parsed))
    return found


def _explode_inline(hits: list[_Hit], index: LabelIndex) -> list[_Hit]:
    """Split values that hold further ``Label : value`` pairs."""
    out: list[_Hit] = []
    for hit in hits:
        if hit.strength < INLINE or not hit.raw or index.kinds[hit.key] == "multiline":
            out.append(hit)
            continue
        first_line, _, more = hit.raw.partition("\n")
        inner = _inline_labels(first_line, index)
        if not inner:
            out.append(hit)
            continue
        cut = inner[0][0]
        head = first_line[:cut].strip()
        out.append(_replace_hit(hit, raw=head))
        for number, (start, parsed) in enumerate(inner):
            end = inner[number + 1][0] if number + 1 < len(inner) else len(first_line)
            value = parse_label_line(first_line[start:end], index)
            raw = value.value if value else parsed.value
            if number == len(inner) - 1 and more:
                raw = f"{raw}\n{more}"
            out.append(_replace_hit(hit, key=parsed.key, raw=raw))
    return out


def _replace_hit(hit: _Hit, **changes: Any) -> _Hit:
    values = {**hit.__dict__, **changes}
    return _Hit(**values)


# --------------------------------------------------------------------------
# Tables


def _cell_hits(
    rows: Iterable[Sequence[str]],
    index: LabelIndex,
    *,
    fuzzy: bool,
    source: str,
    layer: str,
    page: int | None,
    pairs_only: bool = False,
) -> list[_Hit]:
    """A label cell and the value cell right of it (or under it, for header rows).

    ``pairs_only``: keep only label-cell / value-cell pairs (the rows of a
    two-column page, whose other text the column reading covers better).
    """
    hits: list[_Hit] = []
    rows = [_dedupe_cells(row) for row in rows]
    for number, row in enumerate(rows):
        labels = [_cell_label(cell, index, fuzzy) for cell in row]
        header = sum(1 for lab in labels if lab is not None and not lab.value) >= 2 and all(
            lab is not None or not cell.strip() for lab, cell in zip(labels, row, strict=True)
        )
        below = rows[number + 1] if number + 1 < len(rows) else None
        if header and _answers_row(below, row, index=index, fuzzy=fuzzy):
            assert below is not None
            for lab, value in zip(labels, below, strict=True):
                if lab is not None:
                    hits.append(_Hit(lab.key, value.strip(), CELL_PAIR, source, layer, page=page))
            continue
        j = 0
        while j < len(row):
            lab = labels[j]
            cell = row[j]
            if lab is None or lab.value:
                if not pairs_only and lab is not None and "\n" not in cell:
                    hits.append(_Hit(lab.key, lab.value, lab.strength, source, layer, page=page))
                elif not pairs_only:
                    hits.extend(
                        _lines_in_cell(
                            cell, index=index, fuzzy=fuzzy, source=source, layer=layer, page=page
                        )
                    )
                j += 1
                continue
            nxt = next((k for k in range(j + 1, len(row)) if row[k].strip()), None)
            if nxt is not None and labels[nxt] is None:
                strength = CELL_PAIR - (1 if lab.fuzzy else 0)
                hits.append(_Hit(lab.key, row[nxt].strip(), strength, source, layer, page=page))
                j = nxt + 1
            else:
                # A label cell with nothing beside it: the field is empty.
                hits.append(_Hit(lab.key, "", LABEL_ALONE, source, layer, page=page))
                j += 1
    return hits


def _answers_row(
    below: Sequence[str] | None, row: Sequence[str], *, index: LabelIndex, fuzzy: bool
) -> bool:
    """Whether ``below`` holds the answers to a row of labels (a header row)."""
    if below is None or len(below) != len(row):
        return False
    return not any(_cell_label(cell, index, fuzzy) for cell in below)


def _dedupe_cells(row: Sequence[str]) -> list[str]:
    # Merged cells come back once per grid column.
    out: list[str] = []
    for cell in row:
        cell = (cell or "").strip()
        if out and cell and cell == out[-1]:
            continue
        out.append(cell)
    return out


def _cell_label(cell: str, index: LabelIndex, fuzzy: bool) -> LabelLine | None:
    """The label a cell holds: the whole cell (wrapped label), or its first line."""
    if not cell.strip():
        return None
    flat = " ".join(cell.split())
    whole = parse_label_line(flat, index, fuzzy=fuzzy)
    if whole is not None and not whole.value:
        return whole
    first_line, _, rest = cell.partition("\n")
    line = parse_label_line(first_line, index, fuzzy=fuzzy)
    if line is None:
        return None
    if rest.strip():
        # Several lines: read them as lines (labels may follow); a marker value.
        return _with_value(line, line.value or rest.strip(), line.strength)
    return line


def _lines_in_cell(
    cell: str,
    *,
    index: LabelIndex,
    fuzzy: bool,
    source: str,
    layer: str,
    page: int | None,
) -> list[_Hit]:
    lines = [(page, line) for line in cell.split("\n")]
    return _stream_hits(lines, index, fuzzy=fuzzy, describe=lambda p, t: source, layer=layer)
