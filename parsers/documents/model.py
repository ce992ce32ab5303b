"""What document extraction returns, and the limits it works under.

``DocumentText`` (pages, tables, form fields, warnings of one attachment),
``FormField`` and ``Widget`` (an AcroForm field and its boxes),
``DocumentLimits`` (the picklable subset of ``ParseLimits`` a sandbox child
needs) and the fixed sizes every reader shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parsers.rules import ParseLimits


KINDS = ("pdf", "docx", "image", "text", "other")
# Longest page text kept, in characters; more is cut with a warning.
MAX_PAGE_CHARS = 200_000
# Images below this many pixels are logos, icons and signatures: not read.
MIN_OCR_PIXELS = 120_000
# Scans are read at this resolution; larger photos are scaled down to this.
OCR_DPI = 300
OCR_MAX_PIXELS = 10_000_000
# A page whose text layer has fewer letters than this is treated as a scan.
MIN_TEXT_CHARS = 20
# Mean Tesseract word confidence below which a page's orientation is checked.
LOW_OCR_CONFIDENCE = 60

Table = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class DocumentLimits:
    """The limits document extraction needs (a picklable subset of ``ParseLimits``)."""

    max_pdf_pages: int = 60
    max_image_pixels: int = 40_000_000
    ocr_timeout_seconds: float = 120.0
    max_zip_expanded_bytes: int = 200 * 2**20
    parse_timeout_seconds: float = 60.0
    parse_memory_mb: int = 1024
    parse_cpu_seconds: int = 60

    @classmethod
    def of(cls, limits: ParseLimits | DocumentLimits) -> DocumentLimits:
        """From the parsers' ``ParseLimits`` (``[limits]`` of mailbot.toml)."""
        if isinstance(limits, DocumentLimits):
            return limits
        names = cls.__dataclass_fields__
        return cls(**{n: getattr(limits, n) for n in names if hasattr(limits, n)})


@dataclass(frozen=True)
class Widget:
    """One widget (visible box) of a form field."""

    page: int  # 1-based
    rect: tuple[float, float, float, float]  # x0, y0, x1, y1 in PDF space
    on_state: str | None = None  # export value of a checkbox / radio button
    label_left: str = ""  # printed text left of (or above) the widget
    label_right: str = ""  # printed text right of the widget (option labels)


@dataclass(frozen=True)
class FormField:
    """One AcroForm field and its value as filled in."""

    name: str
    # "text", "checkbox", "radio", "choice", "signature", "button"
    type: str
    # Text or chosen option; for buttons the state name without "/" ("Yes",
    # "Off", "realisee"); None when empty.
    value: str | None
    tooltip: str | None = None
    options: tuple[str, ...] = ()
    widgets: tuple[Widget, ...] = ()

    @property
    def checked(self) -> bool:
        return self.type in ("checkbox", "radio") and self.value not in (None, "", "Off", "off")


@dataclass(frozen=True)
class DocumentText:
    """What one attachment says, as text; always produced, even for junk."""

    sha256: str
    filename: str
    kind: str  # one of KINDS
    pages: tuple[str, ...] = ()
    form_fields: dict[str, FormField] = field(default_factory=dict)
    # Per page: the tables found on it, each a tuple of rows of cell texts.
    tables: tuple[tuple[Table, ...], ...] = ()
    warnings: tuple[str, ...] = ()
    needs_review: bool = False
    ocr_used: bool = False
    size: int = 0
    # Pages in the file (may exceed len(pages) when cut at max_pdf_pages).
    page_count: int = 0
    # Per page: the text read column by column when the page has two
    # columns, else "".
    columns: tuple[str, ...] = ()
    # Per page: (left block, right block) rows of a two-column page.
    column_rows: tuple[Table, ...] = ()
    # 1-based numbers of the pages whose text comes from OCR.
    ocr_pages: tuple[int, ...] = ()
    # What the content really is ("pdf", "jpeg", "png", "zip", "ole", ...).
    detected: str = ""
    # 1-based numbers of the form pages read the quick way: their filled
    # AcroForm fields hold the answers, so their text and words come from
    # pdfium and the table pass (pdfminer, pdfplumber) is skipped.
    form_pages: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(self.pages)


def _warn(doc: DocumentText, message: str, *, review: bool = True) -> DocumentText:
    return replace(doc, warnings=(*doc.warnings, message), needs_review=doc.needs_review or review)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__
