"""Text, tables and form fields of the documents a candidature carries.

``extract_documents`` takes the attachments of one message and returns, for
each, what a reader needs: the text of every page laid out line by line,
the tables, the AcroForm fields of a fillable PDF, and warnings. It never
raises: a document that cannot be read comes back empty, with a warning and
``needs_review``.

All the work on the untrusted bytes runs in ONE sandboxed child per message
(``parsers.sandbox``): pdfminer, pypdf, pypdfium2, python-docx, Pillow and
Tesseract run under address-space, CPU and wall-clock limits.

Layout matters more than words here. A dossier is a form: labels and values
sit side by side in table cells, in two columns, or one above the other. So
PDF text is rebuilt from word positions (pdfplumber's words, or Tesseract's
TSV words for scans) by one line builder: a wide horizontal gap inside a line
becomes a tab (a cell boundary), and a page with a vertical gutter is also
given column by column and as (left block, right block) rows. The dossier
reader tries these views and keeps the one that reads best.

PDF words come from pdfium's characters, grouped exactly as pdfplumber
groups pdfminer's (ten times faster than pdfminer); pdfplumber's table
search runs only on pages that draw lines or boxes, over their graphics
alone; a page pdfium cannot read faithfully is read the full pdfplumber way
(see ``parsers.documents.pdfium``).

Modules
-------
``extract`` (the entry points and the sandbox child's work), ``model`` (what
is returned, ``DocumentLimits``), ``kinds`` (what a file is by its bytes),
one module per reader: ``pdf`` (PDF pages), ``pdf_forms`` (AcroForm fields),
``pdfium`` (PDF words through pdfium), ``docx_reader``, ``images``, ``plain``;
and what they share: ``layout`` (words to lines, columns, rows), ``ocr``
(Tesseract), ``page_image`` (a scan or photo made fit for it: page found and
warped flat, light evened, deskewed, 300 dpi, ruled lines erased),
``ocr_rescue`` (a second reading of ink the first OCR pass left unread and
of e-mail addresses it split, kept only when confirmed), ``ink`` (unread
ink marked, so a lost value is told from an empty box) and ``marks`` (tick
boxes drawn or inked).
"""

from parsers.documents.docx_reader import TICKED, UNTICKED
from parsers.documents.extract import extract_document, extract_documents
from parsers.documents.kinds import detect_kind
from parsers.documents.layout import PageLayout, Word, layout_page
from parsers.documents.model import (
    KINDS,
    LOW_OCR_CONFIDENCE,
    MAX_PAGE_CHARS,
    MIN_OCR_PIXELS,
    MIN_TEXT_CHARS,
    OCR_DPI,
    OCR_MAX_PIXELS,
    DocumentLimits,
    DocumentText,
    FormField,
    Table,
    Widget,
)
from parsers.documents.pdf_forms import MAX_FORM_FIELDS

__all__ = [
    "KINDS",
    "LOW_OCR_CONFIDENCE",
    "MAX_FORM_FIELDS",
    "MAX_PAGE_CHARS",
    "MIN_OCR_PIXELS",
    "MIN_TEXT_CHARS",
    "OCR_DPI",
    "OCR_MAX_PIXELS",
    "TICKED",
    "UNTICKED",
    "DocumentLimits",
    "DocumentText",
    "FormField",
    "PageLayout",
    "Table",
    "Widget",
    "Word",
    "detect_kind",
    "extract_document",
    "extract_documents",
    "layout_page",
]
