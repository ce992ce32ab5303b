"""Server copies of deleted mail: where they were seen, and deleting them over IMAP.

Only mail the service kept is ever looked for (the mailboxes belong to
staff). A copy left in place is found by its (folder, UIDVALIDITY, UID); a
copy moved to ``processed_folder`` has a new UID and is found by
Message-ID, then confirmed by the SHA-256 of its bytes. A copy that is no
longer where the ledger saw it is counted as not found, never guessed at.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from mailbot.app import App
from mailbot.config import secret
from mailbot.errors import MailbotError
from mailbot.imap import MailboxClient
from mailbot.privacy.reports import ServerCopiesReport
from mailbot.privacy.rows import select_in_chunks
from storage.models import Message, ServerAction, Sighting

log = logging.getLogger(__name__)


@dataclass
class ServerCopy:
    """One server position of a message whose server copy is to be deleted."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    moved: bool
    message_id: str | None
    sha256: str
    # The ledger row (message.id) this copy is of.
    message_pk: int | None = None


def find_server_copies(session: Session, message_ids: Iterable[int]) -> list[ServerCopy]:
    """Where the server copies of these messages were seen (read before deleting)."""
    rows = select_in_chunks(
        session,
        lambda ids: (
            select(Sighting, Message.message_id, Message.sha256)
            .join(Message, col(Message.id) == col(Sighting.message_pk))
            .where(col(Sighting.message_pk).in_(ids))
        ),
        message_ids,
    )
    return [
        ServerCopy(
            mailbox=s.mailbox,
            folder=s.folder,
            uidvalidity=s.uidvalidity,
            uid=s.uid,
            moved=s.server_action == ServerAction.MOVED,
            message_id=message_id,
            sha256=sha,
            message_pk=s.message_pk,
        )
        for s, message_id, sha in sorted(rows, key=lambda r: r[0].id)
    ]


def delete_server_copies(app: App, copies: Sequence[ServerCopy]) -> list[ServerCopiesReport]:
    """Delete the copies, one connection per mailbox; one report per mailbox."""
    by_mailbox: dict[str, list[ServerCopy]] = defaultdict(list)
    for copy in copies:
        by_mailbox[copy.mailbox].append(copy)
    reports = []
    for name in sorted(by_mailbox):
        report = ServerCopiesReport(mailbox=name, planned=len(by_mailbox[name]))
        reports.append(report)
        try:
            settings = app.config.settings.mailbox(name)
        except KeyError:
            report.error = "mailbox no longer in the configuration; copies left on the server"
            continue
        try:
            password = secret(settings.password_env) or ""
            with MailboxClient(settings, password) as client:
                _delete_in_mailbox(client, by_mailbox[name], report)
        except (MailbotError, OSError) as err:
            report.error = f"server copies not deleted: {err}"
            log.error("mailbox %s: server copies not deleted: %s", name, err)
    return reports


def _delete_in_mailbox(
    client: MailboxClient, copies: Sequence[ServerCopy], report: ServerCopiesReport
) -> None:
    in_place: dict[tuple[str, int], list[ServerCopy]] = defaultdict(list)
    moved: list[ServerCopy] = []
    for copy in copies:
        if copy.moved:
            moved.append(copy)
        else:
            in_place[(copy.folder, copy.uidvalidity)].append(copy)
    for (folder, uidvalidity), group in sorted(in_place.items()):
        if not client.folder_exists(folder):
            report.not_found += len(group)  # folder deleted: so are the copies
            continue
        state = client.select(folder)
        if state.uidvalidity != uidvalidity:
            # UIDs of another UIDVALIDITY name other messages now: never delete by them.
            report.not_found += len(group)
            continue
        present = client.existing_uids(sorted({c.uid for c in group}))
        client.delete_uids(present)
        report.deleted += len(present)
        report.not_found += len(group) - len(present)
    if moved:
        _delete_moved(client, moved, report)


def _delete_moved(
    client: MailboxClient, copies: Sequence[ServerCopy], report: ServerCopiesReport
) -> None:
    """Copies moved to ``processed_folder`` have new UIDs: find them by Message-ID and hash."""
    folder = client.settings.processed_folder
    if not folder or not client.folder_exists(folder):
        report.not_found += len(copies)
        return
    client.select(folder)
    for copy in copies:
        candidates = client.uids_with_message_id(copy.message_id)
        # Only the very same bytes: a Message-ID can be reused by a careless sender.
        matches = [
            fetched.uid
            for fetched in client.fetch(candidates, batch=50)
            if hashlib.sha256(fetched.raw).hexdigest() == copy.sha256
        ]
        if matches:
            client.delete_uids(matches)
            report.deleted += 1
        else:
            report.not_found += 1
