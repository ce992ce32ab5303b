"""The body of a message assembled, and forwarded candidatures recognised.

The walker's text and attachments of the outer message and of attached
messages are put together; when the outer sender only forwards (a "Fwd:"
subject or a short note above an attached or inline message), the original
sender becomes the applicant.
"""

from __future__ import annotations

import re
from collections import deque
from email.message import Message
from typing import TYPE_CHECKING

from parsers.mail.bounds import _SHORT_FORWARD_NOTE, MAX_TEXT_CHARS
from parsers.mail.envelope import _address_in, _mail_parser_view, _pick_sender
from parsers.mail.headers import _Field
from parsers.mail.report import _Draft, _Report
from parsers.mail.structure import _Budget
from parsers.mail.walker import _Content, _Walker
from parsers.text import fold

if TYPE_CHECKING:
    from parsers.rules import ParseLimits


# --------------------------------------------------------------------------
# Body assembly and forwarded candidatures
# --------------------------------------------------------------------------

_FORWARD_SUBJECT = re.compile(r"^\W*(?:(?:re|ref|aw)\s*:\s*)*(?:fwd?|tr|transfere|wg|rv|enc)\s*:")
_FORWARD_MARKER = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*(?:forwarded message|message transf[ée]r[ée]|original message"
    r"|message d'origine|message d’origine)[ \t]*-{2,}"
    r"|d[ée]but du message r[ée]exp[ée]di[ée][ \t]*:|begin forwarded message[ \t]*:)[ \t]*$",
    re.I | re.M,
)
_FORWARD_FROM = re.compile(
    r"^[ \t*>]*(?:de|from|exp[ée]diteur)[ \t\xa0*]*:[ \t\xa0*]*(?P<value>[^\n]+)$",
    re.I | re.M,
)
_MAILTO = re.compile(r"\[mailto:([^\]\s]+)\]", re.I)


def _read_body(
    root: Message, *, budget: _Budget, limits: ParseLimits, report: _Report, draft: _Draft
) -> None:
    walker = _Walker(limits, report, budget)
    outer = walker.walk(root, 0)
    is_report = root.get_content_type() == "multipart/report"
    inner = _walk_inner(walker, outer, collect=not is_report)
    outer_text = outer.text()
    texts = [outer_text]
    draft.attachments = list(outer.attachments)
    if not is_report:
        for content, _ in inner:
            draft.attachments.extend(content.attachments)
        _detect_forward(outer_text, inner, limits=limits, report=report, draft=draft)
        if draft.forwarded:
            texts.extend(content.text() for content, _ in inner)
    walker.report_dropped_attachments()
    draft.content_types = tuple(walker.content_types)
    draft.text = _cap_text("\n\n".join(t for t in texts if t), report)


def _walk_inner(
    walker: _Walker, outer: _Content, *, collect: bool
) -> list[tuple[_Content, Message]]:
    """Attached messages, breadth first, each already bounded in depth."""
    found: list[tuple[_Content, Message]] = []
    queue: deque[tuple[Message, int]] = deque(outer.inner)
    while queue:
        message, depth = queue.popleft()
        content = walker.walk(message, depth, collect=collect)
        found.append((content, message))
        queue.extend(content.inner)
    return found


def _detect_forward(
    outer_text: str,
    inner: list[tuple[_Content, Message]],
    *,
    limits: ParseLimits,
    report: _Report,
    draft: _Draft,
) -> None:
    """Make the original sender the applicant when the outer one forwards."""
    attached = next((message for content, message in inner if content.depth == 1), None)
    if attached is not None and (
        len(outer_text.strip()) < _SHORT_FORWARD_NOTE or _subject_forwards(draft.subject)
    ):
        fields = _message_fields(attached)
        view = _mail_parser_view(fields, limits=limits, report=report, label="forwarded message: ")
        address, name = _pick_sender(view, fields, report=report, label="forwarded message: ")
        if address:
            draft.forwarded = True
            draft.sender, draft.sender_name = address, name
        return
    marker = _FORWARD_MARKER.search(outer_text)
    if marker is None:
        return
    note = outer_text[: marker.start()].strip()
    if len(note) >= _SHORT_FORWARD_NOTE and not _subject_forwards(draft.subject):
        return
    found = _inline_forward_sender(outer_text[marker.end() : marker.end() + 3000])
    if found is None:
        report.warn("inline forward found, but its sender could not be read")
        return
    draft.forwarded = True
    draft.sender, draft.sender_name = found


def _subject_forwards(subject: str) -> bool:
    """Whether the subject says "Fwd:" (folded first: only asked when it matters)."""
    return bool(_FORWARD_SUBJECT.match(fold(subject)))


def _inline_forward_sender(block: str) -> tuple[str, str] | None:
    """The "De :" / "From:" line of a forwarded block (first 25 lines)."""
    head = "\n".join(block.split("\n", 26)[:25])
    line = _FORWARD_FROM.search(head)
    if line is None:
        return None
    return _address_in(_MAILTO.sub(r"<\1>", line.group("value")))


def _message_fields(message: Message) -> list[_Field]:
    fields = []
    for name, value in message.raw_items():
        data = str(value).encode("utf-8", "surrogateescape")
        fields.append(_Field(str(name), data))
    return fields


def _cap_text(text: str, report: _Report) -> str:
    if len(text) > MAX_TEXT_CHARS:
        report.warn(f"message text cut to {MAX_TEXT_CHARS} characters")
        return text[:MAX_TEXT_CHARS]
    return text
