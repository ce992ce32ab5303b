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

from parsers.classify import (
    Classification,
    Classifier,
    ClassifyContext,
    Rule,
    RuleHit,
    RuleResult,
    _rule_hit,
)
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
_FIELD_LINE = rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n|[ \t][^\r\n]*\r?\n"
# Each line matches one way (the alternatives start differently, a line ends
# at its first CR or LF): the lines one after the other are the block whole
# exactly when one possessive repetition matches it all, in one call.
_FIELD_LINES = re.compile(rb"(?:" + _FIELD_LINE + rb")*+")


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
    # Every line ends with LF or CRLF: no lone CR is left once this matches.
    return _FIELD_LINES.fullmatch(body) is not None and not body[:1].isspace()


def structure_needs_body(structure: BodyPart) -> bool:
    """True when a part of the structure can only be judged with the body.

    Every part is looked at (``BodyPart.walk``'s parts, without its nested
    generators: the order does not change whether one matches).
    """
    parts = [structure]
    while parts:
        part = parts.pop()
        if _READ_WHOLE_TYPES.match(part.content_type):
            return True
        parts.extend(part.parts)
    return False


def decide_from_headers(
    head: ParsedMail,
    *,
    structure: BodyPart,
    classifier: Classifier,
    ctx: ClassifyContext,
    results: dict[str, RuleResult] | None = None,
) -> Classification | None:
    """The verdict the whole message would get, when the headers settle it; else None.

    ``results``: filled with what each rule that ran answered on ``head``
    (by rule name), for ``reusable_results``.
    """
    if head.message_id is None or structure_needs_body(structure):
        return None
    trace: list[RuleHit] = []
    # Verdicts a rule that missed here could still give once the body is read.
    could_flip: set[Verdict] = set()
    for rule, name, verdict, kind in _steps(classifier.chain):
        result = rule.check(head, ctx)
        if results is not None:
            results[name] = result
        hit = result.hit
        trace.append(_rule_hit(name, hit, result.reason))
        if kind is _SENDER or (kind is _SENDER_HIT_STANDS and not hit):
            if hit:
                return None
            could_flip.add(verdict)
            continue
        if not hit:
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
    # Out of steps: the chain's next rule (if any) needs the body.
    return None


_HEADER = "header"
_SENDER = "sender"
_SENDER_HIT_STANDS = "sender, its hit stands"
_Step = tuple[Rule, str, Verdict, str]
# The steps of the chains seen, by the chain's id (the chain is kept with
# them, so that its id is not reused): a classifier's chain is a tuple of
# rules that keep their names, its steps are the same for every message.
_STEPS: dict[int, tuple[tuple[tuple[Rule, Verdict], ...], tuple[_Step, ...]]] = {}


def _steps(chain: tuple[tuple[Rule, Verdict], ...]) -> tuple[_Step, ...]:
    """The rules of ``chain`` that can decide here, in order, up to the first that cannot."""
    found = _STEPS.get(id(chain))
    if found is not None and found[0] is chain:
        return found[1]
    steps: list[_Step] = []
    for rule, verdict in chain:
        name = rule.name
        if name in HEADER_RULES:
            kind = _HEADER
        elif name in _HIT_STANDS:
            kind = _SENDER_HIT_STANDS
        elif name in SENDER_RULES:
            kind = _SENDER
        else:
            break  # this rule (and so the chain from here) needs the body
        steps.append((rule, name, verdict, kind))
    if len(_STEPS) >= 16:  # classifiers are few; never let the table grow
        _STEPS.clear()
    _STEPS[id(chain)] = (chain, tuple(steps))
    return tuple(steps)


# Of the rules ``decide_from_headers`` runs, those that read nothing but the
# fields of ``_HEAD_FIELDS`` (and the context): their answer on the header
# block alone is their answer on the whole message when these fields are
# the same. ``delivery_report`` also reads the parts (``content_types``).
REUSABLE_RULES = (HEADER_RULES - {"delivery_report"}) | SENDER_RULES
# Every field of a ParsedMail but those only the body fills or changes.
_BODY_FIELDS = frozenset(
    {"sha256", "size", "text", "attachments", "content_types", "warnings", "over_limits"}
)
_HEAD_FIELDS = tuple(name for name in ParsedMail.__dataclass_fields__ if name not in _BODY_FIELDS)


def reusable_results(
    head: ParsedMail, mail: ParsedMail, results: dict[str, RuleResult]
) -> dict[str, RuleResult]:
    """Those of ``results`` (rules run on ``head``) that ``mail`` would get again.

    ``mail`` is the whole message as classified (after a trusted forward is
    unwrapped): when it differs from the header-only reading in any field
    but those only the body fills (a forward names another sender, the
    parser read other headers), nothing is reused and every rule runs again.
    Only ``REUSABLE_RULES`` are reused.
    """
    if not results:
        return {}
    for name in _HEAD_FIELDS:
        mine, theirs = getattr(head, name), getattr(mail, name)
        if mine is not theirs and mine != theirs:
            return {}
    return {name: result for name, result in results.items() if name in REUSABLE_RULES}
