"""One pass over the mailboxes: fetch new mail, file each message exactly once.

For every message: analyse it (no writes), then in ONE transaction store the
raw message, the ledger row, the sighting, the dossier changes and the
cursor; commit; only then flag or move it on the server. A crash before the
commit leaves nothing (the message is fetched again); a crash after it leaves
everything, and the ledger's dedup keys stop a second filing. Server actions
not done yet are recorded as ``pending`` on the sighting and retried at the
next pass.

Cursors are (mailbox, folder, UIDVALIDITY, last UID). On the first
connection, or when UIDVALIDITY changes (the folder was recreated), the
whole folder is scanned: mail older than ``backlog_days`` is recorded as
skipped and never answered, the rest is deduplicated against the ledger.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from mailbot import faults
from mailbot.app import App
from mailbot.config import MailboxSettings, secret
from mailbot.errors import MailbotError
from mailbot.filing import (
    Filed,
    Position,
    bulk_ledger,
    file_analysis,
    file_ignored,
    is_quiet,
    known_message,
)
from mailbot.imap import FetchedMessage, FolderState, ImapError, MailboxClient
from mailbot.pipeline import Analyser, Analysis, remove_spooled
from mailbot.prefetch import StructurePrefetch
from parsers.mail import HeadReading, header_block, header_text, read_headers
from parsers.mail.bodystructure import FetchedStructure
from parsers.mail.headers import head_ends_within
from parsers.reasons import ReviewReason
from storage import repositories as repo
from storage.db import read_scope, session_scope
from storage.errors import BlobError
from storage.models import (
    SUBJECT_MAX_LENGTH,
    Message,
    MessageStatus,
    ServerAction,
    Sighting,
    dedup_key_for,
    normalise_message_id,
    pending_action,
    utcnow,
)

log = logging.getLogger(__name__)

# Messages at least this big are spooled to a file as soon as they are
# fetched and read from there: the worker does not hold them while their
# documents are read (bench.memory).
SPOOL_BYTES = 1 << 20
# A message of at least ``SPOOL_BYTES`` (by the server's RFC822.SIZE) is
# fetched in partial FETCHes of this many bytes, each written to the spool as
# it arrives (``_spill``).
PIECE_BYTES = 1 << 20
# What a batch may hold in memory of whole messages (and of the analyses of
# a run of mail that is not for us): the bodies of one batch are fetched in
# FETCH commands of at most this many bytes (by the server's RFC822.SIZE; a
# bigger message alone), messages fetched beyond it are spooled, and a quiet
# run that holds more is filed at once. The worker's memory therefore does
# not grow with ``fetch_batch``.
BATCH_BYTES = 16 << 20

# Failures of the infrastructure: the message is fetched again next time.
RETRY_LATER = (OperationalError, BlobError, OSError, ImapError)


@dataclass
class MailboxReport:
    mailbox: str
    new: int = 0
    filed: int = 0
    ignored: int = 0
    skipped: int = 0
    needs_review: int = 0
    failed: int = 0
    duplicates: int = 0
    dossiers_created: list[str] = field(default_factory=list)
    error: str | None = None

    def count(self, filed: Filed) -> None:
        if filed.duplicate:
            self.duplicates += 1
            return
        attribute = {
            MessageStatus.FILED: "filed",
            MessageStatus.IGNORED: "ignored",
            MessageStatus.SKIPPED: "skipped",
            MessageStatus.NEEDS_REVIEW: "needs_review",
            MessageStatus.FAILED: "failed",
        }[MessageStatus(filed.status)]
        setattr(self, attribute, getattr(self, attribute) + 1)
        if filed.dossier_created and filed.dossier_reference:
            self.dossiers_created.append(filed.dossier_reference)

    def summary(self) -> str:
        if self.error:
            return f"{self.mailbox}: ERROR {self.error}"
        parts = [
            f"{self.new} new",
            f"{self.filed} filed",
            f"{self.needs_review} to review",
            f"{self.ignored} ignored",
            f"{self.duplicates} already known",
        ]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (older than the backlog window)")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return f"{self.mailbox}: " + ", ".join(parts)


Progress = Callable[[str, int, int], None]


def poll_all(app: App, *, progress: Progress | None = None) -> list[MailboxReport]:
    """One pass over every enabled mailbox; one mailbox's failure never stops the others."""
    analyser = Analyser(app.config)
    reports = []
    for mailbox in app.config.settings.mailboxes:
        if not mailbox.enabled:
            continue
        reports.append(poll_mailbox(app, mailbox, analyser=analyser, progress=progress))
    return reports


