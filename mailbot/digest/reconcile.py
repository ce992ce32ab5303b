"""The digest's check of each mailbox against the ledger, read-only.

For every enabled mailbox, ``reconcile_mailbox`` lists the messages on the
server, below the poller's cursor, that the ledger has never recorded (a
bug, a restored backup, a message filed by hand): staff should look at them.
A mailbox that cannot be checked is reported with a
``parsers.reasons.MailboxCheck`` code (``reason``), its French wording
(``note``) and the error's text (``error``); it never stops the digest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select

from mailbot import wording
from mailbot.app import App
from mailbot.config import MailboxSettings, secret
from mailbot.digest.collect import SUBJECT_MAX_LENGTH, service_zone
from mailbot.errors import MailbotError
from mailbot.imap import ImapError, MailboxClient
from parsers.mail import header_text, read_headers
from parsers.reasons import MailboxCheck
from parsers.text import header_safe
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Sighting

log = logging.getLogger(__name__)

# Unknown server messages described one by one (the count is always given).
MAX_UNKNOWN_LISTED = 20

ClientFactory = Callable[[MailboxSettings, str], MailboxClient]


def reconcile_mailboxes(
    app: App, *, client_factory: ClientFactory = MailboxClient
) -> list[dict[str, Any]]:
    """For each enabled mailbox, the server messages below the cursor that the ledger lacks."""
    return [
        reconcile_mailbox(app, mailbox, client_factory=client_factory)
        for mailbox in app.config.settings.mailboxes
        if mailbox.enabled
    ]


def reconcile_mailbox(
    app: App, mailbox: MailboxSettings, *, client_factory: ClientFactory = MailboxClient
) -> dict[str, Any]:
    """Compare one folder with the ledger; never raises (an unreachable box is reported)."""
    zone = service_zone(app.config)
    entry: dict[str, Any] = {
        "mailbox": mailbox.name,
        "folder": mailbox.folder,
        "reachable": False,
        "reason": None,
        "error": None,
        "on_server": None,
        "last_uid": None,
        "unknown_count": 0,
        "unknown": [],
        "note": None,
    }
    try:
        with client_factory(mailbox, secret(mailbox.password_env) or "") as client:
            state = client.select(mailbox.folder)
            uids = client.all_uids()
            entry.update(reachable=True, folder=state.name, on_server=len(uids))
            known: set[int] = set()
            # The cursor first, then the sightings: the poller commits a sighting
            # no later than the cursor that covers it.
            with session_scope(app.engine) as session:
                cursor = repo.get_cursor(session=session, mailbox=mailbox.name, folder=state.name)
                if cursor is not None and cursor.uidvalidity == state.uidvalidity:
                    known = set(
                        session.exec(
                            select(Sighting.uid).where(
                                Sighting.mailbox == mailbox.name,
                                Sighting.folder == state.name,
                                Sighting.uidvalidity == state.uidvalidity,
                            )
                        ).all()
                    )
            if cursor is None:
                if uids:
                    entry["reason"] = MailboxCheck.NEVER_POLLED
                    entry["note"] = wording.mailbox_check_note(
                        MailboxCheck.NEVER_POLLED, waiting=len(uids)
                    )
                return entry
            if cursor.uidvalidity != state.uidvalidity:
                entry["reason"] = MailboxCheck.UIDVALIDITY_CHANGED
                entry["note"] = wording.mailbox_check_note(MailboxCheck.UIDVALIDITY_CHANGED)
                return entry
            entry["last_uid"] = cursor.last_uid
            unknown = [uid for uid in uids if uid <= cursor.last_uid and uid not in known]
            entry["unknown_count"] = len(unknown)
            if unknown:
                entry["unknown"] = _describe_server_messages(
                    client, unknown[:MAX_UNKNOWN_LISTED], zone
                )
    except Exception as err:  # one mailbox's trouble must never stop the digest
        expected = isinstance(err, ImapError | MailbotError | OSError)
        log.warning("digest: cannot reconcile %s: %s", mailbox.name, err, exc_info=not expected)
        entry.update(
            reachable=False,
            reason=MailboxCheck.UNREACHABLE if expected else MailboxCheck.CHECK_FAILED,
            error=wording.shorten(str(err) or type(err).__name__),
            unknown=[],
            unknown_count=0,
            note=None,
        )
    return entry


def _describe_server_messages(
    client: MailboxClient, uids: Sequence[int], zone: ZoneInfo
) -> list[dict[str, Any]]:
    """Date, sender address and subject of server messages, from their headers (BODY.PEEK)."""
    described = {uid: {"uid": uid, "date_text": "", "sender": "", "subject": ""} for uid in uids}
    try:
        fetched_all = list(client.fetch(list(uids), batch=len(uids), headers_only=True))
    except ImapError as err:  # the count is known; the details are a bonus
        log.warning("digest: cannot fetch the headers of unknown messages: %s", err)
        fetched_all = []
    for fetched in fetched_all:
        entry = described.get(fetched.uid)
        if entry is None:
            continue
        try:
            headers = read_headers(fetched.raw)
            entry["sender"] = parseaddr(header_text(headers.get("From")))[1]
            entry["subject"] = header_safe(
                header_text(headers.get("Subject")), max_length=SUBJECT_MAX_LENGTH
            )
            if headers.get("Date"):
                sent = parsedate_to_datetime(str(headers.get("Date")))
                if sent.tzinfo is not None:
                    entry["date_text"] = wording.local_date_time(sent, zone)
        except Exception:  # a broken header only leaves a blank cell
            log.debug("digest: cannot read headers of UID %s", fetched.uid, exc_info=True)
    return [described[uid] for uid in uids]
