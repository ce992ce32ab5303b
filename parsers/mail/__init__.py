"""Read one raw e-mail into a ``ParsedMail``, whatever arrives.

Everything that reaches the Smart City mailboxes is untrusted. The contract
(``docs/reliability.md``, "Untrusted input") is that reading a message
never raises on bad input, never hangs and uses bounded memory: each
malformation becomes a short English warning and each exceeded limit also
sets ``over_limits`` so the message goes to staff review. The limits come
from ``ParseLimits`` and are checked before the work they protect.

Who does what, and why
----------------------
* Our own byte-level code runs first. It measures the raw message, finds the
  header block with one regex pass, cuts it to ``max_header_bytes`` and
  ``max_header_count``, and decides whether the body is read at all
  (``max_message_bytes``, and a line count: the stdlib parser costs about
  60 bytes of memory per line).
* mail-parser (``MailParser._reset``, see ``envelope._HeaderView``) reads the address headers
  (From, To, Cc, Reply-To: RFC 2047 display names, recovery of broken address
  lists, defect reports) and the Date header (strict RFC 5322 reading with
  diagnostics). Plain ones (``Name <local@domain>``, no encoded word,
  comment or group) are read by ``plain_view`` instead, with the same result
  and about a tenth of the cost. mail-parser is only given a small header block we built: on a whole
  message it walks every part without a limit, re-encodes every attachment
  in base64 (2.3 times the memory), names nameless attachments at random,
  and decodes 8-bit headers and bodies silently (``Candidature B\\xe9thune``
  came out as ``Candidature Bthune``, cp1252 bodies as replacement
  characters). Its logging is silenced during our calls only.
* The stdlib ``email`` package with ``policy.compat32`` parses the MIME
  structure. compat32 keeps header values as plain strings (``policy.default``
  runs its header parser on every access, slow on hostile input) and records
  malformations as defects instead of raising. The data is fed in chunks
  through a message factory that counts parts and nesting depth and stops the
  parser at the limit: 100,000 parts or 2,000 nested multiparts would
  otherwise exhaust memory or the recursion limit. MIME header values are cut
  to 8 KB because its parameter parser is quadratic (64 KB of quoted ``;``
  takes 2 s). Long runs of base64 lines are not fed to it: a placeholder
  line stands in their place and the attachment is decoded from the raw
  bytes window by window (``structure._Elided``), so a 30 MB attachment costs its
  decoded size instead of 5.5 times the message.
* Our own code decodes text (declared charset, then utf-8, cp1252, latin-1),
  RFC 2047 words in the subject and file names, so that every fallback is
  named in a warning.
* ``html.parser`` turns HTML into text, but is only fed complete tags and text
  cut by a linear regex: on Python 3.11.7 it is quadratic on unterminated
  markup (``"<a" * 500_000`` did not finish in five minutes).
* ``zipfile`` lists archives from memory after we counted the central
  directory ourselves, and members are streamed with a byte budget.

Nothing here touches the disk or the network: file names are data only.

Modules
-------
``message`` (``parse_message``: the stages in order), ``headers`` (the header
block at byte level; ``header_block``), ``charsets`` (RFC 2047 and text
decoding), ``envelope`` (addresses, subject, identifiers, date), ``plain_view``
(plain address and Date headers without mail-parser),
``structure`` (the MIME parser under a budget), ``plain_body`` (a plain
single-part text/plain body without the MIME parser), ``walker`` (parts, text,
attachments, attached messages), ``attachments`` (file names, types, zip),
``html_text`` (HTML to text), ``body`` (assembly and forwards), ``report``
(warnings and the draft), ``bounds`` (fixed sizes).
"""

from parsers.mail.bounds import MAX_TEXT_CHARS
from parsers.mail.headers import header_block, header_text, read_headers
from parsers.mail.message import HeadReading, parse_head, parse_message, read_head
from parsers.mail.spooled import parse_spooled

__all__ = [
    "MAX_TEXT_CHARS",
    "HeadReading",
    "header_block",
    "header_text",
    "parse_head",
    "parse_message",
    "parse_spooled",
    "read_head",
    "read_headers",
]
