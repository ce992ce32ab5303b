"""The rules that recognise automatic mail: robots, lists, bounces, vacation replies.

These are the first-stage rules of the classify chain that answer "was this
sent by a machine?": the loop header, a null Return-Path, robot senders and
subjects, headers only automatic mail carries (vacation, bounce,
challenge-response), Auto-Submitted, bulk precedence, mailing-list headers,
X-Auto-Response-Suppress, autoresponder headers and delivery or disposition
reports, with the patterns they match. Each class registers itself by its
``name`` in ``parsers.classify.RULES`` through ``Rule.__init_subclass__``;
``parsers.classify`` imports this module, so importing either fills the registry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import ClassVar

from parsers.classify import (
    ClassifyContext,
    Rule,
    RuleResult,
    _address,
    _fold,
    _Literals,
    _miss,
    _quote,
    _token,
    _values,
)
from parsers.mail.plain_view import plain_parseaddr
from parsers.rules import DetectionRules, compile_pattern
from parsers.types import ParsedMail


class LoopHeader(Rule):
    name = "loop_header"

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        values = _values(mail, ctx.loop_header)
        # The mere presence is enough: whatever the value, it is one of ours
        # (or a copy of one) and answering it could start a loop.
        if values or (mail.headers and ctx.loop_header.lower() in mail.headers):
            return RuleResult(True, f"{ctx.loop_header} present")
        return _miss(f"no {ctx.loop_header} header")


class NullReturnPath(Rule):
    name = "null_return_path"

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        value = mail.return_path
        if value is None:
            # The parser may have left the field unset; the header is the truth.
            headers = _values(mail, "return-path")
            value = headers[0] if headers else None
        if value is None:
            return _miss("no Return-Path")
        if str(value).strip().strip("<>").strip() == "":
            return RuleResult(True, f"null Return-Path {_quote(str(value))}")
        return _miss("Return-Path is not null")


class RobotSender(Rule):
    """Senders that are robots: the patterns of ``robot_senders``, and the null sender.

    Delivery reports come as ``MAILER-DAEMON <>``, ``<>`` or ``MAILER-DAEMON``
    without a domain: none of them is an address the parser keeps, so the
    raw From header is read too, and a From whose address is
    empty (``<>``) is a robot by itself.
    """

    name = "robot_sender"

    def __init__(self, rules: DetectionRules) -> None:
        super().__init__(rules)
        self.patterns = [(p, compile_pattern(p)) for p in rules.robot_senders]

        # One search of all the patterns; which one matched is looked for on a hit only.
        self.any_pattern = _alternation([regex for _source, regex in self.patterns])
        # Most addresses hold none of the words the patterns need: not even that search.
        self.any_literals = _Literals.of(self.any_pattern) if self.any_pattern else None

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        from_values = [(value, _parseaddr(value)) for value in _values(mail, "from")]
        # The sender, the From address and the raw From are mostly one
        # address: each is searched once (a string that missed misses again).
        searched: set[str] = set()
        for role, value in self._candidates(mail, from_values):
            folded = _fold(value).strip("<> ")
            if not folded or folded in searched:
                continue
            searched.add(folded)
            if self.any_literals is not None and not self.any_literals.search(folded):
                continue
            for source, regex in self.patterns:
                if regex.search(folded):
                    return RuleResult(True, f"{role} {_quote(folded)} matches {source!r}")
        for value, (_name, address) in from_values:
            if not address.strip("<> ") and "<" in value and ">" in value:
                return RuleResult(True, f"From {_quote(value)} has the null address <>")
        return _miss("no robot sender")

    @staticmethod
    def _candidates(
        mail: ParsedMail, from_values: list[tuple[str, tuple[str, str]]]
    ) -> Iterable[tuple[str, str]]:
        yield "sender", _address(mail.sender)
        yield "From", _address(mail.from_address)
        # The raw From too: the parser keeps no address for "MAILER-DAEMON".
        # (Not Sender: mailing services put their bounce address there on
        # mail people send through them.)
        for value, (name, address) in from_values:
            # "MAILER-DAEMON <>": the name is all there is to go by.
            yield "From", address or name or value


def _parseaddr(value: str) -> tuple[str, str]:
    # The same senders write again and again (colleagues, newsletters): their
    # From values are parsed once (a tuple of strings: shared safely). Only
    # short ones are kept, so that the cache never holds big headers.
    if len(value) <= _SHORT_FROM:
        return _parseaddr_short(value)
    return plain_parseaddr(value)


_SHORT_FROM = 512
_parseaddr_short = functools.lru_cache(maxsize=256)(plain_parseaddr)


# A pattern that refers to its own groups, or sets flags for the whole
# pattern, cannot be one branch of an alternation.
_SELF_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(|\(\?[aiLmsux]+\)")


def _alternation(regexes: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One regex matching where any of ``regexes`` does (same flags); None if not possible."""
    if not regexes or any(_SELF_REFERENCE.search(r.pattern) for r in regexes):
        return None
    flags = {r.flags for r in regexes}
    if len(flags) != 1:
        return None
    try:
        return re.compile("|".join(f"(?:{r.pattern})" for r in regexes), flags.pop())
    except re.error:
        return None


