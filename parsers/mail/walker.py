"""Walking the parsed structure: body text, attachments, attached messages.

``_Walker`` visits the parts of one message under the attachment and zip
budgets, decodes text and HTML parts, collects attachments (expanding zip
archives) and queues attached messages for the caller.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING

from parsers.mail.attachments import (
    _GENERIC_TYPES,
    _clean_filename,
    _extension_for,
    _is_zip,
    _read_zip_member,
    _type_for_name,
    _zip_entry_count,
    _zip_member_name,
)
from parsers.mail.bounds import _MAX_HTML_CHARS, _ZIP_RATIO_FLOOR, MAX_TEXT_CHARS
from parsers.mail.charsets import _clean_text, _decode_bytes, _decode_words, _quoted
from parsers.mail.headers import _clean_content_type, _header_text
from parsers.mail.html_text import _html_to_text
from parsers.mail.report import _Report
from parsers.mail.structure import _Budget, _parse_structure, _Part
from parsers.text import header_safe
from parsers.types import Attachment, SpooledData

if TYPE_CHECKING:
    from pathlib import Path

    from parsers.rules import ParseLimits


# --------------------------------------------------------------------------
# Walking the structure: body text, attachments, attached messages
# --------------------------------------------------------------------------

_INNER_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
# Parts of reports: visible in content_types, neither body nor attachment.
_REPORT_PART_TYPES = frozenset({"text/rfc822-headers"})
_BOUNDARY_LINE = re.compile(rb"^--([0-9A-Za-z'()+_,./:=?-]{1,70}?)(?:--)?[ \t]*\r?$", re.M)


@dataclass
class _Content:
    """What one message (outer or attached) carries."""

    depth: int
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    inner: list[tuple[Message, int]] = field(default_factory=list)

    def text(self) -> str:
        if any(p.strip() for p in self.plain):
            pieces = self.plain
        else:
            pieces = [_html_to_text(h) for h in self.html]
        return "\n\n".join(p.strip("\n") for p in pieces if p.strip())


class _Walker:
    """Walks MIME trees without recursion, numbering parts for warnings."""

    def __init__(self, limits: ParseLimits, report: _Report, budget: _Budget) -> None:
        self.limits = limits
        self.report = report
        self.budget = budget
        self.part_no = 0
        self.content_types: dict[str, None] = {}
        self.slots = limits.max_attachments
        self.seen_attachments = 0
        self.salvaged = False
        # Budgets for the whole message, not per part: 200 parts of hostile
        # HTML or 50 archives must not multiply the cost.
        self.text_left = MAX_TEXT_CHARS
        self.html_left = _MAX_HTML_CHARS
        self.zip_left = limits.max_zip_expanded_bytes

    def walk(self, root: Message, depth: int, *, collect: bool = True) -> _Content:
        content = _Content(depth)
        stack: list[Message] = [root]
        while stack:
            part = stack.pop()
            self.part_no += 1
            number = self.part_no
            ctype = _clean_content_type(part.get_content_type())
            self.content_types.setdefault(ctype)
            try:
                children = self._visit(part, number, ctype=ctype, content=content, collect=collect)
            except Exception as exc:  # one broken part must not lose the others
                self.report.warn(
                    f"part {number} ({ctype}) could not be read ({type(exc).__name__})"
                )
                children = []
            stack.extend(reversed(children))
            self._note_defects(part, number, ctype)
        return content

    def _visit(
        self, part: Message, number: int, *, ctype: str, content: _Content, collect: bool
    ) -> list[Message]:
        """Handle one part; return the children still to walk."""
        if ctype in _INNER_MESSAGE_TYPES:
            self._inner_message(part, number, content)
            return []
        if ctype.startswith("message/") or ctype in _REPORT_PART_TYPES:
            return []  # delivery-status and the like: the type is what matters
        if part.is_multipart():
            return [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype.startswith("multipart/"):
            salvaged = self._salvage(part, number, ctype)
            if salvaged is not None:
                return salvaged
            ctype = "text/plain"
        if collect:
            self._leaf(part, number, ctype=ctype, content=content)
        return []

    def _inner_message(self, part: Message, number: int, content: _Content) -> None:
        payload = part.get_payload() if part.is_multipart() else None
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            self.report.warn(f"part {number}: attached message could not be read")
            return
        depth = content.depth + 1
        if depth > self.limits.max_nesting_depth:
            self.report.over(
                f"part {number}: attached message nested {depth} levels deep, over the limit "
                f"of {self.limits.max_nesting_depth}; not read"
            )
            return
        content.inner.append((inner, depth))

    def _salvage(self, part: Message, number: int, ctype: str) -> list[Message] | None:
        """Re-read a multipart whose boundary is missing or wrong.

        The boundary is guessed from the first delimiter-looking line; done
        once per message so a hostile message cannot make us loop.
        """
        if self.salvaged:
            return None
        payload = _payload_bytes(part)
        found = _BOUNDARY_LINE.search(payload)
        if not found:
            self.report.warn(f"part {number} ({ctype}) has no usable boundary; read as text")
            return None
        self.salvaged = True
        boundary = found.group(1).decode("ascii")
        data = b'Content-Type: multipart/mixed; boundary="%s"\n\n%s' % (found.group(1), payload)
        budget = _Budget(self.limits, max_parts=max(1, self.budget.max_parts - self.budget.parts))
        root = _parse_structure(data, budget)
        if root is None or not root.is_multipart():
            return None
        self.report.warn(
            f"part {number} ({ctype}): boundary missing or wrong; used {_quoted(boundary, 70)} "
            "found in the body"
        )
        return [c for c in root.get_payload() if isinstance(c, Message)]

    def _leaf(self, part: Message, number: int, *, ctype: str, content: _Content) -> None:
        view = _mime_view(part)
        disposition = view.get_content_disposition()
        name = self._filename(view, number)
        if ctype in ("text/plain", "text/html") and name is None and disposition != "attachment":
            text = self._part_text(part, view, number=number, ctype=ctype)
            (content.plain if ctype == "text/plain" else content.html).append(text)
            return
        if content.depth > 0:
            source = f"forwarded:{content.depth}"
        elif disposition == "inline" or (disposition is None and part.get("content-id")):
            source = "inline"
        else:
            source = "attachment"
        self._attachment(part, number, ctype=ctype, name=name, source=source, content=content)

    def _filename(self, view: Message, number: int) -> str | None:
        try:
            name = view.get_filename()
        except Exception:
            return None
        if not isinstance(name, str) or not name.strip():
            return None
        name = _fix_surrogates(name)
        return _decode_words(name, self.report, f"the file name of part {number}")

    def _part_text(self, part: Message, view: Message, *, number: int, ctype: str) -> str:
        """Decoded text of a body part, within the message's text budgets."""
        is_html = ctype == "text/html"
        left = self.html_left if is_html else self.text_left
        if left <= 0:
            self.report.warn(f"part {number}: not read, the message already has enough text")
            return ""
        data = _payload_bytes(part)
        cut = len(data) > 4 * left
        data = data[: 4 * left]  # enough bytes for ``left`` characters in any charset
        try:
            declared = view.get_content_charset()
        except Exception:
            declared = "x-unreadable"
        text, problem, used = _decode_bytes(data, declared)
        if problem and data:
            self.report.warn(f"{problem} in part {number}; decoded as {used}")
        text = _clean_text(text)
        if cut or len(text) > left:
            self.report.warn(f"part {number}: text cut to {left} characters")
            text = text[:left]
        if is_html:
            self.html_left -= len(text)
        else:
            self.text_left -= len(text)
        return text

    def _attachment(
        self,
        part: Message,
        number: int,
        *,
        ctype: str,
        name: str | None,
        source: str,
        content: _Content,
    ) -> None:
        self.seen_attachments += 1
        if self.slots <= 0:
            return  # counted; reported once at the end
        self.slots -= 1
        notes: list[str] = []
        loud: list[str] = []
        filename = _clean_filename(name, notes, loud) or f"piece-{number}.{_extension_for(ctype)}"
        if ctype in _GENERIC_TYPES:
            ctype = _type_for_name(filename)
        data = _payload_bytes(part, to_file=True)
        attachment = self._make_attachment(
            filename, ctype, data=data, source=source, notes=notes, loud=loud
        )
        content.attachments.append(attachment)
        if _is_zip(filename, ctype, attachment.data):
            content.attachments.extend(self._expand_zip(attachment))

    def _make_attachment(
        self,
        filename: str,
        ctype: str,
        *,
        data: bytes | SpooledData,
        source: str,
        notes: list[str],
        loud: list[str],
    ) -> Attachment:
        """``notes`` stay on the attachment, ``loud`` go to the message too."""
        size = len(data)
        if size > self.limits.max_attachment_bytes:
            loud.append(
                f"{size} bytes, over the limit of {self.limits.max_attachment_bytes}; data dropped"
            )
            self.report.over_limits = True
            if isinstance(data, SpooledData):
                data.path.unlink(missing_ok=True)
            data = b""
        for note in loud:
            self.report.warn(f"attachment {_quoted(filename)}: {note}")
        notes = [*loud, *notes]
        return Attachment(
            filename=filename,
            content_type=ctype,
            data=data,  # type: ignore[arg-type]
            sha256=data.sha256
            if isinstance(data, SpooledData)
            else hashlib.sha256(data).hexdigest(),
            size=size,
            source=source,
            warnings=tuple(header_safe(n, max_length=300) for n in notes),
        )

    def _note_defects(self, part: Message, number: int, ctype: str) -> None:
        for defect in list(getattr(part, "defects", []))[:5]:
            self.report.warn(f"part {number} ({ctype}): {_defect_text(defect)}")

    def report_dropped_attachments(self) -> None:
        if self.seen_attachments > self.limits.max_attachments:
            self.report.over(
                f"{self.seen_attachments} attachments, over the limit of "
                f"{self.limits.max_attachments}; kept the first {self.limits.max_attachments}"
            )

    # -- zip archives -------------------------------------------------------

    def _expand_zip(self, archive: Attachment) -> list[Attachment]:
        """Members of a zip attachment, or nothing if the archive is refused."""
        label = f"attachment {_quoted(archive.filename)}"
        if not archive.data:
            return []
        data = archive.data
        count = _zip_entry_count(data)
        if count > self.limits.max_zip_members:
            self.report.over(
                f"{label}: {count} zip members, over the limit of {self.limits.max_zip_members}; "
                "archive not expanded"
            )
            return []
        try:
            # An archive in a file is read there (only its directory and members).
            source = data.path if isinstance(data, SpooledData) else io.BytesIO(data)
            archive_file = zipfile.ZipFile(source)
        except Exception as exc:
            self.report.warn(f"{label}: unreadable zip archive ({type(exc).__name__})")
            return []
        with archive_file:
            infos = [info for info in archive_file.infolist() if not info.is_dir()]
            if not self._zip_declared_ok(infos, label):
                return []
            return self._zip_members(
                archive_file, infos, archive_name=archive.filename, label=label
            )

    def _zip_declared_ok(self, infos: list[zipfile.ZipInfo], label: str) -> bool:
        """Refuse on what the central directory declares, before inflating."""
        limits = self.limits
        if len(infos) > limits.max_zip_members:
            self.report.over(f"{label}: {len(infos)} zip members, over the limit; not expanded")
            return False
        declared = sum(info.file_size for info in infos)
        packed = sum(info.compress_size for info in infos)
        ratio = declared / max(packed, 1)
        if declared > _ZIP_RATIO_FLOOR and ratio > limits.max_zip_ratio:
            self.report.over(
                f"{label}: zip bomb refused (ratio {ratio:.0f} > {limits.max_zip_ratio:g})"
            )
            return False
        if declared > limits.max_zip_expanded_bytes:
            self.report.over(
                f"{label}: zip bomb refused (expands to {declared} bytes > "
                f"{limits.max_zip_expanded_bytes})"
            )
            return False
        if declared > self.zip_left:
            self.report.over(
                f"{label}: not expanded, the message's archives would expand to more than "
                f"{limits.max_zip_expanded_bytes} bytes"
            )
            return False
        return True

    def _zip_members(
        self,
        archive_file: zipfile.ZipFile,
        infos: list[zipfile.ZipInfo],
        *,
        archive_name: str,
        label: str,
    ) -> list[Attachment]:
        members: list[Attachment] = []
        budget = self.zip_left
        slots, seen = self.slots, self.seen_attachments
        for index, info in enumerate(infos, 1):
            member = self._zip_member(
                archive_file,
                info,
                index=index,
                archive_name=archive_name,
                budget=budget,
                label=label,
            )
            if member is _REFUSED:
                # All or nothing: give back what the dropped members took.
                self.slots, self.seen_attachments = slots, seen
                return []
            if isinstance(member, Attachment):
                members.append(member)
                budget -= len(member.data)
        self.zip_left = budget
        return members

    def _zip_member(
        self,
        archive_file: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        *,
        index: int,
        archive_name: str,
        budget: int,
        label: str,
    ) -> Attachment | object | None:
        notes: list[str] = []
        loud: list[str] = []
        filename = _clean_filename(_zip_member_name(info), notes, loud) or f"piece-{index}.bin"
        shown = f"{label}: member {_quoted(filename)}"
        for note in loud:
            self.report.warn(f"{label}: member {note}")
        if info.flag_bits & 0x1:
            self.report.warn(f"{shown} is encrypted; skipped")
            return None
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self.report.warn(f"{shown} uses compression method {info.compress_type}; skipped")
            return None
        self.seen_attachments += 1
        if self.slots <= 0:
            return None
        self.slots -= 1
        limit = min(budget, self.limits.max_attachment_bytes)
        try:
            data, outcome = _read_zip_member(
                archive_file,
                info,
                limit=limit,
                max_ratio=self.limits.max_zip_ratio,
                spool=self._spool(),
            )
        except Exception as exc:
            self.report.warn(f"{shown} unreadable ({type(exc).__name__}); skipped")
            return None
        if outcome == "ratio" or (outcome == "over" and limit == budget):
            member = _quoted(filename)
            self.report.over(f"{label}: zip bomb refused (member {member} inflates too far)")
            return _REFUSED
        notes = [*loud, *notes]
        if outcome == "over":
            return self._oversized_member(
                filename, info, limit=limit, archive_name=archive_name, notes=notes
            )
        if _is_zip(filename, _type_for_name(filename), data):
            self.report.warn(f"{label}: nested archive {_quoted(filename)} not expanded")
            notes.append("nested archive, not expanded")
        return self._make_attachment(
            filename,
            _type_for_name(filename),
            data=data,
            source=f"zip:{archive_name}",
            notes=notes,
            loud=[],
        )

    def _spool(self) -> Callable[[], Path] | None:
        """Where big attachments go when the message is read from its spool, else None."""
        elided = self.budget.elided
        return elided.spool if elided is not None else None

    def _oversized_member(
        self,
        filename: str,
        info: zipfile.ZipInfo,
        *,
        limit: int,
        archive_name: str,
        notes: list[str],
    ) -> Attachment:
        size = max(info.file_size, limit + 1)
        notes.append(f"over {limit} bytes once inflated; data dropped")
        self.report.over(
            f"zip member {_quoted(filename)}: over {limit} bytes once inflated; data dropped"
        )
        return Attachment(
            filename=filename,
            content_type=_type_for_name(filename),
            data=b"",
            sha256=hashlib.sha256(b"").hexdigest(),
            size=size,
            source=f"zip:{archive_name}",
            warnings=tuple(header_safe(n, max_length=300) for n in notes),
        )


