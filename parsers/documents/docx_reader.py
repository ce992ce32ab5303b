"""The reader of DOCX documents: paragraphs, tables, content controls, checkboxes.

The zip container is checked against the expansion limits before
python-docx opens it; text comes in document order with tables as rows of
cells; ticked and unticked boxes (content controls, legacy form fields,
symbols) become ``☒`` / ``☐``; embedded images are read by OCR.
"""

from __future__ import annotations

import io
import re
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from parsers.documents.images import _ocr_failed, _open_image
from parsers.documents.kinds import _safe_name
from parsers.documents.model import (
    MIN_OCR_PIXELS,
    MIN_TEXT_CHARS,
    DocumentLimits,
    DocumentText,
    Table,
    _describe,
    _warn,
)
from parsers.documents.ocr import _image_dpi, _ocr_image, _OcrBudget
from parsers.text import nfc

# --------------------------------------------------------------------------
# DOCX

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_W14 = "{http://schemas.microsoft.com/office/word/2010/wordml}"
TICKED = "☒"
UNTICKED = "☐"


def _read_docx(doc: DocumentText, data: bytes, *, limits: DocumentLimits, tess: str | None):
    name = _safe_name(doc.filename)
    problem = _zip_problem(data, limits)
    if problem:
        return _warn(doc, f"{name}: {problem}")
    from docx import Document

    try:
        document = Document(io.BytesIO(data))
    except Exception as err:
        return _warn(doc, f"{name}: not a readable Word document ({_describe(err)})")
    lines: list[str] = []
    tables: list[Table] = []
    for block in _docx_blocks(document.element.body):
        if isinstance(block, tuple):
            tables.append(block)
            lines.extend("\t".join(re.sub(r"\n+", " / ", c) for c in row) for row in block)
        else:
            lines.append(block)
    text = "\n".join(lines).strip()
    doc = replace(doc, pages=(text,), tables=(tuple(tables),), page_count=1)
    if len(re.sub(r"\W", "", text)) < MIN_TEXT_CHARS:
        doc = _ocr_docx_images(doc, data, limits=limits, tess=tess)
    return doc