class RobotHeaders(Rule):
    """Headers only automatic mail carries: vacation replies, bounces, challenge-response, lists.

    iCloud marks its vacation replies with ``X-Apple-Action: VACATION`` only;
    Exim and Gmail bounces carry ``X-Failed-Recipients``, Exchange ones
    ``X-MS-Exchange-Message-Is-Ndr``; challenge-response services (Boxbe,
    SpamArrest and the like) their own ``X-Challenge``/``X-Boxbe``/
    ``X-SpamArrest`` headers; Mailman's loop and administrative notices
    ``X-List-Administrivia``.
    """

    name = "robot_headers"
    # Header name (lower case) -> folded values that make it automatic (empty: any value).
    HEADERS: ClassVar[dict[str, frozenset[str]]] = {
        "x-apple-action": frozenset({"vacation"}),
        "x-auto-reply": frozenset(),
        "x-autoreply-from": frozenset(),
        "x-mail-autoreply": frozenset(),
        "x-autogenerated": frozenset({"reply"}),
        "x-vacation": frozenset(),
        "x-failed-recipients": frozenset(),
        "x-ms-exchange-message-is-ndr": frozenset(),
        "x-list-administrivia": frozenset({"yes"}),
        "x-challenge": frozenset(),
        "x-challenge-response": frozenset(),
    }
    PREFIXES: ClassVar[tuple[str, ...]] = ("x-boxbe", "x-spamarrest", "x-challenge-")
    # A name that is one of HEADERS or starts with a prefix holds one of these.
    _WORDS: ClassVar[re.Pattern[str]] = re.compile("|".join(map(re.escape, [*HEADERS, *PREFIXES])))

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        if not _names_hold(mail, self._WORDS):
            return _miss("no header of automatic mail")
        for name in mail.headers or {}:
            lowered = str(name).lower()
            if lowered in self.HEADERS:
                wanted = self.HEADERS[lowered]
                for value in _values(mail, lowered) or ("",):
                    if not wanted or _token(value) in wanted:
                        return RuleResult(True, f"{name}: {_quote(value)}")
            elif lowered.startswith(self.PREFIXES):
                return RuleResult(True, f"challenge-response header {name}")
        return _miss("no header of automatic mail")


def _names_hold(mail: ParsedMail, words: re.Pattern[str]) -> bool:
    """False when no header name holds one of ``words`` (lower-case ASCII), whatever its case.

    One search of all the names at once; True sends the rule through them one by one.
    """
    names = "\n".join(map(str, mail.headers or ())).lower()
    return words.search(names) is not None


