"""Labels: the label index built from ``rules.toml`` and matching a line against it.

Owns the folded-word tokens, ``LabelIndex``/``label_index`` (exact, stemmed
and fuzzy matching), the per-rules cache, and ``parse_label_line`` with the
separator, bullet and stop patterns that cut a label line into label and value.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parsers.documents.ink import UNREAD_INK
from parsers.dossier.ink import only_ink
from parsers.dossier.marks import (
    _MARK,
)
from parsers.dossier.results import (
    _FUZZY_RATIO,
    INLINE,
    LABEL_ALONE,
    NO_SEPARATOR,
    SECTION_HEADINGS,
)
from parsers.text import fold

if TYPE_CHECKING:
    from parsers.rules import Rules


# --------------------------------------------------------------------------
# Labels


_TOKEN = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class _Token:
    word: str
    start: int
    end: int


@functools.lru_cache(maxsize=4096)
def _tokens(text: str, start: int = 0, limit: int | None = None) -> tuple[_Token, ...]:
    """Folded words with their spans; elided letters (l', d', s) dropped.

    With ``limit``: the first ``limit`` words only. Cached: the same lines are
    matched against the labels by several readers (dossier, letter).
    """
    out: list[_Token] = []
    for match in _TOKEN.finditer(text, start):
        for word in _folded_words(match.group(0)):
            out.append(_Token(word, match.start(), match.end()))
        if limit is not None and len(out) >= limit:
            return tuple(out[:limit])
    return tuple(out)


@functools.lru_cache(maxsize=8192)
def _folded_words(word: str) -> tuple[str, ...]:
    return tuple(w for w in _TOKEN.findall(fold(word)) if len(w) > 1 or w.isdigit())


@functools.lru_cache(maxsize=4096)
def _label_words(text: str) -> tuple[str, ...]:
    return tuple(t.word for t in _tokens(text))


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word[-1] in "sx" else word


@dataclass(frozen=True)
class _Label:
    key: str
    words: tuple[str, ...]
    printed: bool

    @property
    def joined(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class LabelMatch:
    key: str
    end: int  # offset in the text where the label ends
    printed: bool
    fuzzy: bool
    size: int  # words in the label


class LabelIndex:
    """Every label and variant of the rules, matched at the start of a text."""

    def __init__(self, rules: Rules) -> None:
        labels: list[_Label] = []
        for key, rule in rules.fields.items():
            for index, text in enumerate([rule.label, *rule.variants]):
                tokens = _label_words(text)
                if tokens and not any(lab.words == tokens for lab in labels):
                    labels.append(_Label(key, tokens, index == 0))
        self.labels = sorted(labels, key=lambda lab: (-len(lab.words), not lab.printed))
        # The labels (in the order above) and their stems, by their first stem:
        # a text can only start with a label whose first word it starts with.
        self._by_first: dict[str, list[tuple[_Label, tuple[str, ...]]]] = {}
        for label in self.labels:
            stems = tuple(_stem(w) for w in label.words)
            self._by_first.setdefault(stems[0], []).append((label, stems))
        self.kinds = {key: str(rule.kind) for key, rule in rules.fields.items()}
        self.headings = {
            _label_words(re.sub(r"^\d+\.\s*", "", h)) for h in SECTION_HEADINGS.values()
        }

    def match(self, text: str, *, fuzzy: bool = False, start: int = 0) -> LabelMatch | None:
        """The longest label that ``text`` starts with (from ``start``)."""
        tokens = _tokens(text, start, limit=16)
        if not tokens:
            return None
        stems = tuple(_stem(t.word) for t in tokens)
        for label, label_stems in self._by_first.get(stems[0], ()):
            size = len(label_stems)
            if size <= len(stems) and stems[:size] == label_stems:
                return LabelMatch(label.key, tokens[size - 1].end, label.printed, False, size)
        if fuzzy:
            return self._fuzzy(tokens)
        return None

    def _fuzzy(self, tokens: Sequence[_Token]) -> LabelMatch | None:
        best: tuple[float, _Label, int] | None = None
        for label in self.labels:
            joined = label.joined
            if len(joined) < 8:
                continue  # short labels: a near miss is another word
            size = len(label.words)
            for count in (size - 1, size, size + 1):
                if count < 1 or count > len(tokens):
                    continue
                candidate = " ".join(t.word for t in tokens[:count])
                matcher = difflib.SequenceMatcher(None, candidate, joined)
                if matcher.real_quick_ratio() < _FUZZY_RATIO:
                    continue
                if matcher.quick_ratio() < _FUZZY_RATIO:
                    continue
                ratio = matcher.ratio()
                if ratio >= _FUZZY_RATIO and (best is None or ratio > best[0]):
                    best = (ratio, label, count)
        if best is None:
            return None
        _, label, count = best
        return LabelMatch(label.key, tokens[count - 1].end, label.printed, True, len(label.words))

    def is_prefix(self, text: str) -> bool:
        """``text`` is the beginning of a longer label (a label wrapped over lines)."""
        tokens = _label_words(text)
        if len(tokens) < 2:
            return False
        stems = tuple(_stem(t) for t in tokens)
        return any(
            len(label_stems) > len(stems) and label_stems[: len(stems)] == stems
            for _, label_stems in self._by_first.get(stems[0], ())
        )

    def is_heading(self, text: str) -> bool:
        stripped = re.sub(r"^\s*(?:\d+|[ivx]+)\s*[.)-]\s*", "", text, flags=re.I)
        return _label_words(stripped) in self.headings


# Built once per rules object (rules are frozen); the rules object is kept
# alongside so that its id cannot be reused while cached.
_CACHE: dict[tuple[str, int], tuple[Any, Any]] = {}


def _cached(kind: str, rules: Any, build: Any) -> Any:
    entry = _CACHE.get((kind, id(rules)))
    if entry is not None and entry[0] is rules:
        return entry[1]
    if len(_CACHE) > 32:
        _CACHE.clear()
    value = build(rules)
    _CACHE[(kind, id(rules))] = (rules, value)
    return value


def label_index(rules: Rules) -> LabelIndex:
    """The label index of ``rules`` (cached: building it costs a little)."""
    return _cached("labels", rules, LabelIndex)


# --------------------------------------------------------------------------
# Label lines


_BULLET = re.compile(r"^\s*(?:[-–—•▪■►*·>»]+\s*|\(?\d{1,2}[.)]\s+|\(?[a-h][.)]\s+)?")
# After a label: the end of a parenthesis opened in it, a note in brackets
# ("(€)", "(en €)"), a required-field star, an abbreviation dot.
_AFTER_LABEL = re.compile(
    r"^(?:\.(?!\.))?[ \u00a0]*[)\]]*[ \u00a0]*(?:\((?![xX✓✔ ]\))[^)]{1,40}\))?[ \u00a0*?_]*"
    r"(?:\.(?!\.))?[ \u00a0]*"
)
_SEPARATOR = re.compile(r"^\s*(?:[:：=|\t]|[-–—](?=\s)|\.{2,}|…+|_{2,})[\s:.…_]*")
_LEADERS = re.compile(r"^[\s.…_]+$")
_LONGER_LABEL = re.compile(r"^\s*(?:[^\W\d_][\w'’-]*\s+){0,2}[^\W\d_][\w'’-]*\s*[:：]\s*")
_SKIP = re.compile(
    r"^\s*(?:page\s*\d+(?:\s*(?:/|sur)\s*\d+)?|\d+\s*/\s*\d+|-\s*\d+\s*-)\s*$"
    r"|dossier d.intention\W+page\s*\d+",
    re.IGNORECASE,
)
# What ends a form: "Fait à Béthune, le …", "Signature du porteur :", …, on
# word boundaries: a wrapped line of a description may start with
# "signature." or "Fait à partir de palettes".
_STOP = re.compile(
    r"^\s*(?:fait a\s+[^\W\d_][\w' -]{0,40}?,?\s+le\b|fait a\s*[.…_]{2,}|fait le\b"
    r"|signature(?:\s+(?:du|de|des)\b|\s*[:*]|\s*$)|date et signature\b|cadre reserve\b"
    r"|partie reservee\b|(?:le|la) (?:porteur|representant)\b.*\bsigne)",
)


@dataclass(frozen=True)
class LabelLine:
    """A text that starts with a label: its key and what follows it."""

    key: str
    value: str
    strength: int
    fuzzy: bool
    # The printed label or a variant of several words: not a common word.
    sure: bool = True


def parse_label_line(text: str, index: LabelIndex, *, fuzzy: bool = False) -> LabelLine | None:
    """``Label : value``, ``Label`` alone, or ``Label value`` (only for sure labels)."""
    bullet = _BULLET.match(text)
    start = bullet.end() if bullet else 0
    match = index.match(text, fuzzy=fuzzy, start=start)
    if match is None:
        return None
    rest = text[match.end :]
    rest = rest[_AFTER_LABEL.match(rest).end() :]  # type: ignore[union-attr]
    separator = _SEPARATOR.match(rest)
    penalty = 1 if match.fuzzy else 0
    sure = match.printed or match.size >= 2
    if separator:
        value = _clean_value(rest[separator.end() :])
        if value:
            return LabelLine(match.key, value, INLINE - penalty, match.fuzzy, sure)
        return LabelLine(match.key, "", LABEL_ALONE - penalty, match.fuzzy, sure)
    if not rest.strip():
        return LabelLine(match.key, "", LABEL_ALONE - penalty, match.fuzzy, sure)
    if only_ink(rest):
        # Ink beside the label that the OCR did not read: a value, lost.
        return LabelLine(match.key, UNREAD_INK, LABEL_ALONE - penalty, match.fuzzy, sure)
    # "Intitulé du projet : …", "Lieu de l'action : …": a label with a few
    # more words before the colon. Weaker than the label as printed.
    longer = _LONGER_LABEL.match(rest)
    if longer:
        value = _clean_value(rest[longer.end() :])
        strength = (INLINE if value else LABEL_ALONE) - 1 - penalty
        return LabelLine(match.key, value, strength, match.fuzzy, sure)
    # "Label value" with no separator: only a sure label, and a value that
    # looks like an answer rather than the rest of a sentence.
    if match.fuzzy or not (match.printed or match.size >= 2):
        return None
    value = _clean_value(rest)
    if not _looks_like_answer(value, index.kinds[match.key]):
        return None
    return LabelLine(match.key, value, NO_SEPARATOR, False)


def _clean_value(text: str) -> str:
    text = text.strip()
    if only_ink(text):
        return UNREAD_INK  # a value is there, unread by the OCR
    if _LEADERS.match(text) or not re.search(r"[^\W_]", text):
        return ""  # dotted leaders, stray punctuation, an OCR'd speck "_": nothing written
    text = re.sub(r"^[\s.…_]{2,}", "", text)
    text = re.sub(r"[\s.…_]{3,}$", "", text)
    return text.strip()


def _looks_like_answer(value: str, kind: str) -> bool:
    if not value:
        return False
    first = value.lstrip()[0]
    if first in "([{":
        return False  # the rest of a label: "État d'avancement (projets"
    if first.isupper() or first.isdigit() or _MARK.match(value) or first in "«\"'€":
        return True
    return kind in ("email", "phone", "date", "amount")


def _is_stop(line: str, index: LabelIndex) -> bool:
    return bool(_STOP.match(fold(line))) or index.is_heading(line)
