"""Decide what an incoming message is: automatic, ours, a follow-up or a candidature.

Mailman-style rules and chain. Each rule only *decides*: ``check`` answers
hit or miss with a reason and never acts. The chain, an ordered table of
(rule, action) loaded from ``config/rules.toml``, is run by one short loop;
the first hit decides and its action maps to a verdict through ``ACTIONS``.
A message no rule claims is scored with the weighted candidature signs.
Every rule and sign evaluated is kept in the trace, so staff can always ask
"why was this mail treated so?" (``mailbot try``, ``dossiers show``).

The chain runs in two stages, set by each rule's ``stage``:

1. ``Stage.MESSAGE`` rules look at the message alone (headers, body) and run
   in ``Classifier.classify``, before the score.
2. ``Stage.READING`` rules run in ``Classifier.classify_reading``, only on a
   message the first stage scored a candidature, once its documents are
   read: they see the reading's facts (``ReadingFacts``) and what the
   database knows (``OpenDossiers``) through the context. The caller gives
   that look-up: the worker its filing transaction (so two messages of one
   batch see each other), ``mailbot try`` a read-only one, or none at all
   (the rule then misses and says it did not check). Each stage keeps the
   order of ``rules.toml``, which lists these steps last, as they run.

The rules that recognise automatic mail live in ``parsers.robots``.

This module knows no database: ``OpenDossiers`` is a protocol that answers
with plain frozen ``OpenDossier`` data.

All matching is done on our side on folded text (accents and case removed),
and classifying never raises on odd input: absent headers, empty bodies and
non-string header values simply do not match.
"""

from __future__ import annotations

import functools
import re
import re._constants as _sre
import re._parser as _sre_parser
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from parsers.addresses import normalise_address
from parsers.rules import ACTIONS, DetectionRules, Sign, Verdict, compile_pattern
from parsers.rules import LoadedConfig as Config
from parsers.text import fold, header_safe
from parsers.types import ParsedMail

# Signs look at the first 200 KB of the body and of each attachment text:
# the words that make a candidature are near the top, and admin regexes with
# ``.{0,40}`` must not be run over megabytes of quoted or extracted text.
SCAN_CHARS = 200 * 1024

# Applicant-controlled values quoted in a trace reason are cut to this.
_REASON_VALUE_CHARS = 80

# Our replies' Message-IDs: <mailbot.{REFERENCE}.{kind}.{random}@{domain}>.
# The reference is always written canonically by make_reply_message_id, so a
# fixed pattern is right here whatever rules.toml says about references.
_CANONICAL_REFERENCE = re.compile(r"BSC-\d{4}-\d{4,}")
_REPLY_KIND = re.compile(r"[a-z0-9_]+")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_OUR_MESSAGE_ID = re.compile(
    r"<?\s*mailbot\.(BSC-\d{4}-\d{4,})\.([a-z0-9_]+)\.([0-9a-f]+)@([^<>\s]+?)\s*>?",
    re.IGNORECASE,
)
_MSGID_TOKEN = re.compile(r"<[^<>\s]+>")
# An address parseaddr() returns unchanged (dot-atoms, no quotes or comments).
_BARE_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def _fold(text: str | None) -> str:
    # fold() also turns Word's and Outlook's apostrophes into the ASCII one
    # the shipped signs are written with ("d’intention" = "d'intention").
    text = text or ""
    if len(text) <= _SHORT_TEXT:
        return _fold_short(text)
    return _fold_long(text)


# Several rules fold the same values of one message: the subject (robot_subject,
# dossier_reference, the signs), the addresses (robot_sender, own_sender),
# the body (dossier_reference, the signs). Keep the last results (a str
# caches its hash, so a hit costs no rescan): many short ones, only a few
# long ones, so that no more than a few bodies or documents are ever held.
_SHORT_TEXT = 1024
_fold_short = functools.lru_cache(maxsize=256)(fold)
_fold_long = functools.lru_cache(maxsize=4)(fold)


# --------------------------------------------------------------------------
# Decisions and their record


@dataclass(frozen=True)
class RuleResult:
    """What one rule decided about one message."""

    hit: bool
    reason: str
    # The dossier a follow-up belongs to (dossier_reference, reply_to_our_mail).
    reference: str | None = None