class RobotSubject(Rule):
    """Subjects that automatic replies and delivery reports start with, in the common languages."""

    name = "robot_subject"
    PATTERN: ClassVar[re.Pattern[str]] = re.compile(
        r"^\s*(?:"
        r"auto(?:matic|matische)?[\s_-]*(?:reply|response|antwort|risposta|respuesta)"
        r"|autoreply|reponse automatique|respuesta automatica|risposta automatica"
        r"|absence du bureau|message d'absence|out of (?:the )?office|abwesenheit|absent\b"
        r"|undeliver(?:ed|able)|delivery (?:status notification|failure|has failed)"
        r"|mail delivery failed|returned mail|non remis|message non remis"
        r"|echec de (?:la )?remise|notification d'etat de (?:la )?distribution"
        r"|please confirm (?:you are human|your (?:e-?mail|message))"
        r"|(?:verification|confirmation) (?:required|requise)"
        r")"
    )

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        subject = _fold(mail.subject)
        match = self.PATTERN.match(subject)
        if match:
            return RuleResult(True, f"subject starts with {_quote(match.group(0).strip())}")
        return _miss("no subject of automatic mail")


class AutoSubmitted(Rule):
    name = "auto_submitted"

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        for value in _values(mail, "auto-submitted"):
            # RFC 3834: anything but "no" (an empty value included) is automatic.
            if _token(value) != "no":
                return RuleResult(True, f"Auto-Submitted: {_quote(value)}")
        return _miss("no Auto-Submitted other than 'no'")


class BulkPrecedence(Rule):
    name = "bulk_precedence"
    BULK: ClassVar[frozenset[str]] = frozenset({"bulk", "junk", "list"})

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        for header in ("Precedence", "X-Precedence"):
            for value in _values(mail, header):
                if _token(value) in self.BULK:
                    return RuleResult(True, f"{header}: {_quote(value)}")
        return _miss("no bulk, junk or list precedence")


class ListHeaders(Rule):
    name = "list_headers"
    EXACT: ClassVar[frozenset[str]] = frozenset({"mailing-list", "x-mailing-list"})
    # "list-...", "mailing-list" and "x-mailing-list" hold it (one literal: the fastest search).
    _WORDS: ClassVar[re.Pattern[str]] = re.compile("list")

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        if not _names_hold(mail, self._WORDS):
            return _miss("no mailing-list header")
        for name in mail.headers or {}:
            lowered = str(name).lower()
            if lowered.startswith("list-") or lowered in self.EXACT:
                return RuleResult(True, f"mailing-list header {name}")
        return _miss("no mailing-list header")


class AutoResponseSuppress(Rule):
    name = "auto_response_suppress"
    SUPPRESS: ClassVar[frozenset[str]] = frozenset({"all", "autoreply", "oof"})
    _SPLIT: ClassVar[re.Pattern[str]] = re.compile(r"[,\s]+")

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        for value in _values(mail, "x-auto-response-suppress"):
            tokens = {t for t in self._SPLIT.split(_fold(value)) if t}
            if tokens & self.SUPPRESS:
                return RuleResult(True, f"X-Auto-Response-Suppress: {_quote(value)}")
        return _miss("no X-Auto-Response-Suppress All/AutoReply/OOF")


class AutoreplyHeaders(Rule):
    name = "autoreply_headers"
    HEADERS: ClassVar[tuple[str, ...]] = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        headers = mail.headers or {}
        for header in self.HEADERS:
            if header.lower() in headers:
                return RuleResult(True, f"{header} present")
        return _miss("no autoresponder header")


class DeliveryReport(Rule):
    name = "delivery_report"
    REPORT_TYPES: ClassVar[frozenset[str]] = frozenset(
        {
            "multipart/report",
            "message/delivery-status",
            "message/global-delivery-status",
            "message/disposition-notification",
            "message/global-disposition-notification",
        }
    )

    def check(self, mail: ParsedMail, ctx: ClassifyContext) -> RuleResult:
        types = list(mail.content_types or ())
        # The top-level Content-Type too, in case the parser listed no parts.
        types.extend(_values(mail, "content-type"))
        for content_type in types:
            if _token(str(content_type)) in self.REPORT_TYPES:
                return RuleResult(True, f"report content {_quote(_token(str(content_type)))}")
        return _miss("no delivery or disposition report")
