"""Personal data (RGPD): retention purge, legal hold, access and erasure requests.

Four service functions, each recording who did it in the audit trail:

* ``purge`` (``purge.py``): deletes what the retention rules of
  ``[retention]`` say has expired, never a dossier on legal hold;
* ``export_person`` (``export.py``): everything about one address (access
  request) as JSON, the original messages and the pieces, in a directory;
* ``erase_person`` (``erase.py``): deletes the person's dossiers and mail
  and removes the address from what remains, leaving a tombstone that keeps
  only the SHA-256 of the address;
* ``set_legal_hold`` (``legal_hold.py``): the flag that makes purge and
  erasure leave a dossier (and its blobs) alone.

Purge and erasure delete through one ``DeletionPlan`` (``plan.py``): collect
the rows, blobs and server copies; delete the rows in one transaction, the
blobs after the commit (checked again), the server copies last
(``server_copies.py``). Reports share one base (``reports.py``); the person
a request is about is found in ``person.py``; chunked queries and
transactions live in ``rows.py``.
"""

from mailbot.privacy.erase import ERASED_BYTES, ERASED_TEXT, erase_person
from mailbot.privacy.errors import PrivacyError
from mailbot.privacy.export import export_person, safe_filename
from mailbot.privacy.legal_hold import set_legal_hold
from mailbot.privacy.person import email_fingerprint, normalise_email
from mailbot.privacy.purge import purge
from mailbot.privacy.reports import (
    DeletionReport,
    EraseReport,
    ExportReport,
    LegalHoldReport,
    PurgedDossier,
    PurgeReport,
    ServerCopiesReport,
)

__all__ = [
    "ERASED_BYTES",
    "ERASED_TEXT",
    "DeletionReport",
    "EraseReport",
    "ExportReport",
    "LegalHoldReport",
    "PrivacyError",
    "PurgeReport",
    "PurgedDossier",
    "ServerCopiesReport",
    "email_fingerprint",
    "erase_person",
    "export_person",
    "normalise_email",
    "purge",
    "safe_filename",
    "set_legal_hold",
]