# glibc's mallopt parameter: allocations at least this big get their own
# mapping, returned to the system as soon as they are freed.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def _release_big_buffers_at_once() -> None:
    """Make glibc return big freed buffers (a fetched message, a decoded annex) at once.

    By default glibc raises its mmap threshold each time a big buffer is
    freed (up to 32 MB), so the next ones come from the heap, which does not
    shrink: the worker kept the 130 MB high-water mark of fetching and
    parsing a 36 MB message while the sandbox child read its annex
    (bench.memory, tree PSS). A fixed threshold of 1 MiB keeps that memory
    out of the heap. Other C libraries: nothing to do.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


@functools.cache
def _freeze_startup_heap() -> None:
    """Leave what the process built before its first poll out of the collector's scans.

    The imports, the configuration and the compiled rules are some 120,000
    objects that live as long as the process. Each full collection during a
    poll scanned them all: a tenth of a first poll over 20,000 mails
    (``bench.backlog``). ``gc.freeze`` moves them to the permanent generation,
    once per process; they are still freed by reference counting, only a
    reference cycle among them that became garbage later would be kept.
    """
    gc.collect()
    gc.freeze()


# The collector's first threshold while a poll runs (Python's default: 700).
_POLL_GC_THRESHOLD = 10_000
_gc_lock = threading.Lock()
# Polls running in this process, and the thresholds to restore after the last one.
_gc_polls = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run less often the collections that find nothing, while a poll runs.

    A poll keeps a batch of messages alive (structures, header readings,
    analyses waiting to be filed) and frees everything else by reference
    counting: the young-generation collections that the default threshold
    (700 net allocations) starts every few messages found no garbage at all
    over a first poll of 20,000 mails, yet scanned and promoted the batch
    again and again (a tenth of that poll's CPU, ``bench.backlog``). A
    threshold of ``_POLL_GC_THRESHOLD`` still collects reference cycles
    during the poll, only less often. The thresholds in force before the
    first running poll come back after the last one (threads may poll at
    once); a collector turned off or set to 0 is left as it is.
    """
    global _gc_polls, _gc_saved
    with _gc_lock:
        if _gc_polls == 0:
            _gc_saved = gc.get_threshold()
            if 0 < _gc_saved[0] < _POLL_GC_THRESHOLD:
                gc.set_threshold(_POLL_GC_THRESHOLD, *_gc_saved[1:])
        _gc_polls += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_polls -= 1
            if _gc_polls == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                _gc_saved = None


def poll_mailbox(
    app: App,
    mailbox: MailboxSettings,
    *,
    analyser: Analyser | None = None,
    progress: Progress | None = None,
    client_factory: Callable[[MailboxSettings, str], MailboxClient] = MailboxClient,
    should_stop: Callable[[], bool] = lambda: False,
) -> MailboxReport:
    """One pass over one mailbox; ``should_stop`` is checked between messages."""
    report = MailboxReport(mailbox.name)
    analyser = analyser or Analyser(app.config)
    _release_big_buffers_at_once()
    _freeze_startup_heap()
    try:
        password = secret(mailbox.password_env) or ""
        with _fewer_collections(), client_factory(mailbox, password) as client:
            _poll(
                app,
                client=client,
                open_client=functools.partial(_connected, client_factory, mailbox, password),
                mailbox=mailbox,
                analyser=analyser,
                report=report,
                progress=progress,
                should_stop=should_stop,
            )
    except (*RETRY_LATER, MailbotError) as err:
        log.error("mailbox %s: %s", mailbox.name, err, exc_info=not isinstance(err, MailbotError))
        report.error = str(err) or type(err).__name__
    return report


def _connected(
    factory: Callable[[MailboxSettings, str], MailboxClient],
    mailbox: MailboxSettings,
    password: str,
) -> MailboxClient:
    """A second connection to ``mailbox`` (see ``StructurePrefetch``)."""
    client = factory(mailbox, password)
    client.connect()
    return client


def _poll(
    app: App,
    *,
    client: MailboxClient,
    open_client: Callable[[], MailboxClient],
    mailbox: MailboxSettings,
    analyser: Analyser,
    report: MailboxReport,
    progress: Progress | None,
    should_stop: Callable[[], bool],
) -> None:
    if _nothing_new(app, client, mailbox):
        return
    state = client.select(mailbox.folder)
    app.blobs.clear_spool()  # what a crash left between a fetch and its filing
    _retry_pending_server_actions(app, client=client, mailbox=mailbox, state=state)
    with session_scope(app.engine) as session:
        cursor = repo.get_cursor(session=session, mailbox=mailbox.name, folder=state.name)
        known = (cursor.uidvalidity, cursor.last_uid) if cursor else None

    if known is not None and known[0] == state.uidvalidity:
        plan = [(uid, True) for uid in client.uids_after(known[1])]
        if not plan and state.uidnext and state.uidnext - 1 > known[1]:
            # The newest mail was expunged unread: nothing lies between the
            # cursor and UIDNEXT, so move the cursor up and keep the next
            # check cheap (_nothing_new).
            _advance_cursor(app, mailbox=mailbox, state=state, uid=state.uidnext - 1)
    else:
        if known is not None:
            log.warning(
                "mailbox %s/%s: UIDVALIDITY changed from %s to %s; rescanning",
                mailbox.name,
                state.name,
                known[0],
                state.uidvalidity,
            )
            with session_scope(app.engine) as session:
                repo.record_event(
                    session=session,
                    actor="system",
                    action="mailbox.uidvalidity_changed",
                    details={
                        "mailbox": mailbox.name,
                        "folder": state.name,
                        "old": known[0],
                        "new": state.uidvalidity,
                    },
                )
        plan = _full_scan_plan(app, client)
        if not plan:
            # An empty folder still gets its cursor: next time, only UIDs above it.
            _advance_cursor(app, mailbox=mailbox, state=state, uid=0)
    if not plan:
        return
    report.new = sum(1 for _uid, process in plan if process)
    batch = app.config.settings.intake.fetch_batch
    # More than one batch: the next one's structures come on a second
    # connection while this one is read.
    with StructurePrefetch(
        open_client, folder=state, batch=batch, enabled=len(plan) > batch
    ) as prefetch:
        _poll_batches(
            app,
            client=client,
            mailbox=mailbox,
            state=state,
            plan=plan,
            analyser=analyser,
            prefetch=prefetch,
            report=report,
            progress=progress,
            should_stop=should_stop,
        )


