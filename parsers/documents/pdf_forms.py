"""AcroForm fields of a PDF and the widgets (boxes) that show them.

pypdf reads the field tree (inherited attributes, checkbox and radio
states, choice options) over the bytes in memory without a copy; each
field gets its widgets with their page and rectangle.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from typing import Any

from parsers.documents.model import FormField, Widget, _describe
from parsers.text import nfc


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


# Up to this size a PDF is handed to pypdf as ``io.BytesIO``.
_COPY_MAX_BYTES = 4 * 2**20


def _reader_stream(data: bytes) -> io.BufferedReader | io.BytesIO:
    """A stream of ``data`` for pypdf.

    Not ``io.BytesIO`` for large files: pypdf sizes a stream with
    ``getbuffer()`` when it has one, and that copies a ``BytesIO`` made from
    bytes (25 MB more for a 25 MB PDF). Small ones are: pypdf seeks and reads
    in small steps, which the buffered reader over Python's ``readinto``
    serves slower (form of ``bench.parse_dossier``, 68 KB: 17.7 -> 13.6 ms
    of CPU for the fields); the copy pypdf then makes is at most 4 MB.
    """
    if len(data) <= _COPY_MAX_BYTES:
        return io.BytesIO(data)
    return _zero_copy_stream(data)


def _zero_copy_stream(data: bytes) -> io.BufferedReader:
    """A buffered stream over ``data`` itself (``getbuffer()``-less: pypdf copies nothing)."""
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