_REFUSED = object()


def _mime_view(part: Message) -> Message:
    """The part's Content-* headers with raw 8-bit bytes decoded.

    compat32 turns 8-bit header bytes into U+FFFD when asked for a parameter
    (``B\\xc3\\xa9thune.pdf`` came out as ``B\\ufffd\\ufffdthune.pdf``).
    """
    view = _Part()
    view.set_default_type(part.get_default_type())
    for name, value in part.raw_items():
        if name.lower() in ("content-type", "content-disposition"):
            view[name] = _fix_surrogates(str(value))
    return view


def _fix_surrogates(text: str) -> str:
    """Text holding raw bytes as surrogates (stdlib style), properly decoded."""
    if not re.search(r"[\udc80-\udcff]", text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    return _header_text(data)[0]


def _payload_bytes(part: Message, *, to_file: bool = False) -> bytes | SpooledData:
    """The decoded payload; b"" when there is none or it cannot be decoded.

    ``to_file``: a big base64 payload of a message read from its spool may
    be decoded into a file (``_Elided.decode_base64``).
    """
    budget = getattr(part, "mb_budget", None)
    elided = budget.elided if budget is not None else None
    if elided is not None and not part.is_multipart() and elided.holds(part._payload):
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if cte == "base64":
            data = elided.decode_base64(part._payload, to_file=to_file)
            if data is not None:
                return data
        part.set_payload(elided.restore(part._payload))
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    return data if isinstance(data, bytes) else b""


def _defect_text(defect: object) -> str:
    """``InvalidBase64PaddingDefect`` -> ``invalid base64 padding``."""
    name = type(defect).__name__.removesuffix("Defect")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()