def _zip_problem(data: bytes, limits: DocumentLimits) -> str | None:
    """Refuse zip bombs before python-docx inflates them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        return f"not a readable Word document ({_describe(err)})"
    total = sum(i.file_size for i in infos)
    if total > limits.max_zip_expanded_bytes:
        return f"expands to {total:,} bytes, over the limit; not read"
    if len(infos) > 2000:
        return f"{len(infos)} parts inside; not read"
    return None


def _docx_blocks(body: Any) -> Iterator[str | Table]:
    """Paragraph texts and tables in body order (content controls opened)."""
    for child in body.iterchildren():
        tag = child.tag
        if tag == f"{_W}p":
            yield _paragraph_text(child)
        elif tag == f"{_W}tbl":
            yield _table_rows(child)
        elif tag == f"{_W}sdt":
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _docx_blocks(content)


def _paragraph_text(element: Any) -> str:
    """Text of a paragraph with tabs, breaks, checkbox states and content controls."""
    parts: list[str] = []
    _collect_text(element, parts)
    return nfc("".join(parts)).replace("\xa0", " ").rstrip()


def _collect_text(element: Any, parts: list[str]) -> None:
    for child in element.iterchildren():
        tag = child.tag
        if tag == f"{_W}t":
            parts.append(child.text or "")
        elif tag == f"{_W}tab":
            parts.append("\t")
        elif tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
        elif tag == f"{_W}sdt":
            _collect_sdt(child, parts)
        elif tag == f"{_W}fldChar":
            state = _legacy_checkbox(child)
            if state is not None:
                parts.append(TICKED if state else UNTICKED)
        elif tag in (f"{_W}delText", f"{_W}instrText", f"{_W}rPr", f"{_W}pPr"):
            continue  # deleted text and field codes are not content
        elif tag == f"{_W}sym":
            parts.append(_symbol(child))
        else:
            _collect_text(child, parts)


def _collect_sdt(sdt: Any, parts: list[str]) -> None:
    props = sdt.find(f"{_W}sdtPr")
    content = sdt.find(f"{_W}sdtContent")
    if props is not None:
        checkbox = props.find(f"{_W14}checkbox")
        if checkbox is not None:
            checked = checkbox.find(f"{_W14}checked")
            value = checked.get(f"{_W14}val", "0") if checked is not None else "0"
            # The glyph shown may lag behind the state; the state is the truth.
            parts.append(TICKED if value in ("1", "true") else UNTICKED)
            return
        if props.find(f"{_W}showingPlcHdr") is not None:
            return  # "Cliquez ici pour taper du texte." is not an answer
    if content is not None:
        _collect_text(content, parts)


def _legacy_checkbox(fld_char: Any) -> bool | None:
    """State of a legacy FORMCHECKBOX field (w:ffData/w:checkBox)."""
    data = fld_char.find(f"{_W}ffData")
    if data is None:
        return None
    box = data.find(f"{_W}checkBox")
    if box is None:
        return None
    for tag in ("checked", "default"):
        node = box.find(f"{_W}{tag}")
        if node is not None:
            return node.get(f"{_W}val", "1") in ("1", "true", "on")
    return False


def _symbol(sym: Any) -> str:
    # Wingdings ticks and boxes inserted with Insert > Symbol.
    code = (sym.get(f"{_W}char") or "").upper()
    wingdings = {"F0FE": TICKED, "F078": TICKED, "F0FD": TICKED, "F0A8": UNTICKED}
    if code in wingdings:
        return wingdings[code]
    try:
        return chr(int(code, 16)) if code and int(code, 16) < 0xF000 else ""
    except ValueError:
        return ""


def _table_rows(table: Any) -> Table:
    rows: list[tuple[str, ...]] = []
    for tr in table.iterchildren(f"{_W}tr"):
        cells: list[str] = []
        for tc in tr.iter(f"{_W}tc"):
            if tc.getparent() is not tr and tc.getparent().tag != f"{_W}sdtContent":
                continue  # a nested table's cells belong to their own cell
            paragraphs = [_paragraph_text(p) for p in tc.iter(f"{_W}p")]
            cells.append(_cell_paragraphs(paragraphs))
        rows.append(tuple(cells))
    return tuple(rows)


def _cell_paragraphs(paragraphs: list[str]) -> str:
    """A cell's paragraphs, one per line; empty paragraphs between them kept as one
    empty line (the applicant's paragraph break)."""
    out: list[str] = []
    for text in paragraphs:
        if text.strip():
            out.append(text)
        elif out and out[-1]:
            out.append("")
    return "\n".join(out).strip()


def _ocr_docx_images(doc: DocumentText, data: bytes, *, limits: DocumentLimits, tess: str | None):
    """A Word file holding only a scanned page: read the pictures."""

    budget = _OcrBudget(time.monotonic() + limits.ocr_timeout_seconds, tess)
    pages: list[str] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        media = [i for i in archive.infolist() if i.filename.startswith("word/media/")]
        media.sort(key=lambda i: -i.file_size)
        for info in media[:3]:
            image = _open_image(archive.read(info))
            if image is None:
                continue  # a picture Pillow cannot read (EMF, SVG)
            pixels = image.width * image.height
            if pixels < MIN_OCR_PIXELS or pixels > limits.max_image_pixels:
                continue
            try:
                layout = _ocr_image(image, budget, page_key=info.filename, dpi=_image_dpi(image))
            except (FileNotFoundError, TimeoutError, subprocess.TimeoutExpired, RuntimeError) as e:
                return _ocr_failed(doc, e, [doc.pages[0], *pages] if doc.pages else pages)
            pages.append("\n".join(layout.lines))
    if not pages:
        return doc
    text = "\n".join([*doc.pages, *pages]).strip()
    return replace(doc, pages=(text,), ocr_used=True, ocr_pages=(1,))
