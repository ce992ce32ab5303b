"""Server copies an erasure changes rather than deletes, and the Sent folder.

* Other people's mail naming the erased person (Cc, body) stays in the
  staff's mailbox, redacted: the copy is fetched, redacted
  (``Mentions.redact_message``), APPENDed with the same flags, then the
  original is deleted by UID through ``MailboxClient``. The ledger's
  sighting is moved to the new UID so the poller knows the copy.
* The Sent folder holds what the service sent (``save_sent``): the replies
  to the person are deleted, the digests that named them are replaced by a
  redacted copy. Both are found by our own Message-ID.

A server that cannot be reached is reported in the request's report, never
fatal: the database part of the erasure is already committed.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mailbot.app import App
from mailbot.config import secret
from mailbot.errors import MailbotError
from mailbot.imap import FetchedMessage, MailboxClient
from mailbot.privacy.mentions import Mentions
from mailbot.privacy.reports import ServerCopiesReport
from mailbot.privacy.server_copies import ServerCopy

log = logging.getLogger(__name__)

# Flags a server sets itself: never given back to APPEND.
_SERVER_FLAGS = {"\\recent", "\\deleted"}


@dataclass(frozen=True)
class SentCopy:
    """A message the service sent, looked for in its mailbox's Sent folder by Message-ID."""

    mailbox: str
    message_id: str


@dataclass(frozen=True)
class Rewritten:
    """One server copy replaced by its redacted version (new UID if it was found)."""

    copy: ServerCopy
    new_uid: int | None
    # SHA-256 of the redacted bytes now on the server.
    new_sha256: str


def _by_mailbox(items: Iterable[ServerCopy | SentCopy]) -> dict[str, list]:
    grouped: dict[str, list] = defaultdict(list)
    for item in items:
        grouped[item.mailbox].append(item)
    return grouped


def _each_mailbox(
    app: App,
    items: Iterable[ServerCopy | SentCopy],
    work: Callable[[MailboxClient, list, ServerCopiesReport], None],
) -> list[ServerCopiesReport]:
    """Run ``work`` on one connection per mailbox; one report per mailbox."""
    reports = []
    grouped = _by_mailbox(items)
    for name in sorted(grouped):
        report = ServerCopiesReport(mailbox=name, planned=len(grouped[name]))
        reports.append(report)
        try:
            settings = app.config.settings.mailbox(name)
        except KeyError:
            report.error = "mailbox no longer in the configuration; copies left on the server"
            continue
        try:
            with MailboxClient(settings, secret(settings.password_env) or "") as client:
                work(client, grouped[name], report)
        except (MailbotError, OSError) as err:
            report.error = f"server copies not changed: {err}"
            log.error("mailbox %s: server copies not changed: %s", name, err)
    return reports


# -- the Sent folder ---------------------------------------------------------------


def delete_sent_copies(app: App, copies: Sequence[SentCopy]) -> list[ServerCopiesReport]:
    """Delete our sent messages (replies to the person) from each mailbox's Sent folder."""

    def work(client: MailboxClient, items: list[SentCopy], report: ServerCopiesReport) -> None:
        folder = client.settings.sent_folder
        if not client.folder_exists(folder):
            report.not_found += len(items)
            return
        client.select(folder)
        for item in items:
            uids = client.uids_with_message_id(item.message_id)
            if uids:
                client.delete_uids(uids)
                report.deleted += 1
            else:
                report.not_found += 1

    return _each_mailbox(app, copies, work)


def redact_sent_copies(
    app: App, copies: Sequence[SentCopy], mentions: Mentions
) -> list[ServerCopiesReport]:
    """Replace the Sent copies (digests) that name the person by redacted ones.

    ``planned`` counts the copies looked at, ``deleted`` those replaced.
    """

    def work(client: MailboxClient, items: list[SentCopy], report: ServerCopiesReport) -> None:
        folder = client.settings.sent_folder
        if not client.folder_exists(folder):
            report.not_found += len(items)
            return
        client.select(folder)
        for item in items:
            uids = client.uids_with_message_id(item.message_id)
            if not uids:
                report.not_found += 1
            for fetched in list(client.fetch(uids, batch=20)):
                if _replace(client, folder=folder, fetched=fetched, mentions=mentions):
                    report.deleted += 1

    return _each_mailbox(app, copies, work)


# -- other people's mail in the staff's folders --------------------------------------


def redact_server_copies(
    app: App, copies: Sequence[ServerCopy], mentions: Mentions
) -> tuple[list[ServerCopiesReport], list[Rewritten]]:
    """Replace these copies of other people's mail by redacted ones.

    A copy left in place is found by (folder, UIDVALIDITY, UID), a moved
    one by Message-ID and the SHA-256 of its bytes, as for deletion.
    """
    done: list[Rewritten] = []

    def work(client: MailboxClient, items: list[ServerCopy], report: ServerCopiesReport) -> None:
        for copy in items:
            found = _locate(client, copy)
            if found is None:
                report.not_found += 1
                continue
            folder, fetched = found
            replaced = _replace(client, folder=folder, fetched=fetched, mentions=mentions)
            if replaced is not None:
                report.deleted += 1
                done.append(Rewritten(copy=copy, new_uid=replaced[0], new_sha256=replaced[1]))

    return _each_mailbox(app, copies, work), done


def _locate(client: MailboxClient, copy: ServerCopy) -> tuple[str, FetchedMessage] | None:
    """The folder and fetched bytes of a copy, or None when it is no longer there."""
    if copy.moved:
        folder = client.settings.processed_folder
        if not folder or not client.folder_exists(folder):
            return None
        client.select(folder)
        for fetched in client.fetch(client.uids_with_message_id(copy.message_id), batch=20):
            if hashlib.sha256(fetched.raw).hexdigest() == copy.sha256:
                return folder, fetched
        return None
    if not client.folder_exists(copy.folder):
        return None
    state = client.select(copy.folder)
    if state.uidvalidity != copy.uidvalidity:
        return None  # UIDs of another UIDVALIDITY name other messages
    for fetched in client.fetch([copy.uid], batch=1):
        return copy.folder, fetched
    return None


def _replace(
    client: MailboxClient, *, folder: str, fetched: FetchedMessage, mentions: Mentions
) -> tuple[int | None, str] | None:
    """APPEND the redacted copy, then delete the original by UID.

    None when nothing named the person (left alone); else the new copy's UID
    (None when the server does not let us find it) and the hash of its bytes.
    """
    redacted = mentions.redact_message(fetched.raw)
    if redacted == fetched.raw:
        return None
    before = client.select(folder)
    flags = [f for f in fetched.flags if f.lower() not in _SERVER_FLAGS]
    client.append(redacted, folder, flags=flags)
    client.select(folder)
    client.delete_uids([fetched.uid])
    new_uid = None
    if before.uidnext is not None:
        new = [u for u in client.uids_after(before.uidnext - 1) if u != fetched.uid]
        new_uid = max(new) if new else None
    return new_uid, hashlib.sha256(redacted).hexdigest()
