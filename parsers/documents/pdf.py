"""The reader of PDF documents: form fields, then the text of each page.

Pages are read through pdfium when it reads them faithfully, else through
pdfplumber; pages with too little text (scans) are rendered and read by
OCR. Form pages filled in an AcroForm are known from their widgets.
"""

from __future__ import annotations

import io
import subprocess
import time
from dataclasses import replace
from typing import Any

from parsers.documents.images import _ocr_failed
from parsers.documents.kinds import _safe_name
from parsers.documents.layout import PageLayout
from parsers.documents.marks import box_words
from parsers.documents.model import (
    MAX_PAGE_CHARS,
    OCR_DPI,
    OCR_MAX_PIXELS,
    DocumentLimits,
    DocumentText,
    FormField,
    Table,
    _describe,
    _warn,
)
from parsers.documents.ocr import _ocr_image, _OcrBudget
from parsers.documents.pdf_forms import _attach_widgets, _pdf_form
from parsers.documents.pdfium import (
    _graphics_layout,
    _page_tables,
    _PageRead,
    _pdfium_pages,
    _PdfiumPage,
    _read_page,
)

# --------------------------------------------------------------------------
# PDF


def _read_pdf(doc: DocumentText, data: bytes, *, limits: DocumentLimits, tess: str | None):
    name = _safe_name(doc.filename)
    fields, widgets, info = _pdf_form(data, name)
    doc = replace(doc, warnings=(*doc.warnings, *info.warnings))
    if info.locked:
        return _warn(doc, f"{name}: encrypted PDF (password required); not read")
    if info.review:
        doc = replace(doc, needs_review=True)
    quick = _filled_form_pages(fields, widgets)
    doc = _pdf_pages(
        doc,
        data,
        limits=limits,
        tess=tess,
        page_count=info.page_count,
        widgets=widgets,
        form_pages=quick,
    )
    if fields:
        fields = _attach_widgets(fields, widgets)
    return replace(doc, form_fields=fields)


def _pdf_pages(
    doc: DocumentText,
    data: bytes,
    *,
    limits: DocumentLimits,
    tess: str | None,
    page_count: int,
    widgets: list[Any],
    form_pages: frozenset[int] = frozenset(),
) -> DocumentText:
    """Text, tables and layout of each page, OCR for scanned pages.

    Pages are read from pdfium's characters (``_pdfium_pages``), and searched
    for ruled tables (pdfplumber, over the page's graphics only) when they
    draw lines or boxes; ``form_pages`` (filled form pages: the answers are in
    the fields) skip the table search. A page pdfium cannot read faithfully
    (rotated text, characters without Unicode, little or no text: a scan?)
    is read the full way: pdfplumber words and tables, then OCR if need be.
    """
    name = _safe_name(doc.filename)
    wanted = min(page_count or limits.max_pdf_pages, limits.max_pdf_pages)
    if page_count > limits.max_pdf_pages:
        doc = _warn(
            doc,
            f"{name}: {page_count} pages; only the first {limits.max_pdf_pages} were read",
        )
    fast = _pdfium_pages(data, wanted)
    quick = frozenset(n for n in form_pages if n in fast)
    for number in quick:
        fast[number].ruled = False
    read: dict[int, _PageRead] = {}
    if wanted and len(fast) == wanted and not any(p.ruled for p in fast.values()):
        # Nothing left for pdfminer: no page to read the full way, no table to find.
        for number in range(1, wanted + 1):
            read[number] = _PageRead(fast[number].layout(widgets, number))
    else:
        failure = _pdfplumber_pages(doc, data, wanted=wanted, widgets=widgets, fast=fast, read=read)
        if failure is not None:
            return failure
    pages: list[str] = []
    scanned: list[int] = []
    for number, page in sorted(read.items()):
        if page.problem:
            doc = _warn(doc, f"{name}: page {number} unreadable ({page.problem})")
        text = "\n".join(page.layout.lines)
        if len(text) > MAX_PAGE_CHARS:
            doc = _warn(doc, f"{name}: page {number} cut at {MAX_PAGE_CHARS:,} characters")
        pages.append(text[:MAX_PAGE_CHARS])
        if page.needs_ocr:
            scanned.append(number - 1)
    layouts = [page.layout for _, page in sorted(read.items())]
    doc = replace(
        doc,
        pages=tuple(pages),
        columns=tuple(layout.columns for layout in layouts),
        column_rows=tuple(layout.column_rows for layout in layouts),
        tables=tuple(page.tables for _, page in sorted(read.items())),
        page_count=page_count or len(pages),
        form_pages=tuple(sorted(quick)),
    )
    if not any(p.strip() for p in pages) and not scanned and pages:
        doc = _warn(doc, f"{name}: no text found", review=False)
    if scanned:
        doc = _ocr_pdf_pages(doc, data, scanned=scanned, limits=limits, tess=tess)
    return doc