@dataclass(frozen=True)
class RuleHit:
    """One line of the trace: a rule or sign that was evaluated."""

    rule: str
    hit: bool
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "hit": self.hit, "reason": self.reason}


@dataclass(frozen=True)
class Classification:
    """The verdict on one message and how it was reached."""

    verdict: Verdict
    trace: tuple[RuleHit, ...]
    # Sum of the sign weights; None when a message rule decided before the score.
    score: float | None
    reference: str | None
    # Chain rule name, "score" or "over_limits".
    decided_by: str

    def trace_as_json(self) -> list[dict[str, Any]]:
        """The trace as plain data, for the database and ``--json`` output."""
        return [entry.as_json() for entry in self.trace]


class Stage(StrEnum):
    """When a rule of the chain runs (see the module docstring)."""

    MESSAGE = "message"
    READING = "reading"


@dataclass(frozen=True)
class OpenDossier:
    """A dossier still open to more pieces (incomplete or needs_review), as stored."""

    reference: str
    # Its intitulé as stored ("" when none was read).
    title: str


@dataclass(frozen=True)
class Correspondence:
    """Who may speak for one dossier, as the database knows it."""

    reference: str
    # Normalised addresses: the dossier's sender, the recipients of our
    # replies for it, the senders of the messages attached to it.
    addresses: frozenset[str]
    # Message-IDs of our replies for it (normalised: no angle brackets, lower case).
    sent_message_ids: frozenset[str]


class OpenDossiers(Protocol):
    """Where the reading rules find a sender's open dossiers (the database)."""

    # Added to the reasons of the rules that asked, e.g. "checked against the
    # database (read-only)"; "" says nothing.
    checked: str

    def of_sender(self, sender: str) -> Sequence[OpenDossier]:
        """The open dossiers of exactly this sender address, latest received first."""
        ...

    def correspondence(self, reference: str) -> Correspondence | None:
        """Who corresponded with the service about ``reference``; None: no such dossier."""
        ...


@dataclass(frozen=True)
class ReadingFacts:
    """What the reading rules need from the documents read."""

    dossier_present: bool
    # The intitulé the dossier d'intention states ("" when none).
    title: str = ""


@dataclass(frozen=True)
class ClassifyContext:
    """What the rules need to know besides the message and the rules file."""

    own_addresses: frozenset[str]
    loop_header: str
    message_id_domain: str
    # Name of the receiving mailbox (for rules.mailbox_weights).
    mailbox: str
    # Text the document reader extracted from the attachments, if any.
    attachment_texts: tuple[str, ...] = field(default=(), repr=False)
    # The second stage only: the documents read, and the database's open
    # dossiers (None: no database to ask).
    reading: ReadingFacts | None = None
    open_dossiers: OpenDossiers | None = field(default=None, repr=False)
    # A retried message that already opened a dossier: its reference.
    filed_in: str | None = None
    # The second stage of a follow-up: the dossier the first stage named.
    follow_up_of: str | None = None

    def __post_init__(self) -> None:
        # Compared with folded addresses from the message, so fold them once
        # here; a list passed by a caller still becomes a hashable tuple.
        object.__setattr__(
            self, "own_addresses", frozenset(fold(a) for a in self.own_addresses if a)
        )
        object.__setattr__(self, "attachment_texts", tuple(t for t in self.attachment_texts if t))

    @classmethod
    def from_config(
        cls, config: Config, *, mailbox: str, attachment_texts: Iterable[str] = ()
    ) -> ClassifyContext:
        settings = config.settings
        return cls(
            own_addresses=settings.own_addresses,
            loop_header=settings.replies.loop_header,
            message_id_domain=settings.smtp.message_id_domain,
            mailbox=mailbox,
            attachment_texts=tuple(attachment_texts),
        )


# --------------------------------------------------------------------------
# Small helpers shared by the rules


def _values(mail: ParsedMail, name: str) -> tuple[str, ...]:
    """Every value of a header, as strings; () when absent or unreadable."""
    headers = mail.headers or {}
    raw = headers.get(name.lower())
    if raw is None:
        return ()
    if type(raw) is tuple and len(raw) == 1 and type(raw[0]) is str:
        return raw  # what the parser gives for most headers: one string
    if isinstance(raw, str):
        raw = (raw,)
    return tuple(str(v) for v in raw if v is not None)


def _quote(value: str) -> str:
    return repr(header_safe(value, max_length=_REASON_VALUE_CHARS))


