"""Personal data (RGPD): retention purge, legal hold, access and erasure requests.

Four service functions, each recording who did it in the audit trail:

* ``purge`` (``purge.py``): deletes what the retention rules of
  ``[retention]`` say has expired, never a dossier on legal hold;
* ``export_person`` (``export.py``): everything about one address (access
  request) as JSON, the original messages and the pieces, in a directory;
* ``erase_person`` (``erase.py``): deletes the person's dossiers, mail and
  server copies, removes them (address, name, phone: ``mentions.py``) from
  what remains, other people's mail included (``server_rewrite.py`` for the
  server copies), compacts the database (``compact.py``) and leaves a
  tombstone keeping only an HMAC of the address (``tombstone.py``);
* ``set_legal_hold`` (``legal_hold.py``): the flag that makes purge and
  erasure leave a dossier (and its blobs) alone.

Purge and erasure delete through one ``DeletionPlan`` (``plan.py``): collect
the rows, blobs and server copies; delete the rows in one transaction, the
blobs after the commit (checked again), the server copies last
(``server_copies.py``). Reports share one base (``reports.py``); the person
a request is about is found in ``person.py``; chunked queries and
transactions live in ``rows.py``.
"""

from mailbot.privacy.erase import erase_person, preview_erasure
from mailbot.privacy.errors import PrivacyError
from mailbot.privacy.export import export_person, safe_filename
from mailbot.privacy.legal_hold import set_legal_hold
from mailbot.privacy.mentions import ERASED_BYTES, ERASED_NAME, ERASED_PHONE, ERASED_TEXT, Mentions
from mailbot.privacy.person import normalise_email
from mailbot.privacy.purge import purge
from mailbot.privacy.reports import (
    DeletionReport,
    EraseReport,
    ErasurePreview,
    ExportReport,
    LegalHoldReport,
    PurgedDossier,
    PurgeReport,
    ServerCopiesReport,
)
from mailbot.privacy.tombstone import keyed_fingerprint

__all__ = [
    "ERASED_BYTES",
    "ERASED_NAME",
    "ERASED_PHONE",
    "ERASED_TEXT",
    "DeletionReport",
    "EraseReport",
    "ErasurePreview",
    "ExportReport",
    "LegalHoldReport",
    "Mentions",
    "PrivacyError",
    "PurgeReport",
    "PurgedDossier",
    "ServerCopiesReport",
    "erase_person",
    "export_person",
    "keyed_fingerprint",
    "normalise_email",
    "preview_erasure",
    "purge",
    "safe_filename",
    "set_legal_hold",
]