def _pdfplumber_pages(
    doc: DocumentText,
    data: bytes,
    *,
    wanted: int,
    widgets: list[Any],
    fast: dict[int, _PdfiumPage],
    read: dict[int, _PageRead],
) -> DocumentText | None:
    """Fill ``read`` with every page: the full way (pdfplumber) for those not in
    ``fast``, the table search alone for the ruled ``fast`` pages. A document
    with a warning when pdfplumber cannot open the file, else None."""
    import pdfplumber
    from pdfminer.pdfdocument import PDFPasswordIncorrect

    name = _safe_name(doc.filename)
    try:
        pdf = pdfplumber.open(io.BytesIO(data), pages=list(range(1, wanted + 1)) or None)
    except PDFPasswordIncorrect:
        return _warn(doc, f"{name}: encrypted PDF (password required); not read")
    except Exception as err:
        return _warn(doc, f"{name}: unreadable PDF ({_describe(err)})")
    try:
        try:
            # pdfplumber builds the page list from the page tree up front.
            pdf_pages = pdf.pages
        except Exception as err:
            return _warn(doc, f"{name}: page tree unreadable ({_describe(err)})")
        for index, page in enumerate(pdf_pages):
            number = index + 1
            try:
                quick = fast.get(number)
                if quick is None:
                    read[number] = _read_page(page, widgets, number)
                    continue
                tables: tuple[Table, ...] = ()
                if quick.ruled:
                    try:
                        page._layout = _graphics_layout(page)
                    except Exception:
                        # That page's content trips the graphics-only pass: read it fully.
                        read[number] = _read_page(page, widgets, number)
                        continue
                    if not any(w.page == number for w in widgets):
                        # A flattened form: its boxes are drawings, ticked or not.
                        quick.words.extend(box_words(_drawn(page), quick.words))
                    tables = _page_tables(page, quick.words)
                read[number] = _PageRead(quick.layout(widgets, number), tables)
            except Exception as err:
                read[number] = _PageRead(PageLayout(()), problem=_describe(err))
            finally:
                page.close()
    finally:
        pdf.close()
    return None


def _drawn(page: Any) -> list[dict[str, Any]]:
    """The page's drawn shapes (rects, curves, lines), as pdfplumber gives them."""
    return [*page.rects, *page.curves, *page.lines]


def _filled_form_pages(fields: dict[str, FormField], widgets: list[Any]) -> frozenset[int]:
    """Pages carrying widgets of filled-in form fields: their answers are in the fields."""
    filled = {
        name
        for name, ff in fields.items()
        if ff.type not in ("button", "signature") and ff.value not in (None, "", "Off", "off")
    }
    return frozenset(w.page for w in widgets if w.field_name in filled)


def _ocr_pdf_pages(
    doc: DocumentText, data: bytes, *, scanned: list[int], limits: DocumentLimits, tess: str | None
) -> DocumentText:
    import pypdfium2 as pdfium

    name = _safe_name(doc.filename)
    budget = _OcrBudget(time.monotonic() + limits.ocr_timeout_seconds, tess)
    pages = list(doc.pages)
    columns = list(doc.columns)
    rows = list(doc.column_rows)
    done: list[int] = []
    pdf = pdfium.PdfDocument(data, password="")
    try:
        for index in scanned:
            page = pdf[index]
            try:
                image, dpi = _render(page, limits)
            finally:
                page.close()
            if image is None:
                doc = _warn(doc, f"{name}: page {index + 1} too large to render; not read")
                continue
            try:
                layout = _ocr_image(image, budget, page_key=index, dpi=dpi)
            except (FileNotFoundError, TimeoutError, subprocess.TimeoutExpired, RuntimeError) as e:
                doc = _ocr_failed(doc, e, [])
                break
            pages[index] = "\n".join(layout.lines)
            columns[index] = layout.columns
            rows[index] = layout.column_rows
            done.append(index + 1)
    finally:
        pdf.close()
    return replace(
        doc,
        pages=tuple(pages),
        columns=tuple(columns),
        column_rows=tuple(rows),
        ocr_used=bool(done) or doc.ocr_used,
        ocr_pages=tuple(done),
    )


def _render(page: Any, limits: DocumentLimits) -> tuple[Any, int | None]:
    """The page as a grey image at OCR_DPI (less for huge pages), and that dpi."""
    width, height = page.get_size()
    scale = OCR_DPI / 72
    pixels = width * height * scale * scale
    cap = min(limits.max_image_pixels, OCR_MAX_PIXELS)
    if pixels > cap:
        scale *= (cap / pixels) ** 0.5
    if width * scale < 50 or height * scale < 50:
        return None, None
    bitmap = page.render(scale=scale, grayscale=True)
    try:
        # to_pil() shares the bitmap's memory: copy before closing it.
        return bitmap.to_pil().copy(), int(scale * 72)
    finally:
        bitmap.close()