def _poll_batches(
    app: App,
    *,
    client: MailboxClient,
    mailbox: MailboxSettings,
    state: FolderState,
    plan: list[tuple[int, bool]],
    analyser: Analyser,
    prefetch: StructurePrefetch,
    report: MailboxReport,
    progress: Progress | None,
    should_stop: Callable[[], bool],
) -> None:
    """Read, file and act on the planned UIDs a batch at a time, moving the cursor."""
    batch = app.config.settings.intake.fetch_batch
    done = 0
    for start in range(0, len(plan), batch):
        if should_stop():
            return
        chunk = plan[start : start + batch]
        skip = [uid for uid, process in chunk if not process]
        take = [uid for uid, process in chunk if process]
        if skip:
            _record_skipped(
                app, client=client, mailbox=mailbox, state=state, uids=skip, report=report
            )
        structures = prefetch.take(take)
        prefetch.submit(
            [uid for uid, process in plan[start + batch : start + 2 * batch] if process]
        )
        fetched = _first_pass(
            app,
            client=client,
            mailbox=mailbox,
            analyser=analyser,
            uids=take,
            batch=batch,
            structures=structures,
        )
        # A UID the server did not return is skipped only once it is really gone
        # (expunged meanwhile); otherwise stop below it so that it is fetched again.
        unreturned = sorted(set(take) - {m.uid for m in fetched})
        still_there = client.existing_uids(unreturned) if unreturned else []
        if still_there:
            fetched = [m for m in fetched if m.uid < still_there[0]]
        try:
            handled = _handle_all(
                app,
                client=client,
                mailbox=mailbox,
                state=state,
                analyser=analyser,
                fetched=fetched,
                report=report,
                should_stop=should_stop,
            )
        finally:
            _drop_spool(fetched)
        if not handled:
            return  # the cursor is at the last message filed: nothing is lost
        if still_there:
            raise ImapError(
                f"{mailbox.name}: the server did not return UID {still_there[0]}; "
                "it will be fetched again at the next poll"
            )
        done += len(chunk)
        if progress:
            progress(mailbox.name, done, len(plan))
        last = max(uid for uid, _p in chunk)
        # Filing a message moves the cursor to it in the same transaction: a
        # chunk that ends with a filed message needs no transaction of its own.
        if not fetched or fetched[-1].uid != last:
            _advance_cursor(app, mailbox=mailbox, state=state, uid=last)


@dataclass(frozen=True)
class _Arrival:
    """A message of the batch as far as it was fetched.

    ``raw`` is the whole message, or only its header block when the headers
    decided (``decided``) or showed a message already in the ledger
    (``whole`` False).
    """

    uid: int
    raw: bytes
    decided: Analysis | None = None
    whole: bool = True
    # A big message is spooled to a file as soon as it is fetched (``raw``
    # is then empty) and read from there; ``key`` is its dedup key.
    spool: Path | None = None
    key: str | None = None
    # Its header block as the first pass read it (parsed once, not twice).
    head: HeadReading | None = None
    # ``key`` was looked up in the ledger by the first pass (and not found).
    checked: bool = False

    def dedup_key(self) -> str:
        return self.key if self.key is not None else quick_dedup_key(self.raw)


