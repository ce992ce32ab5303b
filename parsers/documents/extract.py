"""Entry points: every attachment of a message read in one sandboxed child.

``extract_documents`` sends the attachments to ``parsers.sandbox``, under
the message's budget (``message_wall_seconds`` and ``message_cpu_seconds`` of
``[limits]``), and returns ``DocumentsRead``; ``extract_document`` (what the
child runs) picks the reader for the kind (``_READERS``) and never raises: a
failure becomes a warning and ``needs_review``.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from parsers.documents.docx_reader import _read_docx
from parsers.documents.images import _read_image
from parsers.documents.kinds import _mismatch_warning, _safe_name, detect_kind
from parsers.documents.model import (
    DocumentLimits,
    DocumentText,
    FormField,
    Widget,
    _describe,
    _warn,
)
from parsers.documents.pdf import _read_pdf
from parsers.documents.plain import _read_other, _read_text
from parsers.sandbox import MessageBudget, SandboxFailure, SandboxLimits, map_sandboxed
from parsers.types import Attachment

if TYPE_CHECKING:
    from parsers.rules import ParseLimits


# What a sandbox child may send back: these frozen types and plain data.
RESULT_TYPES = (DocumentText, FormField, Widget)


class DocumentsRead(tuple[DocumentText, ...]):
    """The documents of one message, in attachment order, and whether the budget ran out.

    ``over_budget``: the message's reading budget was spent, so some
    documents were not read (each is there, ``needs_review``, with a
    warning); ``warnings`` says so in one line for the message. The service
    sends such a message to staff review.
    """

    over_budget: bool
    warnings: tuple[str, ...]

    def __new__(
        cls, documents: Sequence[DocumentText] = (), *, over_budget: bool = False, warning: str = ""
    ) -> DocumentsRead:
        read = super().__new__(cls, documents)
        read.over_budget = over_budget
        read.warnings = (warning,) if warning else ()
        return read


# --------------------------------------------------------------------------
# Entry points


def extract_documents(
    attachments: Sequence[Attachment],
    *,
    limits: ParseLimits | DocumentLimits,
    tesseract: str | None = "tesseract",
) -> DocumentsRead:
    """Read every attachment of one message in one sandboxed child.

    ``limits`` is ``ParseLimits`` (or ``DocumentLimits``, without a message
    budget); ``tesseract`` is the OCR command (None: no OCR).
    """
    doc_limits = DocumentLimits.of(limits)
    sandbox = SandboxLimits(
        timeout_seconds=doc_limits.parse_timeout_seconds,
        memory_mb=doc_limits.parse_memory_mb,
        cpu_seconds=doc_limits.parse_cpu_seconds,
    )
    budget = MessageBudget(
        wall_seconds=getattr(limits, "message_wall_seconds", None),
        cpu_seconds=getattr(limits, "message_cpu_seconds", None),
    )
    results = map_sandboxed(
        extract_document,
        list(attachments),
        limits=sandbox,
        kwargs={"limits": doc_limits, "tesseract": tesseract, "sandboxed": True},
        result_types=RESULT_TYPES,
        budget=budget,
    )
    spent = next(
        (r for r in results if isinstance(r, SandboxFailure) and r.reason == "budget"), None
    )
    documents = [
        _failed(att, result) if isinstance(result, SandboxFailure) else result
        for att, result in zip(attachments, results, strict=True)
    ]
    if spent is None:
        return DocumentsRead(documents)
    unread = sum(1 for r in results if isinstance(r, SandboxFailure) and r.reason == "budget")
    warning = f"reading budget spent ({spent.detail}): {unread} document(s) not read"
    return DocumentsRead(documents, over_budget=True, warning=warning)


def _failed(att: Attachment, failure: SandboxFailure) -> DocumentText:
    kind, detected = detect_kind(att.data)
    if failure.reason == "budget":
        warning = f"{_safe_name(att.filename)}: not read, the message's reading budget is spent"
    else:
        warning = f"{_safe_name(att.filename)}: could not be read ({failure})"
    return DocumentText(
        sha256=att.sha256,
        filename=att.filename,
        kind=kind,
        warnings=(warning,),
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
        return reader(base, att.data, limits=doc_limits, tess=tesseract)
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


_READERS = {
    "pdf": _read_pdf,
    "docx": _read_docx,
    "image": _read_image,
    "text": _read_text,
    "other": _read_other,
}