def _address(value: str | None) -> str:
    """The folded bare address of ``value`` ("Name <a@b>" or "a@b"), or ""."""
    if not value:
        return ""
    text = str(value)
    # own_sender and robot_sender read the same two addresses of each message.
    return _folded_address_short(text) if len(text) <= _SHORT_TEXT else _folded_address(text)


def _folded_address(text: str) -> str:
    # Parsed mail already holds bare addresses: parseaddr would return them as is.
    bare = text if _BARE_ADDRESS.fullmatch(text) else (parseaddr(text)[1] or text)
    return _fold(bare).strip("<> ")


_folded_address_short = functools.lru_cache(maxsize=256)(_folded_address)


def _token(value: str) -> str:
    """First token of a structured header value: ``Auto-Replied; x=y`` -> ``auto-replied``."""
    return _fold(value.split(";", 1)[0])


@functools.lru_cache(maxsize=256)
def _miss(reason: str) -> RuleResult:
    """A miss for ``reason``: frozen, so one object serves every message that misses so."""
    return RuleResult(False, reason)


def _rule_hit(rule: str, hit: bool, reason: str) -> RuleHit:
    """The trace entry of a rule's answer.

    The entries of one message are mostly those of the last one (every rule
    that missed, for the same reason): frozen, so built once. Long reasons
    (a header name is quoted whole) are not kept.
    """
    if len(reason) > _SHORT_TEXT:
        return RuleHit(rule, hit, reason)
    return _rule_hit_short(rule, hit, reason)


_rule_hit_short = functools.lru_cache(maxsize=1024)(RuleHit)


# --------------------------------------------------------------------------
# Literals a regex needs: the signs and the dossier reference are searched in
# every message, and most messages hold none of their words. A regex that
# cannot match without one of a few plain strings is not run over a text
# holding none of them (``str.__contains__`` is much faster than a
# case-insensitive search). Only sure answers: a text or a pattern outside
# the simple shapes below is searched as before.

# Characters that are ASCII letters to a case-insensitive regex without being
# lower-case ASCII themselves: A-Z, and these four (tests/test_classify_speed.py
# checks the list against every code point).
_ASCII_CASE_TWINS = "\u0130\u0131\u017f\u212a"


def _caseless(text: str) -> bool:
    """True when, in ``text``, an ASCII character of a case-insensitive regex matches only itself.

    (Itself lower-cased.) Folded text is: no A-Z and none of the four
    non-ASCII case twins of ASCII letters (``str.lower()`` changes A-Z, İ
    and the Kelvin sign; ı and ſ are looked for).
    """
    if text.lower() != text:
        return False
    return text.isascii() or not any(twin in text for twin in _ASCII_CASE_TWINS)


@dataclass(frozen=True)
class _Literals:
    """A case-insensitive regex and strings one of which each of its matches contains."""

    regex: re.Pattern[str]
    # Lower-case ASCII; () when no such set is known (the regex is always run).
    required: tuple[str, ...]

    @classmethod
    def of(cls, regex: re.Pattern[str]) -> _Literals:
        required: frozenset[str] | None = None
        if regex.flags & re.IGNORECASE:
            try:
                required = _required_literals(list(_sre_parser.parse(regex.pattern, regex.flags)))
            except (re.error, RecursionError, ValueError, TypeError):
                required = None
        if not required:
            return cls(regex, ())
        # A text holding a string holds every string it contains: keep the shortest.
        kept = {s for s in required if not any(o != s and o in s for o in required)}
        return cls(regex, tuple(sorted(kept)))

    def search(self, text: str, *, is_caseless: bool | None = None) -> re.Match[str] | None:
        """``regex.search(text)``, without the search when ``text`` cannot match.

        ``is_caseless``: ``_caseless(text)`` when the caller knows it already.
        """
        if self.required:
            if is_caseless is None:
                is_caseless = _caseless(text)
            if is_caseless:
                for literal in self.required:
                    if literal in text:
                        break
                else:
                    return None
        return self.regex.search(text)


_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)