def _first_pass(
    app: App,
    *,
    client: MailboxClient,
    mailbox: MailboxSettings,
    analyser: Analyser,
    uids: list[int],
    batch: int,
    structures: list[FetchedStructure] | None = None,
) -> list[_Arrival]:
    """Structure and headers of the batch first; whole messages only where needed.

    One FETCH of RFC822.SIZE, BODYSTRUCTURE and the header block for the
    batch. A message the headers settle (``Analyser.decide_from_headers``)
    or whose Message-ID is already in the ledger is not fetched further;
    the others are fetched whole (``BODY.PEEK[]``) in one more FETCH. A
    UID absent from both answers is absent from the result: the caller
    checks whether it is still there.
    """
    if structures is None:  # not prefetched (see ``StructurePrefetch``)
        structures = list(client.fetch_structures(uids, batch=batch))
    header_keys = {item.uid: _header_key(item.header) for item in structures}
    known = _known_message_ids(app, header_keys)
    arrivals: dict[int, _Arrival] = {}
    # The header blocks read for the decision, reused when the message is read whole.
    heads: dict[int, HeadReading] = {}
    for item in structures:
        key = header_keys[item.uid]
        if item.uid in known:
            arrivals[item.uid] = _Arrival(item.uid, item.header, whole=False, key=key)
            continue
        head = analyser.read_head(item.header, size=item.size)
        decided = analyser.decide_from_headers(
            head, structure=item.structure, size=item.size, mailbox=mailbox.name
        )
        if decided is not None:
            # Its raw bytes are the header block: the key read from it is its key.
            arrivals[item.uid] = _Arrival(
                item.uid, item.header, decided=decided, key=key, checked=key.startswith("mid")
            )
        elif head is not None:
            heads[item.uid] = head
    rest = [uid for uid in uids if uid not in arrivals]
    sizes = {item.uid: item.size for item in structures}
    # A message the server says is big goes to the spool as it is fetched.
    big = {uid for uid in rest if sizes.get(uid, 0) >= SPOOL_BYTES}
    held = 0
    for message in _fetch_whole(
        client, [uid for uid in rest if uid not in big], sizes=sizes, batch=batch
    ):
        arrival = _arrival(
            app,
            message.uid,
            message.raw,
            head=heads.get(message.uid),
            spool=held + len(message.raw) > BATCH_BYTES,
        )
        held += len(arrival.raw)
        arrivals[message.uid] = _key_checked(arrival, header_keys.get(message.uid, ""))
        del message, arrival  # a spooled message is not held here
    for uid in sorted(big):
        spilled = _spill(app, client, uid, head=heads.get(uid))
        if spilled is not None:  # None: gone (the caller checks whether it is still there)
            arrivals[uid] = _key_checked(spilled, header_keys.get(uid, ""))
    return [arrivals[uid] for uid in sorted(arrivals)]


def _key_checked(arrival: _Arrival, looked_up: str) -> _Arrival:
    """``arrival``, marked as looked up in the ledger if the first pass looked up its key.

    Whole, its key is read again (the server's header block may end elsewhere
    than ours): only the same Message-ID key counts.
    """
    if looked_up.startswith("mid") and _key_of(arrival) == looked_up:
        return replace(arrival, key=looked_up, checked=True)
    return arrival


def _spill(
    app: App, client: MailboxClient, uid: int, *, head: HeadReading | None
) -> _Arrival | None:
    """A big message fetched piece by piece straight into the spool; None when it is gone.

    Neither imaplib nor the worker holds more than a piece of it
    (``PIECE_BYTES``); its dedup key is read from the file. When the spool
    cannot take it (a full disk), it is fetched whole as any other message.
    """
    digest = hashlib.sha256()
    length = 0

    def pieces() -> Iterator[bytes]:
        nonlocal length
        for piece in client.fetch_pieces(uid, piece=PIECE_BYTES):
            digest.update(piece)
            length += len(piece)
            yield piece

    try:
        path = app.blobs.spool_pieces(pieces())
    except BlobError as err:
        log.warning("uid %s: not spooled as fetched (%s); fetched whole", uid, err)
        found = list(client.fetch([uid], batch=1))
        return _arrival(app, uid, found[0].raw, head=head) if found else None
    if not length:
        path.unlink(missing_ok=True)
        return None
    try:
        key: str | None = _spooled_key(path, sha=digest.hexdigest(), length=length)
    except Exception:  # as in _arrival: the full path decides
        key = ""
    return _Arrival(uid, b"", spool=path, key=key, head=head)


def _fetch_whole(
    client: MailboxClient, uids: list[int], *, sizes: dict[int, int], batch: int
) -> Iterator[FetchedMessage]:
    """The whole messages ``uids``, in FETCH commands of at most ``batch`` messages and
    ``BATCH_BYTES`` (by their size in ``sizes``; a message of unknown size counts as
    ``SPOOL_BYTES``), so that no answer held by imaplib is much bigger than that.
    """
    group: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, SPOOL_BYTES)
        if group and (len(group) >= batch or total + size > BATCH_BYTES):
            yield from client.fetch(group, batch=len(group))
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield from client.fetch(group, batch=len(group))


def _arrival(
    app: App, uid: int, raw: bytes, *, head: HeadReading | None, spool: bool = False
) -> _Arrival:
    """A whole message; spooled to a file when it is big (see ``SPOOL_BYTES``) or ``spool``."""
    if len(raw) < SPOOL_BYTES and not spool:
        return _Arrival(uid, raw, head=head)
    try:
        key: str | None = quick_dedup_key(raw)
    except Exception:  # a header the quick parser chokes on: the full path decides
        key = ""
    try:
        spool = app.blobs.spool(raw)
    except (BlobError, OSError) as err:
        # Spooling only saves memory: a full disk (or a file size limit) must
        # not stop the rest of the batch. The message stays in memory; if its
        # filing cannot store it either, it alone fails and is fetched again.
        log.warning("uid %s: not spooled (%s); kept in memory", uid, err)
        return _Arrival(uid, raw, head=head)
    return _Arrival(uid, b"", spool=spool, key=key, head=head)


