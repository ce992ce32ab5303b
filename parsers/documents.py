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
(see "PDF pages through pdfium" below).
"""

from __future__ import annotations

import bisect
import gc
import io
import itertools
import math
import os
import re
import shutil
import statistics
import subprocess
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from parsers.rules import ParseLimits
from parsers.sandbox import SandboxFailure, SandboxLimits, extend_deadline, map_sandboxed
from parsers.text import nfc
from parsers.types import Attachment

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


# --------------------------------------------------------------------------
# Kind detection


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
)
_EXTENSIONS = {
    "pdf": {"pdf"},
    "docx": {"docx", "docm", "dotx"},
    "image": {"jpg", "jpeg", "png", "gif", "tif", "tiff", "bmp", "webp"},
    "text": {"txt", "text", "csv", "md", "eml", "htm", "html"},
}


def detect_kind(data: bytes) -> tuple[str, str]:
    """(kind, format) from the content, never the name: ("image", "jpeg")."""
    if not data:
        return "other", "empty"
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf", "pdf"
    for magic, name in _IMAGE_MAGIC:
        if data.startswith(magic):
            return "image", name
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image", "webp"
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "other", "ole"  # Word 97-2003 .doc, .xls, .msg
    if data.startswith(b"{\\rtf"):
        return "other", "rtf"
    if _looks_like_text(data[:65536]):
        return "text", "text"
    return "other", "binary"


def _zip_kind(data: bytes) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "other", "zip"
    if "word/document.xml" in names:
        return "docx", "docx"
    if "content.xml" in names and "mimetype" in names:
        return "other", "odf"
    if "xl/workbook.xml" in names:
        return "other", "xlsx"
    return "other", "zip"


def _looks_like_text(sample: bytes) -> bool:
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as err:
        # A multi-byte character cut by the sample boundary is still text.
        if err.start >= len(sample) - 4:
            return True
    printable = sum(1 for b in sample if b >= 32 or b in (9, 10, 13))
    return printable / max(1, len(sample)) > 0.95


def _safe_name(name: str) -> str:
    """A file name fit for a warning: no control characters, bounded length."""
    cleaned = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", name or "").strip()
    return (cleaned[:80] + "…") if len(cleaned) > 80 else (cleaned or "(no name)")


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _mismatch_warning(name: str, kind: str, detected: str) -> str | None:
    ext = _extension(name)
    if not ext:
        return None
    claimed = next((k for k, exts in _EXTENSIONS.items() if ext in exts), None)
    if claimed is None or claimed == kind:
        return None
    what = {"empty": "empty", "binary": "not a known document type"}.get(detected, detected)
    return f"{_safe_name(name)}: named .{ext} but the content is {what}"


# --------------------------------------------------------------------------
# Entry points


def extract_documents(
    attachments: Sequence[Attachment],
    *,
    limits: ParseLimits | DocumentLimits,
    tesseract: str | None = "tesseract",
) -> tuple[DocumentText, ...]:
    """Read every attachment of one message in one sandboxed child.

    ``limits`` is ``ParseLimits`` (or ``DocumentLimits``); ``tesseract``
    is the OCR command (None: no OCR).
    """
    doc_limits = DocumentLimits.of(limits)
    sandbox = SandboxLimits(
        timeout_seconds=doc_limits.parse_timeout_seconds,
        memory_mb=doc_limits.parse_memory_mb,
        cpu_seconds=doc_limits.parse_cpu_seconds,
    )
    results = map_sandboxed(
        extract_document,
        list(attachments),
        limits=sandbox,
        kwargs={"limits": doc_limits, "tesseract": tesseract, "sandboxed": True},
    )
    return tuple(
        _failed(att, result) if isinstance(result, SandboxFailure) else result
        for att, result in zip(attachments, results, strict=True)
    )


def _failed(att: Attachment, failure: SandboxFailure) -> DocumentText:
    kind, detected = detect_kind(att.data)
    return DocumentText(
        sha256=att.sha256,
        filename=att.filename,
        kind=kind,
        warnings=(f"{_safe_name(att.filename)}: could not be read ({failure})",),
        needs_review=True,
        size=att.size,
        detected=detected,
    )


def extract_document(
    att: Attachment,
    *,
    limits: ParseLimits | DocumentLimits,
    tesseract: str | None = "tesseract",
    sandboxed: bool = False,
) -> DocumentText:
    """Read one attachment (meant to run inside the sandbox; never raises).

    ``sandboxed``: this process is a sandbox child, a throwaway fork (see
    ``_settle_child``).
    """
    if sandboxed:
        _settle_child()
    doc_limits = DocumentLimits.of(limits)
    kind, detected = detect_kind(att.data)
    base = DocumentText(
        sha256=att.sha256,
        filename=att.filename,
        kind=kind,
        size=att.size or len(att.data),
        detected=detected,
    )
    mismatch = _mismatch_warning(att.filename, kind, detected)
    if mismatch:
        # Read as what it is, but a file that lies about its type is for staff to see.
        base = _warn(base, mismatch)
    reader = _READERS.get(kind, _read_other)
    try:
        return reader(base, att.data, doc_limits, tesseract)
    except MemoryError:
        raise  # the sandbox reports it
    except Exception as err:  # a parser bug or a hostile file: never fatal
        return _warn(base, f"{_safe_name(att.filename)}: unreadable ({_describe(err)})")


_CHILD_SETTLED = False


def _settle_child() -> None:
    """Once per sandbox child: freeze the objects it inherited from the forkserver.

    The forkserver holds every parsing library, some 53,000 objects (140,000
    when it also held the service's main script). The child's first full
    garbage collection would walk them all and so touch, and copy
    (copy-on-write), most of the inherited memory pages (85 ms per message
    on the development machine when the main script was there too). Frozen
    (``gc.freeze``), they are left alone; they live as long as the child
    anyway.
    """
    global _CHILD_SETTLED
    if not _CHILD_SETTLED:
        _CHILD_SETTLED = True
        gc.freeze()


def _warn(doc: DocumentText, message: str, *, review: bool = True) -> DocumentText:
    return replace(doc, warnings=(*doc.warnings, message), needs_review=doc.needs_review or review)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


# --------------------------------------------------------------------------
# Layout: words -> lines, columns, rows


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


def layout_page(words: Sequence[Word], width: float) -> PageLayout:
    """Lines (tabs at wide gaps), plus column views when the page has two columns."""
    words = [w for w in words if w.text.strip()]
    if not words:
        return PageLayout(())
    lines = _group_lines(words)
    text_lines = tuple(_join_line(line) for line in lines)
    gutter = _find_gutter(lines, width)
    if gutter is None:
        return PageLayout(text_lines)
    columns, rows = _column_views(lines, gutter)
    return PageLayout(text_lines, columns, rows)


# --------------------------------------------------------------------------
# OCR


@dataclass
class _OcrBudget:
    """Tesseract time left for one document."""

    deadline: float
    command: str | None
    extended: bool = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _tesseract_path(command: str | None) -> str | None:
    if not command:
        return None
    return shutil.which(command)


def _tesseract(png: bytes, budget: _OcrBudget, args: list[str]) -> str:
    """Run Tesseract on a PNG (stdin to stdout) within the OCR time left."""
    path = _tesseract_path(budget.command)
    if path is None:
        raise FileNotFoundError("tesseract not found")
    remaining = budget.remaining()
    if remaining <= 1:
        raise TimeoutError("OCR time limit reached")
    # One thread: OpenMP threads multiply the address space under RLIMIT_AS.
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    proc = subprocess.run(
        [path, "-", "-", *args],
        input=png,
        capture_output=True,
        timeout=remaining,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"tesseract failed: {message[-1] if message else proc.returncode}")
    return proc.stdout.decode("utf-8", "replace")


def _ocr_words(
    png: bytes, budget: _OcrBudget, page_key: Any, dpi: int | None
) -> tuple[list[Word], float]:
    """Tesseract TSV words of one image and their mean confidence (0-100)."""
    resolution = ["--dpi", str(dpi)] if dpi else []
    tsv = _tesseract(png, budget, ["-l", "fra", *resolution, "--psm", "3", "tsv"])
    return _parse_tsv(tsv, page_key)


def _parse_tsv(tsv: str, page_key: Any) -> tuple[list[Word], float]:
    words: list[Word] = []
    confidences: list[float] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        line_id = (page_key, cols[2], cols[3], cols[4])
        words.append(Word(left, left + width, top, top + height, nfc(cols[11]), line_id))
        confidences.append(float(cols[10]))
    return words, (sum(confidences) / len(confidences) if confidences else 0.0)


def _sideways(words: Sequence[Word]) -> bool:
    """Most long words taller than wide: the text runs vertically."""
    long_words = [w for w in words if len(w.text) >= 4]
    if not long_words:
        return False
    tall = sum(1 for w in long_words if (w.bottom - w.top) > (w.x1 - w.x0))
    return tall > len(long_words) / 2


def _orientation(png: bytes, budget: _OcrBudget) -> int:
    """Degrees to turn a page upright, by Tesseract's orientation detection."""
    try:
        report = _tesseract(png, budget, ["--psm", "0"])
    except RuntimeError:  # too little text to tell
        return 0
    rotate = re.search(r"Rotate:\s*(\d+)", report)
    confidence = re.search(r"Orientation confidence:\s*([\d.]+)", report)
    if rotate and confidence and float(confidence.group(1)) >= 2.0:
        return int(rotate.group(1)) % 360
    return 0


def _png_for_ocr(image: Any, dpi: int | None) -> tuple[bytes, int | None, float]:
    """Grey PNG for Tesseract, scaled down if huge; (png, dpi, width)."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    image = image.convert("L")
    pixels = image.width * image.height
    if pixels > OCR_MAX_PIXELS:
        scale = (OCR_MAX_PIXELS / pixels) ** 0.5
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        dpi = int(dpi * scale) if dpi else None
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), dpi, float(image.width)


def _image_dpi(image: Any) -> int | None:
    """The resolution a scan declares, when plausible (phone photos say 72)."""
    value = image.info.get("dpi")
    try:
        dpi = round(float(value[0])) if value else 0
    except (TypeError, ValueError, IndexError):
        return None
    return dpi if 100 <= dpi <= 1200 else None


def _ocr_image(image: Any, budget: _OcrBudget, page_key: Any, dpi: int | None) -> PageLayout:
    if not budget.extended:
        # OCR has its own time limit: tell the parent not to kill us for it.
        extend_deadline(max(0.0, budget.remaining()))
        budget.extended = True
    png, dpi, width = _png_for_ocr(image, dpi)
    words, confidence = _ocr_words(png, budget, page_key, dpi)
    if words and (confidence < LOW_OCR_CONFIDENCE or _sideways(words)):
        # A page scanned sideways or upside down reads poorly, or reads as
        # columns of vertical words: turn it upright and read it again.
        rotate = _orientation(png, budget)
        if rotate:
            from PIL import Image

            turned = Image.open(io.BytesIO(png)).rotate(-rotate, expand=True)
            png, dpi, width = _png_for_ocr(turned, dpi)
            upright, better = _ocr_words(png, budget, page_key, dpi)
            if better >= confidence or _sideways(words):
                words = upright
    return layout_page(words, width)


# --------------------------------------------------------------------------
# Images


def _open_image(data: bytes) -> Any:
    """A lazily opened image (header read, pixels not decoded), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        # Sizes are checked against our own limit before any decoding.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError):
        return None


def _read_image(doc: DocumentText, data: bytes, limits: DocumentLimits, tess: str | None):
    """JPEG, PNG, TIFF (each frame a page)…: OCR, unless tiny (a logo) or huge."""
    name = _safe_name(doc.filename)
    image = _open_image(data)
    if image is None:
        return _warn(doc, f"{name}: unreadable image")
    with image:
        pixels = image.width * image.height
        if pixels > limits.max_image_pixels:
            return _warn(
                doc,
                f"{name}: image of {pixels:,} pixels exceeds the limit of "
                f"{limits.max_image_pixels:,}; not read",
            )
        if pixels < MIN_OCR_PIXELS:
            return replace(doc, page_count=1)
        frames = max(1, min(getattr(image, "n_frames", 1), limits.max_pdf_pages))
        budget = _OcrBudget(time.monotonic() + limits.ocr_timeout_seconds, tess)
        pages: list[str] = []
        for index in range(frames):
            image.seek(index)
            try:
                layout = _ocr_image(image.copy(), budget, index, _image_dpi(image))
            except (FileNotFoundError, TimeoutError, subprocess.TimeoutExpired, RuntimeError) as e:
                return _ocr_failed(doc, e, pages)
            pages.append("\n".join(layout.lines))
            doc = _add_layout(doc, layout)
        return replace(
            doc,
            pages=tuple(pages),
            page_count=frames,
            ocr_used=True,
            ocr_pages=tuple(range(1, frames + 1)),
        )


def _add_layout(doc: DocumentText, layout: PageLayout) -> DocumentText:
    return replace(
        doc,
        columns=(*doc.columns, layout.columns),
        column_rows=(*doc.column_rows, layout.column_rows),
        tables=(*doc.tables, ()),
    )


def _ocr_failed(doc: DocumentText, err: BaseException, pages: list[str]) -> DocumentText:
    name = _safe_name(doc.filename)
    if isinstance(err, FileNotFoundError):
        message = f"{name}: OCR unavailable: tesseract not found"
    elif isinstance(err, TimeoutError | subprocess.TimeoutExpired):
        message = f"{name}: OCR stopped at the time limit after {len(pages)} page(s)"
    else:
        message = f"{name}: OCR failed ({_describe(err)})"
    doc = replace(doc, pages=tuple(pages), ocr_used=bool(pages))
    return _warn(doc, message)


# --------------------------------------------------------------------------
# Plain text and others


def _read_text(doc: DocumentText, data: bytes, limits: DocumentLimits, tess: str | None):
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if re.search(r"<(html|body|p|div|table)\b", text[:5000], re.I):
        text = re.sub(r"<(br|/p|/div|/tr|/h\d)\b[^>]*>", "\n", text, flags=re.I)
        text = re.sub(r"<(td|th)\b[^>]*>", "\t", text, flags=re.I)
        text = re.sub(r"<[^>]+>", "", text)
    text = nfc(text.replace("\r\n", "\n").replace("\r", "\n"))[:MAX_PAGE_CHARS]
    return replace(doc, pages=(text,), page_count=1, tables=((),))


def _read_other(doc: DocumentText, data: bytes, limits: DocumentLimits, tess: str | None):
    name = _safe_name(doc.filename)
    reasons = {
        "empty": "empty file (0 bytes)",
        "ole": "Word/Excel 97-2003 format is not read; please send PDF or DOCX",
        "rtf": "RTF is not read; please send PDF or DOCX",
        "odf": "OpenDocument format is not read; please send PDF or DOCX",
        "xlsx": "spreadsheet not read",
        "zip": "archive not read here (unpacked with the message)",
    }
    return _warn(doc, f"{name}: {reasons.get(doc.detected, 'unknown file type, not read')}")


# --------------------------------------------------------------------------
# DOCX

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_W14 = "{http://schemas.microsoft.com/office/word/2010/wordml}"
TICKED = "☒"
UNTICKED = "☐"


def _read_docx(doc: DocumentText, data: bytes, limits: DocumentLimits, tess: str | None):
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
            lines.extend("\t".join(c.replace("\n", " / ") for c in row) for row in block)
        else:
            lines.append(block)
    text = "\n".join(lines).strip()
    doc = replace(doc, pages=(text,), tables=(tuple(tables),), page_count=1)
    if len(re.sub(r"\W", "", text)) < MIN_TEXT_CHARS:
        doc = _ocr_docx_images(doc, data, limits, tess)
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
            cells.append("\n".join(p for p in paragraphs if p.strip()))
        rows.append(tuple(cells))
    return tuple(rows)


def _ocr_docx_images(doc: DocumentText, data: bytes, limits: DocumentLimits, tess: str | None):
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
                layout = _ocr_image(image, budget, info.filename, _image_dpi(image))
            except (FileNotFoundError, TimeoutError, subprocess.TimeoutExpired, RuntimeError) as e:
                return _ocr_failed(doc, e, [doc.pages[0], *pages] if doc.pages else pages)
            pages.append("\n".join(layout.lines))
    if not pages:
        return doc
    text = "\n".join([*doc.pages, *pages]).strip()
    return replace(doc, pages=(text,), ocr_used=True, ocr_pages=(1,))


# --------------------------------------------------------------------------
# PDF


def _read_pdf(doc: DocumentText, data: bytes, limits: DocumentLimits, tess: str | None):
    name = _safe_name(doc.filename)
    fields, widgets, info = _pdf_form(data, name)
    doc = replace(doc, warnings=(*doc.warnings, *info.warnings))
    if info.locked:
        return _warn(doc, f"{name}: encrypted PDF (password required); not read")
    if info.review:
        doc = replace(doc, needs_review=True)
    quick = _filled_form_pages(fields, widgets)
    doc = _pdf_pages(doc, data, limits, tess, info.page_count, widgets, quick)
    if fields:
        fields = _attach_widgets(fields, widgets)
    return replace(doc, form_fields=fields)


@dataclass
class _PdfInfo:
    page_count: int = 0
    locked: bool = False
    review: bool = False
    warnings: list[str] = field(default_factory=list)


class _BytesRaw(io.RawIOBase):
    """Read-only raw stream over bytes, without a copy."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # As io.BytesIO: a negative absolute position is an error, a relative
        # one stops at the start.
        if whence == io.SEEK_SET and offset < 0:
            raise ValueError(f"negative seek value {offset}")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _reader_stream(data: bytes) -> io.BufferedReader:
    """A stream of ``data`` for pypdf.

    Not ``io.BytesIO``: pypdf sizes a stream with ``getbuffer()`` when it has
    one, and that copies a ``BytesIO`` made from bytes (25 MB more for a
    25 MB PDF).
    """
    return io.BufferedReader(_BytesRaw(data))


def _pdf_form(data: bytes, name: str) -> tuple[dict[str, FormField], list[_RawWidget], _PdfInfo]:
    """AcroForm fields (pypdf), their widgets, page count and encryption."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    info = _PdfInfo()
    try:
        reader = PdfReader(_reader_stream(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            info.locked = True
            return {}, [], info
        info.page_count = len(reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        info.warnings.append(f"{name}: damaged PDF structure ({_describe(e)})")
        info.review = True
        return {}, [], info
    except NotImplementedError as e:  # unsupported encryption
        info.locked = True
        info.warnings.append(f"{name}: {_describe(e)}")
        return {}, [], info
    try:
        fields = _walk_fields(reader)
    except Exception as e:  # pypdf walks untrusted object graphs
        info.warnings.append(f"{name}: form fields unreadable ({_describe(e)})")
        return {}, [], info
    widgets = _pdf_widgets(reader) if fields else []
    return fields, widgets, info


def _pdf_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = [t for t in (_pdf_text(v) for v in value) if t]
        return ", ".join(items) if items else None
    text = str(value)
    if text.startswith("/"):
        text = text[1:]
    text = nfc(text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    return text or None


MAX_FORM_FIELDS = 1000
_INHERITED = ("/FT", "/Ff", "/V", "/Opt", "/TU")


def _walk_fields(reader: Any) -> dict[str, FormField]:
    """Terminal AcroForm fields, walked by hand.

    pypdf's ``get_fields`` gives up on forms whose buttons lost their
    appearance streams, exactly the filled forms we must read; this walk
    also guards against reference loops and absurd sizes.
    """
    acroform = reader.trailer["/Root"].get("/AcroForm")
    if acroform is None:
        return {}
    top = acroform.get_object().get("/Fields") or []
    fields: dict[str, FormField] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, str, dict[str, Any]]] = [(ref, "", {}) for ref in reversed(list(top))]
    while stack and len(fields) < MAX_FORM_FIELDS and len(seen) < 20 * MAX_FORM_FIELDS:
        ref, parent, inherited = stack.pop()
        key = id(ref.get_object()) if not hasattr(ref, "idnum") else ref.idnum
        if key in seen:
            continue
        seen.add(key)
        node = ref.get_object()
        if not hasattr(node, "get"):
            continue
        part = _pdf_text(node.get("/T"))
        name = f"{parent}.{part}" if parent and part else (part or parent)
        attrs = dict(inherited)
        attrs.update({k: node[k] for k in _INHERITED if k in node})
        kids = [k for k in (node.get("/Kids") or []) if hasattr(k.get_object(), "get")]
        child_fields = [k for k in kids if "/T" in k.get_object()]
        if child_fields:
            stack.extend((k, name, attrs) for k in reversed(child_fields))
            continue
        widgets = kids or [node]
        parsed = _form_field(name, attrs, [w.get_object() for w in widgets[:50]])
        if parsed is not None and name:
            fields[name] = parsed
    return fields


def _form_field(name: str, attrs: dict[str, Any], widgets: list[Any]) -> FormField | None:
    ftype = attrs.get("/FT")
    flags = int(attrs.get("/Ff", 0) or 0)
    value = _pdf_text(attrs.get("/V"))
    tooltip = _pdf_text(attrs.get("/TU"))
    options: tuple[str, ...] = ()
    if ftype == "/Tx":
        kind = "text"
    elif ftype == "/Btn":
        if flags & (1 << 16):
            kind = "button"
        elif flags & (1 << 15):
            kind = "radio"
        else:
            kind = "checkbox"
        options = tuple(dict.fromkeys(s for w in widgets for s in _widget_states(w)))
    elif ftype == "/Ch":
        kind = "choice"
        opts = []
        for opt in (attrs.get("/Opt") or [])[:500]:
            opt = opt.get_object() if hasattr(opt, "get_object") else opt
            if isinstance(opt, list | tuple) and opt:
                opts.append(_pdf_text(opt[-1]) or "")
            else:
                opts.append(_pdf_text(opt) or "")
        options = tuple(opts)
    elif ftype == "/Sig":
        kind = "signature"
        value = "signed" if attrs.get("/V") is not None else None
    else:
        return None
    return FormField(name=name, type=kind, value=value, tooltip=tooltip, options=options)


def _widget_states(widget: Any) -> list[str]:
    """The "on" states of a checkbox or radio widget (its appearance names)."""
    from pypdf.generic import DictionaryObject, StreamObject

    appearance = widget.get("/AP")
    if appearance is None:
        return []
    normal = appearance.get_object().get("/N")
    normal = normal.get_object() if normal is not None else None
    # Buttons have one appearance per state; text fields one stream.
    if isinstance(normal, DictionaryObject) and not isinstance(normal, StreamObject):
        return [str(k)[1:] for k in normal if str(k) != "/Off"]
    return []


@dataclass
class _RawWidget:
    field_name: str
    page: int
    rect: tuple[float, float, float, float]
    on_state: str | None
    state: str | None
    # Filled in while the page is read (pdfplumber words).
    label_left: str = ""
    label_right: str = ""


def _pdf_widgets(reader: Any) -> list[_RawWidget]:
    """Every widget annotation of the first pages, with its field's full name."""
    widgets: list[_RawWidget] = []
    for number, page in enumerate(reader.pages[:200], start=1):
        try:
            annots = page.get("/Annots") or []
            annots = list(annots.get_object() if hasattr(annots, "get_object") else annots)
        except Exception:  # noqa: S112 - a broken page must not hide the others
            continue
        for ref in annots[:500]:
            try:
                annot = ref.get_object()
                if annot.get("/Subtype") == "/Widget":
                    widgets.append(_raw_widget(annot, number))
            except Exception:  # noqa: S112 - nor a broken annotation
                continue
    return widgets


def _raw_widget(annot: Any, page: int) -> _RawWidget:
    names: list[str] = []
    node = annot
    for _ in range(20):  # parents chain; bounded against loops
        if node is None:
            break
        if "/T" in node:
            names.append(str(node["/T"]))
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    rect = tuple(float(v) for v in annot.get("/Rect", [0, 0, 0, 0]))[:4]
    states = _widget_states(annot)
    on_state = states[0] if states else None
    state = _pdf_text(annot.get("/AS"))
    return _RawWidget(".".join(reversed(names)), page, rect, on_state, state)  # type: ignore[arg-type]


def _attach_widgets(fields: dict[str, FormField], raw: list[Any]) -> dict[str, FormField]:
    by_field: dict[str, list[Any]] = {}
    for widget in raw:
        by_field.setdefault(widget.field_name, []).append(widget)
    out: dict[str, FormField] = {}
    for name, form_field in fields.items():
        widgets = by_field.get(name, [])
        value = form_field.value
        if form_field.type in ("checkbox", "radio") and value is None:
            # Some tools set only the widget's /AS, not the field's /V.
            value = next((w.state for w in widgets if w.state and w.state != "Off"), None)
        out[name] = replace(
            form_field,
            value=value,
            widgets=tuple(
                Widget(w.page, w.rect, w.on_state, w.label_left, w.label_right) for w in widgets
            ),
        )
    return out


def _pdf_pages(
    doc: DocumentText,
    data: bytes,
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
        failure = _pdfplumber_pages(doc, data, wanted, widgets, fast, read)
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
        doc = _ocr_pdf_pages(doc, data, scanned, limits, tess)
    return doc


@dataclass
class _PageRead:
    """One page as read: its layout, tables, whether it needs OCR, what went wrong."""

    layout: PageLayout
    tables: tuple[Table, ...] = ()
    needs_ocr: bool = False
    problem: str = ""


def _pdfplumber_pages(
    doc: DocumentText,
    data: bytes,
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
                    tables = _page_tables(page, quick.words)
                read[number] = _PageRead(quick.layout(widgets, number), tables)
            except Exception as err:
                read[number] = _PageRead(PageLayout(()), problem=_describe(err))
            finally:
                page.close()
    finally:
        pdf.close()
    return None


def _filled_form_pages(fields: dict[str, FormField], widgets: list[Any]) -> frozenset[int]:
    """Pages carrying widgets of filled-in form fields: their answers are in the fields."""
    filled = {
        name
        for name, ff in fields.items()
        if ff.type not in ("button", "signature") and ff.value not in (None, "", "Off", "off")
    }
    return frozenset(w.page for w in widgets if w.field_name in filled)


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


@dataclass
class _PdfiumPage:
    """A page's words as pdfplumber would give them, and whether it draws paths."""

    words: list[Word]
    width: float
    height: float
    # Lines or boxes drawn (perhaps a ruled table): pdfplumber's table search runs.
    ruled: bool

    def layout(self, widgets: list[Any], number: int) -> PageLayout:
        _label_widgets(widgets, number, self.words, self.height)
        return layout_page(self.words, self.width)


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
    if sum(len(re.sub(r"\W", "", w.text)) for w in words) < MIN_TEXT_CHARS:
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
        rows = tuple(
            tuple(_cell_text(cell, words) for cell in row.cells) for row in table.rows[:200]
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
    layout = layout_page(words, float(page.width))
    tables = _page_tables(page, words)
    _label_widgets(widgets, number, words, float(page.height))
    letters = sum(len(re.sub(r"\W", "", w.text)) for w in words)
    graphics = len(page.images) + (1 if len(page.curves) + len(page.rects) > 40 else 0)
    # Fonts without a character map come out as "(cid:42)": the page must be
    # read from its image.
    garbled = sum(1 for w in words if "(cid:" in w.text) > 0.3 * max(1, len(words))
    return _PageRead(layout, tables, garbled or (letters < MIN_TEXT_CHARS and graphics > 0))


def _cell_text(bbox: Any, words: Sequence[Word]) -> str:
    """A table cell's text, laid out like the page (tabs at wide gaps)."""
    if bbox is None:
        return ""
    x0, top, x1, bottom = bbox
    inside = [
        w
        for w in words
        if x0 - 1 <= (w.x0 + w.x1) / 2 <= x1 + 1 and top - 1 <= w.middle <= bottom + 1
    ]
    if not inside:
        return ""
    return "\n".join(_join_line(line) for line in _group_lines(inside)).strip()


def _label_widgets(widgets: list[Any], number: int, words: list[Word], height: float) -> None:
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


def _ocr_pdf_pages(
    doc: DocumentText, data: bytes, scanned: list[int], limits: DocumentLimits, tess: str | None
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
                layout = _ocr_image(image, budget, index, dpi)
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


_READERS = {
    "pdf": _read_pdf,
    "docx": _read_docx,
    "image": _read_image,
    "text": _read_text,
    "other": _read_other,
}
