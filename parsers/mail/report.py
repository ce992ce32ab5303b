"""What is built while one message is read: the warnings report and the draft.

``_Report`` keeps the warnings (deduplicated, capped) and the over-limits
flag; ``_Draft`` holds the fields of the ``ParsedMail`` as the stages fill
them. ``_quiet_libraries`` silences mail-parser's logging and turns Python
warnings into ours while our calls run.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from parsers.mail.bounds import _MAX_WARNINGS
from parsers.text import header_safe
from parsers.types import Attachment, ParsedMail

_QUIET = contextvars.ContextVar("parsers_mail_quiet", default=False)
# warnings.catch_warnings swaps process-wide state: two threads doing it at
# once can leave the filters broken for good, so our calls take turns.
_WARNINGS_LOCK = threading.Lock()


class _QuietFilter(logging.Filter):
    """Drop mail-parser's records while one of our calls is running."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _QUIET.get()


for _logger_name in ("mailparser", "mailparser.core", "mailparser.utils"):
    logging.getLogger(_logger_name).addFilter(_QuietFilter())


def _quiet_libraries(report: _Report) -> _Quiet:
    """Silence mail-parser's logging and turn Python warnings into ours (a context manager)."""
    return _Quiet(report)


class _Quiet:
    """``_quiet_libraries``' context: entered once per message read.

    What a generator-based context manager would do (set the flag, take the
    lock, catch every warning; on the way out undo it all in reverse and,
    when no exception is on its way, report the first ten warnings), as a
    plain class: ``contextlib``'s generator machinery cost as much as the
    rest on a header block.
    """

    __slots__ = ("_catcher", "_caught", "_report", "_token")

    def __init__(self, report: _Report) -> None:
        self._report = report

    def __enter__(self) -> None:
        self._token = _QUIET.set(True)
        try:
            _WARNINGS_LOCK.acquire()
            try:
                self._catcher = warnings.catch_warnings(record=True)
                self._caught = self._catcher.__enter__()
                try:
                    warnings.simplefilter("always")
                except BaseException:
                    self._catcher.__exit__(None, None, None)
                    raise
            except BaseException:
                _WARNINGS_LOCK.release()
                raise
        except BaseException:
            _QUIET.reset(self._token)
            raise

    def __exit__(self, kind: object, value: object, traceback: object) -> bool:
        try:
            try:
                self._catcher.__exit__(kind, value, traceback)
            finally:
                _WARNINGS_LOCK.release()
        finally:
            _QUIET.reset(self._token)
        if kind is None:
            for item in self._caught[:10]:
                self._report.warn(f"library warning: {item.category.__name__}: {item.message}")
        return False


# --------------------------------------------------------------------------
# Results being built
# --------------------------------------------------------------------------


class _Report:
    """Warnings (deduplicated, capped) and the over-limits flag."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.over_limits = False
        self._seen: set[str] = set()
        self._hidden = 0

    def warn(self, text: str) -> None:
        text = header_safe(text, max_length=300)
        if text in self._seen:
            return
        if len(self.items) >= _MAX_WARNINGS:
            self._hidden += 1
            return
        self._seen.add(text)
        self.items.append(text)

    def over(self, text: str) -> None:
        self.over_limits = True
        self.warn(text)

    def copy(self) -> _Report:
        """An independent copy (its warnings are strings: copying the containers is enough)."""
        twin = _Report()
        twin.items = list(self.items)
        twin.over_limits = self.over_limits
        twin._seen = set(self._seen)
        twin._hidden = self._hidden
        return twin

    def result(self) -> tuple[str, ...]:
        if self._hidden:
            return (*self.items, f"{self._hidden} more warnings not shown")
        return tuple(self.items)


@dataclass
class _Draft:
    """The fields of the ParsedMail, filled in stage by stage."""

    sha256: str
    size: int
    message_id: str | None = None
    subject: str = ""
    sender: str = ""
    sender_name: str = ""
    from_address: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: str | None = None
    return_path: str | None = None
    date: datetime | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    content_types: tuple[str, ...] = ()
    forwarded: bool = False

    def carried_on(self, *, sha256: str, size: int) -> _Draft:
        """A copy to carry on with a whole message after its header stage.

        What ``dataclasses.replace(self, sha256=..., size=..., headers=dict(self.headers),
        attachments=[])`` gives (every other field the same object), without
        its walk over the fields and its ``__init__`` of 19 arguments;
        ``tests/test_head_reuse_copy.py`` compares both.
        """
        twin = _NEW(_Draft)
        twin.__dict__.update(self.__dict__)
        twin.sha256 = sha256
        twin.size = size
        twin.headers = dict(self.headers)
        twin.attachments = []
        return twin

    def build(self, report: _Report) -> ParsedMail:
        """The ``ParsedMail`` of what was read, with ``report``'s warnings.

        ``ParsedMail`` is a frozen dataclass without ``__post_init__``: its
        ``__init__`` only sets the 21 attributes one ``object.__setattr__``
        at a time, which costs more than the rest of building it; the
        instance dict is filled directly instead (same attributes, so the
        same equality, hash and repr; ``tests/test_head_speed.py`` checks
        it against the constructor).
        """
        mail = _NEW(ParsedMail)
        mail.__dict__.update(
            sha256=self.sha256,
            size=self.size,
            message_id=self.message_id,
            subject=self.subject,
            sender=self.sender,
            sender_name=self.sender_name,
            from_address=self.from_address,
            to=self.to,
            cc=self.cc,
            reply_to=self.reply_to,
            return_path=self.return_path,
            date=self.date,
            in_reply_to=self.in_reply_to,
            references=self.references,
            headers=MappingProxyType(dict(self.headers)),
            text=self.text,
            attachments=tuple(self.attachments),
            content_types=self.content_types,
            forwarded=self.forwarded,
            warnings=report.result(),
            over_limits=report.over_limits,
        )
        return mail


_NEW = object.__new__