def _drop_spool(arrivals: Iterable[_Arrival]) -> None:
    """Delete the spooled files of a batch: filed by now, or to be fetched again."""
    for arrival in arrivals:
        if arrival.spool is not None:
            remove_spooled(arrival.spool)


def _header_key(header: bytes) -> str:
    """``quick_dedup_key`` of a header block; "" when the quick parser chokes on it."""
    try:
        return quick_dedup_key(header)
    except Exception:  # the whole message decides
        return ""


def _key_of(arrival: _Arrival) -> str | None:
    """``arrival.dedup_key()``, None when the quick parser chokes on it."""
    try:
        return arrival.dedup_key()
    except Exception:  # the full path decides
        return None


def _known_message_ids(app: App, header_keys: dict[int, str]) -> set[int]:
    """UIDs whose header block names a Message-ID already in the ledger."""
    keys: dict[str, list[int]] = {}
    for uid, key in header_keys.items():
        if key.startswith("mid"):  # a "sha:" key is that of the header block, not the message
            keys.setdefault(key, []).append(uid)
    return _uids_in_ledger(app, keys)


def _nothing_new(app: App, client: MailboxClient, mailbox: MailboxSettings) -> bool:
    """True when STATUS shows no UID above the cursor and no server action is pending.

    The usual answer of a poll, given without SELECT, whose cost grows with
    the folder (see ``MailboxClient.status``).
    """
    with session_scope(app.engine) as session:
        cursor = repo.get_cursor(session=session, mailbox=mailbox.name, folder=mailbox.folder)
        if cursor is None:
            return False
        pending = session.exec(
            select(Sighting.id)
            .where(
                Sighting.mailbox == mailbox.name,
                Sighting.folder == mailbox.folder,
                Sighting.uidvalidity == cursor.uidvalidity,
                pending_action(),
            )
            .limit(1)
        ).first()
        known = (cursor.uidvalidity, cursor.last_uid)
    if pending is not None:
        return False
    status = client.status(mailbox.folder)
    return (
        status.uidvalidity == known[0]
        and status.uidnext is not None
        and (status.uidnext <= known[1] + 1)
    )


def _full_scan_plan(app: App, client: MailboxClient) -> list[tuple[int, bool]]:
    settings = app.config.settings
    today = utcnow().astimezone(ZoneInfo(settings.service.timezone)).date()
    since = today - timedelta(days=settings.intake.backlog_days)
    recent = set(client.uids_since(since))
    return [(uid, uid in recent) for uid in client.all_uids()]


# The header block as the stdlib parser sees it: it ends at the first line
# that is neither a field nor a continuation (email.feedparser.headerRE).
_HEAD_END = re.compile(rb"\n(?!From |[\x21-\x39\x3b-\x7e]*:|[\t ])")
_MESSAGE_ID_FIELD = re.compile(rb"^message-id:([^\n]*(?:\n[\t ][^\n]*)*)", re.I | re.M)
_WHOLE_PARSE_LIMIT = 1 << 20
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def quick_dedup_key(raw: bytes) -> str:
    """The ledger key from the headers alone, to skip analysing a known message.

    A regex over the header block; the stdlib header parser when the block
    starts oddly or has a lone CR. Both give the same key
    (tests/test_properties.py).
    """
    return _quick_key(raw, digest=lambda: hashlib.sha256(raw).hexdigest(), length=len(raw))


def _quick_key(raw: bytes, *, digest: Callable[[], str], length: int) -> str:
    """``quick_dedup_key`` of a message of ``length`` bytes whose SHA-256 ``digest`` gives.

    ``raw`` is the message, or, past ``_WHOLE_PARSE_LIMIT``, a first part of it
    in which its header block ends (``_head_decided``). ``digest`` is called
    only when the key needs it (``_key_for``).
    """
    end = _HEAD_END.search(raw)
    head = raw[: end.start() + 1] if end else raw
    if (
        not _FIELD_START.match(head)
        or b"\r" in head.replace(b"\r\n", b"")  # a lone CR ends a line for the stdlib
    ):
        # On a whole message the stdlib parser splits every line (266 MB for
        # 36 MB): past 1 MiB it only gets the header block, which can differ
        # on such odd input; a key that differs only costs a full analysis.
        source = raw if length <= _WHOLE_PARSE_LIMIT else header_block(raw)
        message_id = read_headers(source).get("Message-ID")
        return _key_for(str(message_id) if message_id else None, digest)
    found = _MESSAGE_ID_FIELD.search(head)
    # 8-bit bytes as str(Header) gives them under compat32: U+FFFD each.
    value = found.group(1).decode("ascii", "replace").strip() if found else ""
    return _key_for(value or None, digest)


# Stands for the SHA-256 of a message whose key is its Message-ID's (``_key_for``).
_UNUSED_SHA = "0" * 64


def _key_for(message_id: str | None, digest: Callable[[], str]) -> str:
    """``dedup_key_for(message_id, digest())``, hashing the message only when the key needs it.

    A usable Message-ID makes the key by itself: the SHA-256 of a whole
    message (the first pass reads the key of each message fetched whole)
    is computed only for a message without one.
    """
    if normalise_message_id(message_id) is not None:
        return dedup_key_for(message_id, _UNUSED_SHA)
    return dedup_key_for(message_id, digest())