def _required_literals(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    """Strings one of which every match of this parsed sequence contains; None: none known.

    On a case-insensitive pattern: a run of ASCII literals must appear, in
    lower case, in a caseless text holding the match; a group must match
    whole; a repeat at least once its item; an alternation one of its
    branches. Anything else (classes, scoped flags, lookarounds,
    back-references, optional parts) requires nothing here.
    """
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is _sre.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        if run:
            candidates.append(frozenset({"".join(run)}))
            run = []
        required: frozenset[str] | None = None
        if op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if not add_flags and not del_flags:
                required = _required_literals(list(sub))
        elif op in _REPEATS:
            low, _high, sub = av
            if low >= 1:
                required = _required_literals(list(sub))
        elif op is _sre.ATOMIC_GROUP:
            required = _required_literals(list(av))
        elif op is _sre.BRANCH:
            branches = [_required_literals(list(branch)) for branch in av[1]]
            if branches and all(branches):
                required = frozenset().union(*branches)  # type: ignore[arg-type]
        if required:
            candidates.append(required)
    if run:
        candidates.append(frozenset({"".join(run)}))
    if not candidates:
        return None
    # The most selective: the longest shortest string, then the fewest strings.
    return max(candidates, key=lambda found: (min(map(len, found)), -len(found)))


def canonical_reference(year: str, number: str) -> str:
    """``BSC-YYYY-NNNN``: upper case, the number zero-padded to 4 digits."""
    try:
        return f"BSC-{int(year):04d}-{int(number):04d}"
    except ValueError:
        # An admin's reference_pattern whose groups are not plain numbers.
        return f"BSC-{year}-{number}".upper()


def make_reply_message_id(*, reference: str, kind: str, domain: str) -> str:
    """A Message-ID for one of our replies that threads back to its dossier."""
    # These land in a header: refuse anything that is not the expected shape
    # rather than let a stray CR/LF or space through.
    if not _CANONICAL_REFERENCE.fullmatch(reference):
        raise ValueError(f"not a canonical dossier reference: {reference!r}")
    if not _REPLY_KIND.fullmatch(kind):
        raise ValueError(f"reply kind must be lower-case letters, digits, _: {kind!r}")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a Message-ID domain: {domain!r}")
    # Short enough (with the common kinds) for the header to stay on one line.
    return f"<mailbot.{reference}.{kind}.{secrets.token_hex(4)}@{domain}>"


def reference_from_message_id(msgid: str | None, *, domain: str) -> str | None:
    """The dossier reference carried by one of our Message-IDs, else None."""
    if not msgid:
        return None
    match = _OUR_MESSAGE_ID.fullmatch(str(msgid).strip())
    if not match or match.group(4).lower() != domain.lower():
        return None
    year, number = match.group(1).split("-")[1:]
    return canonical_reference(year, number)


def _message_ids(values: Iterable[str | None]) -> list[str]:
    """Message-IDs found in In-Reply-To/References values, in order."""
    found: list[str] = []
    for value in values:
        if not value:
            continue
        text = str(value)
        tokens = _MSGID_TOKEN.findall(text)
        # Some clients drop the angle brackets; then the value is the id.
        found.extend(tokens or text.split())
    return found


# --------------------------------------------------------------------------
# Rules


# Every rule class by its name, filled as the classes are defined: these are
# the names a chain step in rules.toml may use (parsers.rules.chain_rule_names).
RULES: dict[str, type[Rule]] = {}


class Rule:
    """A named yes/no question about a message. Subclasses set ``name``."""

    name: ClassVar[str]
    stage: ClassVar[Stage] = Stage.MESSAGE
    # A reading rule runs only on a message the first stage gave one of these verdicts.
    applies_to: ClassVar[frozenset[Verdict]] = frozenset({Verdict.CANDIDATURE})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        if cls.name in RULES:
            raise TypeError(f"two rule classes are named {cls.name!r}")
        RULES[cls.name] = cls

    def __init__(self, rules: DetectionRules) -> None:
        # Rules that need patterns from rules.toml compile them here, once
        # per Classifier, not once per message.
        self.rules = rules

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        raise NotImplementedError


class OwnSender(Rule):
    name = "own_sender"

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        own = ctx.own_addresses
        sender = _address(mail.sender)
        outer = _address(mail.from_address)
        if mail.forwarded:
            # A forward is judged by the original sender: staff forwarding an
            # applicant's candidature into the mailbox must be filed, and so
            # must an applicant forwarding our own reply back with a question.
            # Only our own mail passed around between ourselves is ignored.
            if outer in own and sender in own:
                return RuleResult(True, f"{_quote(outer)} forwarded mail from {_quote(sender)}")
            return RuleResult(False, f"forwarded mail from {_quote(sender or '?')}, not ours")
        for address in (sender, outer):
            if address and address in own:
                return RuleResult(True, f"{_quote(address)} is one of our addresses")
        return _miss("sender is not one of our addresses")


class DossierReference(Rule):
    name = "dossier_reference"

    def __init__(self, rules: DetectionRules) -> None:
        super().__init__(rules)
        self.regex = compile_pattern(rules.reference_pattern)
        self.literals = _Literals.of(self.regex)

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        places = (("subject", mail.subject), ("body", (mail.text or "")[:SCAN_CHARS]))
        for place, text in places:
            match = self.literals.search(_fold(text))
            if match:
                reference = self._canonical(match)
                return RuleResult(True, f"reference {reference} in {place}", reference)
        return _miss("no dossier reference in subject or body")

    def _canonical(self, match: re.Match[str]) -> str:
        if self.regex.groups >= 2:
            return canonical_reference(match.group(1), match.group(2))
        # A pattern without the two groups: keep what was written, upper-cased.
        return match.group(0).upper()


class ReplyToOurMail(Rule):
    name = "reply_to_our_mail"

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        # In-Reply-To names the mail answered; References is oldest first, so
        # read it backwards to prefer the latest of our mails in the thread.
        candidates = _message_ids([mail.in_reply_to])
        candidates += list(reversed(_message_ids(mail.references or ())))
        for msgid in candidates:
            reference = reference_from_message_id(msgid, domain=ctx.message_id_domain)
            if reference:
                return RuleResult(True, f"answers our message {_quote(msgid)}", reference)
        return _miss("does not answer one of our messages")


class SameSenderOpenDossier(Rule):
    """Pieces sent in several messages: the letter next week joins the open dossier.

    A message carrying no dossier d'intention (a letter, photos) belongs to
    the sender's latest open dossier; one carrying a dossier belongs to an
    open dossier only when the intitulés match once folded (else it is a
    new project).
    """

    name = "same_sender_open_dossier"
    stage = Stage.READING

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        if ctx.filed_in:
            return RuleResult(False, f"already in dossier {ctx.filed_in}")
        lookup = ctx.open_dossiers
        if lookup is None:
            return RuleResult(False, "no database configured: not checked")
        result = self._decide(mail, ctx.reading, lookup)
        if lookup.checked:
            return replace(result, reason=f"{result.reason}; {lookup.checked}")
        return result

    @staticmethod
    def _decide(mail: ParsedMail, reading: ReadingFacts | None, lookup: OpenDossiers) -> RuleResult:
        if reading is None:
            return RuleResult(False, "documents not read")
        if not mail.sender:
            return RuleResult(False, "no sender address")
        sender = _quote(mail.sender)
        candidates = lookup.of_sender(mail.sender)
        if not candidates:
            return RuleResult(False, f"{sender} has no open dossier")
        if not reading.dossier_present:
            latest = candidates[0]
            reason = (
                f"{sender} has the open dossier {latest.reference}; no dossier d'intention here"
            )
            return RuleResult(True, reason, latest.reference)
        title = fold(reading.title)
        for dossier in candidates:
            if title and fold(dossier.title) == title:
                reason = f"{sender} has the open dossier {dossier.reference} with the same intitulé"
                return RuleResult(True, reason, dossier.reference)
        return RuleResult(False, f"no open dossier of {sender} has the intitulé {_quote(title)}")


def cited_message_ids(mail: ParsedMail) -> tuple[str, ...]:
    """Every Message-ID a message cites (In-Reply-To, then References), normalised."""
    ids = _message_ids([mail.in_reply_to]) + _message_ids(mail.references or ())
    return tuple(dict.fromkeys(normalise_msgid(m) for m in ids if normalise_msgid(m)))


def normalise_msgid(value: str | None) -> str:
    """A Message-ID as compared: without angle brackets or spaces, lower case."""
    return str(value or "").strip().strip("<>").strip().lower()


class NotTheApplicant(Rule):
    """Only the applicant (or who we already wrote to about it) may join or change a dossier.

    A follow-up named by a reference or a thread passes when its sender is
    the dossier's sender, a recipient of one of our replies for it or the
    sender of a message already in it, and every Message-ID of ours it cites
    is one we sent for that dossier. Anything else hits: staff check it
    and attach it themselves (``mailbot messages attach``).
    """

    name = "not_the_applicant"
    stage = Stage.READING
    applies_to = frozenset({Verdict.FOLLOW_UP})

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        lookup = ctx.open_dossiers
        if lookup is None:
            return RuleResult(False, "no database configured: not checked")
        result = self._decide(mail, ctx, lookup)
        if lookup.checked:
            return replace(result, reason=f"{result.reason}; {lookup.checked}")
        return result

    @staticmethod
    def _decide(mail: ParsedMail, ctx: ClassifyContext, lookup: OpenDossiers) -> RuleResult:
        reference = ctx.follow_up_of
        if not reference:
            return RuleResult(False, "no dossier named")
        if ctx.filed_in == reference:
            return RuleResult(False, f"already in dossier {reference}", reference)
        known = lookup.correspondence(reference)
        if known is None:
            # Filing sends a reference we do not have to review on its own.
            return RuleResult(False, f"no dossier {reference}: not checked", reference)
        sender = normalise_address(mail.sender)
        if sender is None or sender not in known.addresses:
            who = _quote(mail.sender) if mail.sender else "no usable sender"
            reason = f"{who} is not the applicant of {reference} nor one of its correspondents"
            return RuleResult(True, reason, reference)
        for msgid in cited_message_ids(mail):
            ours = reference_from_message_id(msgid, domain=ctx.message_id_domain)
            if ours is not None and msgid not in known.sent_message_ids:
                reason = f"cites {_quote(msgid)}, not a message we sent for {reference}"
                return RuleResult(True, reason, reference)
        return RuleResult(
            False, f"{_quote(sender)} corresponds with us about {reference}", reference
        )


# --------------------------------------------------------------------------
# The chain and the score


# A folded text and whether it is ``_caseless``.
_Text = tuple[str, bool]


def _text(text: str) -> _Text:
    return text, _caseless(text)


def _places(mail: ParsedMail, ctx: ClassifyContext) -> dict[str, tuple[_Text, ...]]:
    """The folded texts of one message, by the names a sign's ``where`` uses."""
    # File names are folded one by one so that '$' in a pattern means the
    # end of each name, and texts likewise stay one per document.
    return {
        "subject": (_text(_fold(mail.subject)),),
        "body": (_text(_fold((mail.text or "")[:SCAN_CHARS])),),
        "attachment_name": tuple(
            _text(_fold(a.filename)) for a in mail.attachments or () if a.filename
        ),
        "attachment_text": tuple(_text(_fold(t[:SCAN_CHARS])) for t in ctx.attachment_texts),
    }


class Classifier:
    """The chain and signs of one DetectionRules, compiled once, reused per message."""

    def __init__(self, rules: DetectionRules) -> None:
        missing = sorted({s.rule for s in rules.chain} - RULES.keys())
        if missing:
            raise ValueError(f"no rule class for {', '.join(missing)}")
        self.rules = rules
        steps = [(RULES[step.rule](rules), ACTIONS[step.action]) for step in rules.chain]
        # Each stage keeps the configured order; a reading rule listed among
        # the message rules still waits for the reading (rules.toml lists
        # them last, as they run).
        self.chain: tuple[tuple[Rule, Verdict], ...] = tuple(
            (rule, verdict) for rule, verdict in steps if rule.stage is Stage.MESSAGE
        )
        self.reading_chain: tuple[tuple[Rule, Verdict], ...] = tuple(
            (rule, verdict) for rule, verdict in steps if rule.stage is Stage.READING
        )
        # Each sign with its regex's required literals and its trace entry
        # when it does not match (the same for every message).
        self.signs: tuple[tuple[Sign, _Literals, RuleHit], ...] = tuple(
            (sign, _Literals.of(sign.regex), RuleHit(f"sign:{sign.name}", False, "no match"))
            for sign in rules.signs
        )

    def classify(self, mail: ParsedMail, *, ctx: ClassifyContext) -> Classification:
        """The first stage: the message rules, then the score."""
        trace: list[RuleHit] = []
        decided = self._run(self.chain, mail=mail, ctx=ctx, trace=trace, score=None)
        return decided or self._score(mail, ctx, trace)

    def classify_reading(
        self, mail: ParsedMail, first: Classification, *, ctx: ClassifyContext
    ) -> Classification:
        """The second stage: the reading rules, on a candidature whose documents are read.

        ``first`` is what ``classify`` decided: a candidature meets the rules
        that may join it to an open dossier, a follow-up the rules that check
        the sender may touch the dossier it names (``Rule.applies_to``); any
        other verdict is final and returned as it is. ``ctx.reading`` and ``ctx.open_dossiers``
        carry what these rules look at.
        """
        steps = [(r, v) for r, v in self.reading_chain if first.verdict in r.applies_to]
        if not steps:
            return first
        trace = list(first.trace)
        if first.verdict is Verdict.FOLLOW_UP:
            ctx = replace(ctx, follow_up_of=first.reference)
        decided = self._run(steps, mail=mail, ctx=ctx, trace=trace, score=first.score)
        if decided is not None and decided.reference is None:
            decided = replace(decided, reference=first.reference)
        return decided or replace(first, trace=tuple(trace))

    @staticmethod
    def _run(
        steps: Iterable[tuple[Rule, Verdict]],
        *,
        mail: ParsedMail,
        ctx: ClassifyContext,
        trace: list[RuleHit],
        score: float | None,
    ) -> Classification | None:
        """Ask each rule in turn, recording it in ``trace``; the first hit decides."""
        for rule, verdict in steps:
            result = rule.check(mail, ctx)
            trace.append(_rule_hit(rule.name, result.hit, result.reason))
            if result.hit:
                return Classification(
                    verdict=verdict,
                    trace=tuple(trace),
                    score=score,
                    reference=result.reference,
                    decided_by=rule.name,
                )
        return None

    def _score(
        self, mail: ParsedMail, ctx: ClassifyContext, trace: list[RuleHit]
    ) -> Classification:
        places = _places(mail, ctx)
        score = 0.0
        for sign, literals, no_match in self.signs:
            hit = self._match_sign(literals, sign.where, places)
            if hit is None:
                trace.append(no_match)
                continue
            score += sign.weight
            where, matched = hit
            reason = f"matched {_quote(matched)} in {where} ({sign.weight:+g})"
            trace.append(RuleHit(f"sign:{sign.name}", True, reason))

        weight = self.rules.mailbox_weights.get(ctx.mailbox, 0.0)
        if weight:
            score += weight
            trace.append(RuleHit("mailbox_weight", True, f"mailbox {ctx.mailbox!r} ({weight:+g})"))

        verdict, bound = self._verdict_for(score)
        trace.append(_rule_hit("score", True, f"score {score:g} {bound}: {verdict}"))

        decided_by = "score"
        if mail.over_limits and verdict is not Verdict.NEEDS_REVIEW:
            # Something was cut off (parts, pages, attachments): a person must
            # check what we could not read before it is filed as complete.
            verdict, decided_by = Verdict.NEEDS_REVIEW, "over_limits"
            trace.append(
                RuleHit("over_limits", True, "a configured limit was exceeded: needs_review")
            )
        return Classification(
            verdict=verdict, trace=tuple(trace), score=score, reference=None, decided_by=decided_by
        )

    def _verdict_for(self, score: float) -> tuple[Verdict, str]:
        candidature, review = self.rules.candidature_threshold, self.rules.review_threshold
        if score >= candidature:
            return Verdict.CANDIDATURE, f">= candidature_threshold {candidature:g}"
        if score >= review:
            return Verdict.NEEDS_REVIEW, f">= review_threshold {review:g}"
        return Verdict.NOT_CANDIDATURE, f"< review_threshold {review:g}"

    @staticmethod
    def _match_sign(
        literals: _Literals, where: Iterable[str], places: dict[str, tuple[_Text, ...]]
    ) -> tuple[str, str] | None:
        for place in where:
            for text, is_caseless in places[place]:
                match = literals.search(text, is_caseless=is_caseless)
                if match:
                    return place, match.group(0)
        return None


def classify(mail: ParsedMail, *, rules: DetectionRules, ctx: ClassifyContext) -> Classification:
    """Classify one message; build a ``Classifier`` instead when there are many."""
    return Classifier(rules).classify(mail, ctx=ctx)


# The robot-recognising rules live in their own module; importing it here
# registers them in RULES whenever this module is imported.
from parsers import robots as _robots  # noqa: E402, F401
