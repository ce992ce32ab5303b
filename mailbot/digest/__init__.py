"""The daily digest for staff: what happened since the last one, and what waits.

The digest lists new dossiers, dossiers that became complete, incomplete
dossiers with what they lack, messages to review or that failed (with their
reason), replies suppressed or undeliverable (with their reason), messages
on the server that the ledger does not know, and counts of the open dossiers
per thématique and criterion, with a spreadsheet of the open dossiers.

One idea per module:

* ``collect``: the sections, read from the database and worded for staff;
* ``reconcile``: each mailbox compared with the ledger (read-only IMAP);
* ``render``: the templates, the e-mail, the sample data of ``config check``;
* ``schedule``: once per local day, through the outbox.

The French wording of statuses, kinds and reasons is ``mailbot/wording.py``.

Personal data: the digest names dossiers by reference, title and structure,
and gives the sender's e-mail address; it never carries the applicant's
phone number or postal address (they are left out of the attached CSV too).
"""

from mailbot.digest.collect import (
    DEFAULT_PERIOD,
    OPEN_STATUSES,
    collect_sections,
    count_open_dossiers,
    last_digest_at,
    open_dossier_rows,
    open_dossiers_csv,
)
from mailbot.digest.reconcile import MAX_UNKNOWN_LISTED, reconcile_mailbox, reconcile_mailboxes
from mailbot.digest.render import (
    EMPTY_LINE,
    TEMPLATES,
    Digest,
    build_digest,
    build_message,
    check_templates,
    csv_filename,
    digest_mailbox,
    render_digest,
    sample_sections,
)
from mailbot.digest.schedule import (
    already_handled,
    digest_due,
    print_digest,
    queue_digest,
    send_digest,
)

__all__ = [
    "DEFAULT_PERIOD",
    "EMPTY_LINE",
    "MAX_UNKNOWN_LISTED",
    "OPEN_STATUSES",
    "TEMPLATES",
    "Digest",
    "already_handled",
    "build_digest",
    "build_message",
    "check_templates",
    "collect_sections",
    "count_open_dossiers",
    "csv_filename",
    "digest_due",
    "digest_mailbox",
    "last_digest_at",
    "open_dossier_rows",
    "open_dossiers_csv",
    "print_digest",
    "queue_digest",
    "reconcile_mailbox",
    "reconcile_mailboxes",
    "render_digest",
    "sample_sections",
    "send_digest",
]