def _spooled_key(path: Path, *, sha: str, length: int) -> str:
    """``quick_dedup_key`` of a spooled message, reading no more of it than its header needs."""
    if length <= _WHOLE_PARSE_LIMIT:
        return quick_dedup_key(path.read_bytes())
    prefix = bytearray()  # grown in place: a header without end reads the whole file
    with path.open("rb") as spooled:
        while more := spooled.read(_WHOLE_PARSE_LIMIT):
            prefix += more
            if _head_decided(prefix):
                break
    return _quick_key(bytes(prefix), digest=lambda: sha, length=length)


def _head_decided(prefix: bytes | bytearray) -> bool:
    """Whether the header block of a message starting with ``prefix`` ends in it, as both
    ``_HEAD_END`` and ``header_block`` would find it on the whole message.

    ``_HEAD_END`` finds the first line feed not followed by a header line, a
    test that looks no further than the next line: the end is decided when a
    whole line follows it in ``prefix`` (``head_ends_within`` says the same of
    ``header_block``).
    """
    found = _HEAD_END.search(prefix)
    if found is None or prefix.find(b"\n", found.start() + 1) < 0:
        return False
    return head_ends_within(prefix)


def _handle_all(
    app: App,
    *,
    client: MailboxClient,
    mailbox: MailboxSettings,
    state: FolderState,
    analyser: Analyser,
    fetched: list[_Arrival],
    report: MailboxReport,
    should_stop: Callable[[], bool],
) -> bool:
    """File fetched messages in UID order; False if asked to stop before the end.

    Mail that is not for us is the bulk of a mailbox: a run of it is filed in
    one transaction (``file_ignored``) written just before the next message
    that needs more, or at the end. The cursor always stays at or below the
    last message whose rows are committed.
    """
    quiet: list[tuple[Analysis, Position]] = []
    quiet_bytes = 0

    def file_quiet_run() -> None:
        """File the run of mail that is not for us gathered so far (``quiet``)."""
        _file_quiet(
            app,
            client=client,
            mailbox=mailbox,
            state=state,
            analyser=analyser,
            items=quiet,
            report=report,
        )

    stopped = False
    known = _known_uids(app, fetched)
    for message in fetched:
        if should_stop():
            stopped = True
            break
        position = Position(mailbox.name, state.name, state.uidvalidity, message.uid)
        analysis = None
        if message.uid not in known:
            analysis = _analyse(client, analyser=analyser, mailbox=mailbox, arrival=message)
            if is_quiet(analysis):
                quiet.append((analysis, position))
                # Its parsed parts are held until the run is filed: a run
                # of big messages is filed before it holds too much.
                quiet_bytes += analysis.size
                if quiet_bytes > BATCH_BYTES:
                    file_quiet_run()
                    quiet, quiet_bytes = [], 0
                continue
        file_quiet_run()
        quiet, quiet_bytes = [], 0
        if analysis is None:
            filed = _file_known(app, fetched=message, position=position, state=state)
            if filed is None:  # it left the ledger meanwhile (purge): read it
                analysis = _analyse(client, analyser=analyser, mailbox=mailbox, arrival=message)
        if analysis is not None:
            filed = _file(app, analysis=analysis, position=position, state=state, analyser=analyser)
        faults.checkpoint("after_commit")
        report.count(filed)
        _server_action(app, client=client, mailbox=mailbox, position=position, filed=filed)
    file_quiet_run()
    return not stopped


def _analyse(
    client: MailboxClient, *, analyser: Analyser, mailbox: MailboxSettings, arrival: _Arrival
) -> Analysis:
    """The analysis of a message: the one its headers gave, or a read of the whole message."""
    if arrival.decided is not None:
        return arrival.decided
    if arrival.spool is not None:
        return analyser.analyse_file(arrival.spool, mailbox=mailbox.name, head=arrival.head)
    raw = arrival.raw
    if not arrival.whole:
        # Known by its Message-ID when the batch was fetched, gone from the
        # ledger since (purge): fetch it whole now.
        found = list(client.fetch([arrival.uid], batch=1))
        if not found:
            raise ImapError(f"{mailbox.name}: UID {arrival.uid} could not be fetched again")
        raw = found[0].raw
    return analyser.analyse(raw, mailbox=mailbox.name, head=arrival.head)


def _known_uids(app: App, fetched: list[_Arrival]) -> set[int]:
    """UIDs of messages already in the ledger (one query for the whole batch).

    Those the first pass found there, and those whose key it did not look
    up. A key filed by another worker in between makes the bulk filing
    fail and its messages filed one by one, which finds it.
    """
    found = {message.uid for message in fetched if not message.whole}
    keys: dict[str, list[int]] = {}
    for message in fetched:
        if not message.whole or message.checked:
            continue
        key = _key_of(message)
        if key:
            keys.setdefault(key, []).append(message.uid)
    return found | _uids_in_ledger(app, keys)


