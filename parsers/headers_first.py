"""Decide from the headers and the BODYSTRUCTURE alone, when that is certain.

The first pass over a mailbox fetches, for a batch of messages, only their
size, BODYSTRUCTURE and header block. Most mail that is not for us
(newsletters, lists, vacation replies, bounces) is recognised by a rule of
the chain that reads headers only; such a message needs no body: its verdict
is the one the whole message would get. Everything else (a candidature sign
or a dossier reference may be in the body text, a document's text may
count) is fetched whole and read as before.

``decide_from_headers`` runs the chain's message rules on the header-only
``ParsedMail`` (``parsers.mail.parse_head``) in their configured order and
answers only when the answer cannot depend on the body:

* a rule that reads headers only (``HEADER_RULES``) gives the same result
  on the header block as on the whole message;
* a rule that reads the sender (``SENDER_RULES``) may see another sender
  once the body is read: a forwarded message names its original sender.
  ``robot_sender`` also checks the outer From, so its hit stands; its miss
  could become a hit, which decides the same verdict only when its action
  is that of the rule that decides. ``own_sender`` can turn either way:
  the body is needed;
* any other rule (``dossier_reference`` reads the body, rules unknown here)
  ends the attempt: the body is needed;
* a structure holding an attached message (forward) or a report part
  (``delivery_report`` also reads parts) is always read whole.

Only verdicts that keep nothing (``auto_reply``, ``not_candidature``) are
decided here; a message without Message-ID is read whole too (its ledger
key is the SHA-256 of the whole message). ``tests/test_headers_first.py``
runs both decisions over the golden and hostile corpora.
"""

from __future__ import annotations

import re

from parsers.classify import Classification, Classifier, ClassifyContext, RuleHit, _rule_hit
from parsers.mail.bodystructure import BodyPart
from parsers.rules import Verdict
from parsers.types import ParsedMail

# Rules whose answer depends only on header fields (and the subject).
HEADER_RULES = frozenset(
    {
        "loop_header",
        "null_return_path",
        "auto_submitted",
        "bulk_precedence",
        "list_headers",
        "auto_response_suppress",
        "autoreply_headers",
        "delivery_report",
        "robot_headers",
        "robot_subject",
        "reply_to_our_mail",
    }
)
# Rules that read the sender, which reading the body may change (forwards).
SENDER_RULES = frozenset({"robot_sender", "own_sender"})
# Of those, the ones whose hit stands whatever the body says.
_HIT_STANDS = frozenset({"robot_sender"})
# Verdicts that keep nothing of the message: no need for its body.
QUIET_VERDICTS = frozenset({Verdict.AUTO_REPLY, Verdict.NOT_CANDIDATURE})

# Parts whose presence means the body must be read: attached messages
# (forwards, bounces quoting the mail) and reports.
_READ_WHOLE_TYPES = re.compile(r"^(message/|multipart/report$|text/rfc822-headers$)")
# A header block that every parser splits the same way: fields and
# continuation lines only, ending with the blank line.
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n|[ \t][^\r\n]*\r?\n")


def plain_header_block(header: bytes) -> bool:
    """True when ``header`` is fields and continuations only, ended by a blank line.

    The server finds the end of the header block with its own parser; on
    such a block ours finds the same fields. Anything odder (a line without
    a colon, a lone CR, a NUL, an mbox ``From `` line) is read whole.
    """
    if b"\x00" in header:
        return False
    if header.endswith(b"\r\n\r\n"):
        body = header[:-2]
    elif header.endswith(b"\n\n"):
        body = header[:-1]
    else:
        return False
    if b"\r" in body.replace(b"\r\n", b""):
        return False
    pos = 0
    for match in _FIELD_LINE.finditer(body):
        if match.start() != pos:
            return False
        pos = match.end()
    return pos == len(body) and not body[:1].isspace()


def structure_needs_body(structure: BodyPart) -> bool:
    """True when a part of the structure can only be judged with the body."""
    return any(_READ_WHOLE_TYPES.match(part.content_type) for part in structure.walk())


def decide_from_headers(
    head: ParsedMail,
    *,
    structure: BodyPart,
    classifier: Classifier,
    ctx: ClassifyContext,
) -> Classification | None:
    """The verdict the whole message would get, when the headers settle it; else None."""
    if head.message_id is None or structure_needs_body(structure):
        return None
    trace: list[RuleHit] = []
    # Verdicts a rule that missed here could still give once the body is read.
    could_flip: set[Verdict] = set()
    for rule, verdict in classifier.chain:
        name = rule.name
        if name not in HEADER_RULES and name not in SENDER_RULES:
            return None
        result = rule.check(head, ctx)
        trace.append(_rule_hit(name, result.hit, result.reason))
        if name in SENDER_RULES and not (result.hit and name in _HIT_STANDS):
            if result.hit:
                return None
            could_flip.add(verdict)
            continue
        if not result.hit:
            continue
        if verdict not in QUIET_VERDICTS or could_flip - {verdict}:
            return None
        return Classification(
            verdict=verdict,
            trace=tuple(trace),
            score=None,
            reference=result.reference,
            decided_by=name,
        )
    return None