def _file_quiet(
    app: App,
    *,
    client: MailboxClient,
    mailbox: MailboxSettings,
    state: FolderState,
    analyser: Analyser,
    items: list[tuple[Analysis, Position]],
    report: MailboxReport,
) -> None:
    """One transaction for a run of mail that is not for us, then its server actions."""
    if not items:
        return
    settled = _wanted_action(mailbox, MessageStatus.IGNORED) == "none"
    try:
        with session_scope(app.engine) as session:
            filed = file_ignored(session=session, items=items, settled=settled)
            for (_analysis, position), outcome in zip(items, filed, strict=True):
                if outcome.duplicate:
                    _settle_if_nothing_to_do(
                        session, app=app, position=position, status=outcome.status
                    )
            _save_cursor(session, items[-1][1], state)
            faults.checkpoint("before_commit")
    except IntegrityError:
        # Another worker wrote one of them meanwhile: file them one by one.
        filed = [
            _file(app, analysis=analysis, position=position, state=state, analyser=analyser)
            for analysis, position in items
        ]
    faults.checkpoint("after_commit")
    for outcome in filed:
        report.count(outcome)
    _apply_actions(
        app,
        client=client,
        mailbox=mailbox,
        items=[
            (position, outcome.status)
            for (_analysis, position), outcome in zip(items, filed, strict=True)
            if _wanted_action(mailbox, outcome.status) != "none"
        ],
    )


def _file_known(
    app: App, *, fetched: _Arrival, position: Position, state: FolderState
) -> Filed | None:
    """A message already in the ledger (other mailbox, rescan) only gains a sighting."""
    try:
        key = fetched.dedup_key()
    except Exception:  # a header the quick parser chokes on: let the full path decide
        return None
    if not key:
        return None
    with session_scope(app.engine) as session:
        existing = repo.find_message(session=session, dedup_key=key)
        if existing is None:
            return None
        filed = known_message(session=session, message=existing, position=position)
        _settle_if_nothing_to_do(session, app=app, position=position, status=filed.status)
        _save_cursor(session, position, state)
        faults.checkpoint("before_commit")
        return filed


def _file(
    app: App, *, analysis: Analysis, position: Position, state: FolderState, analyser: Analyser
) -> Filed:
    for attempt in range(3):
        try:
            return _file_once(
                app, analysis=analysis, position=position, state=state, analyser=analyser
            )
        except IntegrityError:
            # Another worker filed the same message or took the same number
            # at the same moment: the next attempt sees its rows.
            if attempt == 2:
                raise
        except RETRY_LATER:
            raise
        except Exception as err:  # a bug in filing must quarantine the message, not block the box
            log.exception("cannot file message at %s", position)
            failed = replace(
                analysis,
                reading=None,
                verdict=None,
                error=f"filing error: {err!r}",
                failure=ReviewReason.FILING_ERROR,
            )
            return _file_once(
                app, analysis=failed, position=position, state=state, analyser=analyser
            )
    raise AssertionError("unreachable")


def _file_once(
    app: App, *, analysis: Analysis, position: Position, state: FolderState, analyser: Analyser
) -> Filed:
    """Everything a message implies and the cursor, in one transaction."""
    with session_scope(app.engine) as session:
        filed = file_analysis(
            session=session,
            blobs=app.blobs,
            config=app.config,
            analysis=analysis,
            position=position,
            analyser=analyser,
        )
        _settle_if_nothing_to_do(session, app=app, position=position, status=filed.status)
        _save_cursor(session, position, state)
        faults.checkpoint("before_commit")
    return filed


def _settle_if_nothing_to_do(
    session: Session, *, app: App, position: Position, status: str
) -> None:
    """No server action wanted: record it now rather than in a second transaction."""
    mailbox = app.config.settings.mailbox(position.mailbox)
    if _wanted_action(mailbox, status) != "none":
        return
    sighting = repo.find_sighting(
        session=session,
        mailbox=position.mailbox,
        folder=position.folder,
        uidvalidity=position.uidvalidity,
        uid=position.uid,
    )
    if sighting is not None and sighting.server_action == ServerAction.PENDING:
        sighting.server_action = ServerAction.NONE
        session.add(sighting)


def _save_cursor(session: Session, position: Position, state: FolderState) -> None:
    """Move the cursor up to ``position`` in the caller's transaction (never back)."""
    repo.advance_cursor(
        session=session,
        mailbox=position.mailbox,
        folder=position.folder,
        uidvalidity=state.uidvalidity,
        last_uid=position.uid,
    )


def _advance_cursor(app: App, *, mailbox: MailboxSettings, state: FolderState, uid: int) -> None:
    """``_save_cursor`` in a transaction of its own."""
    with session_scope(app.engine) as session:
        _save_cursor(session, Position(mailbox.name, state.name, state.uidvalidity, uid), state)


def _record_skipped(
    app: App,
    *,
    client: MailboxClient,
    mailbox: MailboxSettings,
    state: FolderState,
    uids: list[int],
    report: MailboxReport,
) -> None:
    """Mail older than the backlog window: a ledger row from its headers, never answered."""
    fetched = list(client.fetch(uids, batch=len(uids), headers_only=True))
    now = utcnow()
    entries = []
    for item in fetched:
        headers = read_headers(item.raw)
        sha = hashlib.sha256(item.raw).hexdigest()
        message_id = headers.get("Message-ID")
        values = {
            "dedup_key": dedup_key_for(str(message_id) if message_id else None, sha),
            "message_id": str(message_id).strip()[:998] if message_id else None,
            "sha256": sha,
            "raw_blob": None,
            "size": len(item.raw),
            "sender": _header_text(headers.get("From")),
            "sender_name": None,
            "subject": _header_text(headers.get("Subject"))[:SUBJECT_MAX_LENGTH],
            "date_header": None,
            "headers": {},
            "verdict": None,
            "status": MessageStatus.SKIPPED,
            "error": None,
            "warnings": [],
            "rule_trace": [{"rule": "backlog_window", "hit": True, "reason": "too old"}],
            "first_seen_at": now,
            "updated_at": now,
            "attempts": 0,
            "dossier_id": None,
        }
        entries.append((values, Position(mailbox.name, state.name, state.uidvalidity, item.uid)))
    with session_scope(app.engine) as session:
        filed = bulk_ledger(
            session=session,
            entries=entries,
            server_action=ServerAction.NONE,
            now=now,
            known_too=True,
        )
        for outcome in filed:
            if outcome.duplicate:
                report.duplicates += 1
            else:
                report.skipped += 1
        _save_cursor(
            session, Position(mailbox.name, state.name, state.uidvalidity, max(uids)), state
        )


def _header_text(value) -> str:
    from parsers.text import header_safe

    return header_safe(header_text(value), max_length=998)


def _wanted_action(mailbox: MailboxSettings, status: str) -> str:
    if status in (MessageStatus.FILED, MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED):
        return {"keyword": "flag", "move": "move", "none": "none"}[mailbox.on_filed]
    if status == MessageStatus.IGNORED and mailbox.on_ignored == "keyword":
        return "flag"
    return "none"


def _server_action(
    app: App, *, client: MailboxClient, mailbox: MailboxSettings, position: Position, filed: Filed
) -> None:
    if _wanted_action(mailbox, filed.status) == "none":
        return  # settled in the filing transaction
    _apply_actions(app, client=client, mailbox=mailbox, items=[(position, filed.status)])


def _apply_actions(
    app: App,
    *,
    client: MailboxClient,
    mailbox: MailboxSettings,
    items: Iterable[tuple[Position, str]],
) -> None:
    """Flag or move messages (one IMAP command per kind), then record it in one transaction."""
    done: dict[Position, str] = {}
    by_action: dict[str, list[Position]] = {}
    for position, status in items:
        by_action.setdefault(_wanted_action(mailbox, status), []).append(position)
    if by_action.get("flag"):
        client.add_keyword([p.uid for p in by_action["flag"]], mailbox.keyword)
        done.update(dict.fromkeys(by_action["flag"], ServerAction.FLAGGED))
    if by_action.get("move"):
        assert mailbox.processed_folder
        client.ensure_folder(mailbox.processed_folder)
        client.move([p.uid for p in by_action["move"]], mailbox.processed_folder)
        done.update(dict.fromkeys(by_action["move"], ServerAction.MOVED))
    done.update(dict.fromkeys(by_action.get("none", ()), ServerAction.NONE))
    if not done:
        return
    with session_scope(app.engine) as session:
        for position, action in done.items():
            sighting = repo.find_sighting(
                session=session,
                mailbox=position.mailbox,
                folder=position.folder,
                uidvalidity=position.uidvalidity,
                uid=position.uid,
            )
            if sighting is not None and sighting.server_action == ServerAction.PENDING:
                sighting.server_action = action
                session.add(sighting)


def _retry_pending_server_actions(
    app: App, *, client: MailboxClient, mailbox: MailboxSettings, state: FolderState
) -> None:
    """Finish server actions a crash interrupted (after the commit, before the flag)."""
    with session_scope(app.engine) as session:
        rows = session.exec(
            select(Sighting, Message.status)
            .join(Message, Message.id == Sighting.message_pk)
            .where(
                Sighting.mailbox == mailbox.name,
                Sighting.folder == state.name,
                Sighting.uidvalidity == state.uidvalidity,
                pending_action(),
            )
        ).all()
        pending = [
            (Position(s.mailbox, s.folder, s.uidvalidity, s.uid), status) for s, status in rows
        ]
    if pending:
        log.info("mailbox %s: finishing %d pending server actions", mailbox.name, len(pending))
        _apply_actions(app, client=client, mailbox=mailbox, items=pending)


def _uids_in_ledger(app: App, keys: dict[str, list[int]]) -> set[int]:
    """The UIDs whose dedup key (``keys``: key -> UIDs) is in the ledger, in one query."""
    if not keys:
        return set()
    # A read: no write lock (SQLite's BEGIN IMMEDIATE) held behind another worker's filing.
    with read_scope(app.engine) as connection:
        found = repo.dedup_keys_present(connection=connection, dedup_keys=keys)
    return {uid for key in found for uid in keys[key]}
