"""Reading the fields of a dossier d'intention, as a careful clerk would.

Input: the ``DocumentText`` of every attachment of a message. Output: which
one is the dossier, and each field's normalised value with the evidence it
came from (``FieldEvidence``: raw text, where it was read, which layer).

Values are looked for in layers, strongest first:

1. ``form``: AcroForm fields of a fillable PDF, matched by name (the field
   key), tooltip, or the label printed next to the field. A field present
   but empty means "left empty": the printed text cannot fill it (the
   form's own option labels would otherwise read as answers).
2. ``table``/``docx``: a label cell and its value cell (PDF ruled tables,
   Word tables, the two columns of a label/value page).
3. ``text``/``ocr``: ``Label : value`` lines, a label alone with its value on
   the following lines, several labels on one line; OCR text is matched with
   a tolerance for misread labels (difflib ratio on folded labels).

Ticked boxes (☒ ☑ ✓ ✔ [x] (x) X) select options of the choice fields; unticked
ones (☐ [ ] ( )) do not. Labels are matched on folded words (accents, case,
punctuation, spacing ignored), against the printed label and every variant
in ``rules.toml``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from parsers.checks import is_required
from parsers.documents import DocumentText, FormField
from parsers.documents.marks import UNSURE_BOX
from parsers.normalize import Normalised, first_choice, normalize_value, words
from parsers.text import fold

if TYPE_CHECKING:
    from parsers.rules import Rules

# Section headings of the generated form (mailbot.forms prints them before
# these fields); a heading ends the value above it.
SECTION_HEADINGS = {
    "intitule": "1. Le projet",
    "porteur_structure": "2. Le porteur du projet",
    "contact_nom": "3. Le référent",
}

CHOICE_KINDS = ("category", "nature", "criteria", "thematique")
# Strength of a reading, compared across layers; fuzzy (OCR) label matches
# count one less.
FORM, CELL_PAIR, INLINE, LABEL_ALONE, NO_SEPARATOR = 6, 5, 4, 3, 2
# Lines a value may run over, by field kind, when it continues past its label line.
_MAX_LINES = {
    "multiline": 80,
    "text": 3,
    "criteria": 10,
    "category": 6,
    "nature": 6,
    "date": 2,
    "amount": 2,
    "phone": 2,
    "thematique": 8,
}
_FUZZY_RATIO = 0.85


# A reading whose confidence is below this is UNCERTAIN: neither an answer to
# trust nor a gap to report; a human decides.
UNCERTAIN_BELOW = 0.6


@dataclass(frozen=True)
class FieldEvidence:
    """Where one field's value was read, as read and as normalised, and how sure.

    ``confidence`` (0–1) says how far the reading can be trusted: 1.0 for a
    form field, less for a value read beside a label, less again from OCR;
    below ``UNCERTAIN_BELOW`` the reading is uncertain (``uncertain``) and
    ``doubt`` says why (e.g. "marks not told apart"). ``page`` is the page
    the value was read on (None for a DOCX or a form field), ``raw`` the
    snippet as read, ``source`` where it was.
    """

    key: str
    value: Any
    raw: str
    source: str
    layer: str  # form, table, docx, text, ocr
    confidence: float = 1.0
    page: int | None = None
    doubt: str | None = None

    @property
    def uncertain(self) -> bool:
        return self.confidence < UNCERTAIN_BELOW


@dataclass(frozen=True)
class DossierReading:
    """The dossier d'intention of a message, read."""

    dossier_sha256: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, FieldEvidence] = field(default_factory=dict)
    # What could not be understood in the fields (each document's own
    # warnings stay on its DocumentText).
    warnings: tuple[str, ...] = ()
    # The dossier's document needs a human eye (cut, partly unreadable…).
    needs_review: bool = False
    # Distinct field labels seen in the dossier (form fields included); a
    # label that is a lone common word ("Contact") counts half.
    labels_found: float = 0.0
    # (sha256, labels found) of every document read, best first.
    candidates: tuple[tuple[str, float], ...] = ()
    # Fields whose reading is uncertain (their evidence says why), and those
    # of them that are required: such a dossier is neither complete nor
    # lacking that field; ``needs_review`` is set, and the applicant must not
    # be told the field is missing.
    uncertain: tuple[str, ...] = ()
    uncertain_required: tuple[str, ...] = ()


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
    if _LEADERS.match(text) or not re.search(r"\w", text):
        return ""  # dotted leaders, stray punctuation: nothing was written
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


# --------------------------------------------------------------------------
# Ticked boxes

# Boxes and radio buttons as drawn, typed, or read by OCR from a printed
# form (a selected ◉ often comes out as "@)" or "®", an empty ◯ as "6)" or
# "O)", an empty ☐ as "[]", "[|" or "[").
_TICKED = r"☒|☑|✓|✔|✗|✘|⊠|▣|■|◉|●|⦿|®|\[\s*[xX✓✔]\s*\]|\(\s*[xX✓✔•●]\s*\)|@\)?(?=\s*\S)"
_UNTICKED = (
    r"⍰|☐|□|❏|◻|▢|○|◯|\[\s*\]|\(\s*\)|\[[|lI_]\]?|\[(?=\s+\w)"
    r"|(?<![\w(])[6oO0]\)(?=\s)|(?<!\w)(?:L\]|LJ|C\])(?=\s)"
)
# A lone X before an option ("X Collaborative   Durable"): in a choice
# field's value a standalone X is a tick.
_BARE_X = r"(?<!\S)[xX][.,]?(?=\s+\w)"
_MARK = re.compile(rf"(?P<t>{_TICKED})|(?P<u>{_UNTICKED})|(?P<x>{_BARE_X})", re.MULTILINE)
# The boxes the page readers draw in the text (typed, drawn, or measured on a scan).
_BOX_GLYPH = re.compile(r"[☐☒⍰]")
_BOUNDARY = re.compile(r"\t|\n|\s{2,}|\s\|\s")
_YES_NO = re.compile(r"([^\W\d_][\w'’ -]{1,40}?)\s*[:=]\s*(oui|non|yes|no)\b", re.IGNORECASE)


def ticked_options(text: str, *, ocr: bool = False) -> list[str] | None:
    """Option texts next to ticked boxes; [] if all boxes are empty; None if no boxes.

    ``ocr``: a scan of a printed form, where a tick mark is often lost while
    the empty boxes are read: an option left without any box, among options
    with empty boxes and none ticked, is taken as the ticked one.
    """
    return _ticks(text, ocr=ocr).options


@dataclass(frozen=True)
class _Ticks:
    """Options read as ticked, and how they were told apart."""

    options: list[str] | None
    # The ticks were guessed (an OCR'd option without its box), not seen.
    guessed: bool = False
    # Boxes seen, ticked and empty.
    ticked: int = 0
    empty: int = 0
    # Boxes whose ink could not say ticked or empty (⍰, from a scan).
    unsure: int = 0


def _ticks(text: str, *, ocr: bool = False) -> _Ticks:
    marks = list(_MARK.finditer(text))
    if not marks:
        return _Ticks(_yes_no_options(text))
    ticked_marks = sum(1 for m in marks if m.lastgroup in ("t", "x"))
    empty_marks = len(marks) - ticked_marks
    if ocr and not ticked_marks:
        bare = [
            part.strip(" :;,-–")
            for part in _BOUNDARY.split(text)
            if part.strip() and not _MARK.search(part) and re.search(r"[^\W\d_]{3}", part)
        ]
        if bare:
            return _Ticks(bare, guessed=True, empty=empty_marks)
    before = text[: marks[0].start()]
    after = text[marks[-1].end() :]
    follow = bool(before.strip()) and not after.strip()
    ticked: list[str] = []
    for number, mark in enumerate(marks):
        if follow:
            begin = marks[number - 1].end() if number else 0
            segment = text[begin : mark.start()]
            pieces = _BOUNDARY.split(segment)
            option = pieces[-1] if pieces else ""
        else:
            end = marks[number + 1].start() if number + 1 < len(marks) else len(text)
            # lstrip(): an option's text may have wrapped to the next line.
            option = _BOUNDARY.split(text[mark.end() : end].lstrip())[0]
        option = option.strip(" :;,-–\t")
        if mark.lastgroup in ("t", "x") and option:
            ticked.append(option)
    unsure = sum(1 for m in marks if m.group(0) == UNSURE_BOX)
    return _Ticks(ticked, ticked=ticked_marks, empty=empty_marks, unsure=unsure)


def _yes_no_options(text: str) -> list[str] | None:
    """ "Collaborative : oui  Durable : non": the options answered yes."""
    answers = list(_YES_NO.finditer(text))
    if not answers:
        return None
    return [m.group(1).strip() for m in answers if m.group(2).lower() in ("oui", "yes")]


# --------------------------------------------------------------------------
# Hits: candidate values


@dataclass
class _Hit:
    key: str
    raw: str
    strength: int
    source: str
    layer: str
    density: int = 0
    order: int = 0
    page: int | None = None
    sure: bool = True


@dataclass
class _Reading:
    """Everything read from one document."""

    doc: DocumentText
    hits: list[_Hit] = field(default_factory=list)
    # Field key -> whether a sure label (printed, or several words) names it.
    labels: dict[str, bool] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)  # keys the form has fields for
    # Choice field key -> options whose form checkbox is ticked.
    ticks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label_score(self) -> float:
        """Labels seen; a lone common word ("Contact", "Mail") counts half."""
        return sum(1.0 if sure else 0.5 for sure in self.labels.values())


def _page_label(doc: DocumentText, page: int | None) -> str:
    name = doc.filename or "(no name)"
    return f"page {page} of {name}" if page else name


def _stream_hits(
    lines: Sequence[tuple[int | None, str]],
    index: LabelIndex,
    *,
    fuzzy: bool,
    describe: Callable[[int | None, str], str],
    layer: str,
) -> list[_Hit]:
    """Label lines and their values in a stream of (page, line) pairs."""
    hits: list[_Hit] = []
    current: _Hit | None = None
    boxes: str | None = None
    taken = 0
    i = 0
    while i < len(lines):
        page, line = lines[i]
        if not line.strip() or _SKIP.search(fold(line)):
            if current is not None and not line.strip():
                kind = index.kinds[current.key]
                if kind == "text":
                    current = None  # a blank line ends a short value
                elif kind == "multiline" and current.raw and not current.raw.endswith("\n"):
                    current.raw += "\n"  # a paragraph break, kept
            i += 1
            continue
        if _is_stop(line, index):
            current = None
            i += 1
            continue
        if not re.search(r"\w", line) and not _MARK.search(line):
            i += 1  # a rule, dots, OCR specks: neither a value nor an end
            continue
        found, used = _label_segments(lines, i, index, fuzzy=fuzzy)
        if not found:
            limit = _MAX_LINES.get(index.kinds[current.key], 1) if current else 0
            if current is not None and taken < limit and _continues(current, line, index):
                current.raw = f"{current.raw}\n{line}" if current.raw else line
                taken += 1
            else:
                current = None
                # Options with their boxes, read before their label (a scanned
                # cell whose label sits lower than its first line of options).
                boxes = line if _BOX_GLYPH.search(line) else None
            i += 1
            continue
        for label_line, lead in found:
            if label_line is None:
                if current is not None and _continues(current, lead, index):
                    current.raw = f"{current.raw}\n{lead}" if current.raw else lead
                continue
            raw = label_line.value
            if boxes and index.kinds[label_line.key] in CHOICE_KINDS and not _MARK.search(raw):
                raw = f"{boxes}\n{raw}" if raw else boxes
            boxes = None
            hit = _Hit(
                key=label_line.key,
                raw=raw,
                strength=label_line.strength,
                source=describe(page, line),
                layer=layer,
                page=page,
                sure=label_line.sure,
            )
            hits.append(hit)
            current, taken = hit, 0
        i += used
    return hits


def _continues(hit: _Hit, line: str, index: LabelIndex) -> bool:
    """Whether ``line`` carries on the value of ``hit``."""
    kind = index.kinds[hit.key]
    if kind in CHOICE_KINDS:
        # Options listed one per line under the label, or an option's text
        # wrapped after its box.
        if _MARK.search(line) or (not hit.raw and len(line.split()) <= 8):
            return True
        return bool(re.search(rf"(?:{_TICKED}|{_UNTICKED})\s*$", hit.raw))
    if kind == "multiline":
        return True
    if kind in ("date", "amount", "phone"):
        # "1er juin" / "2025": a short value broken over two lines.
        return not hit.raw or (len(line.split()) <= 3 and bool(re.search(r"\d", line)))
    if kind == "text":
        # A wrapped value goes on mid-sentence or with a short line; a full
        # sentence after a short answer is something else (a declaration),
        # and drawn boxes belong to a choice field.
        if _BOX_GLYPH.search(line):
            return False
        if not hit.raw:
            return True
        stripped = line.strip()
        if re.search(r"[.!?]$", hit.raw.strip()):
            return False
        return not (stripped.endswith(".") and len(stripped.split()) >= 6)
    return not hit.raw


def _label_segments(
    lines: Sequence[tuple[int | None, str]], i: int, index: LabelIndex, *, fuzzy: bool
) -> tuple[list[tuple[LabelLine | None, str]], int]:
    """Label lines found at line ``i``, and how many lines they use.

    A line may hold several cells (tab-separated: a table or two columns
    flattened); each cell may open a field, and cells before the first label
    continue the field above. Returns [(label line, "") or (None, lead text)].
    """
    line = lines[i][1]
    wrapped = _wrapped_label_cell(lines, i, index, fuzzy=fuzzy)
    if wrapped is not None:
        return [(wrapped, "")], 2
    if parse_label_line(line, index, fuzzy=fuzzy) is None and "\t" not in line:
        # A label wrapped over two or three lines.
        joined = line
        for extra in (1, 2):
            if i + extra >= len(lines) or not index.is_prefix(joined):
                break
            joined = f"{joined} {lines[i + extra][1]}"
            candidate = parse_label_line(joined, index, fuzzy=fuzzy)
            if candidate is not None and candidate.strength >= LABEL_ALONE - 1:
                return [(candidate, "")], 1 + extra
        return [], 1
    results: list[tuple[LabelLine | None, str]] = []
    pending: LabelLine | None = None
    lead: list[str] = []
    for segment in (s.strip() for s in line.split("\t")):
        if not re.search(r"\w", segment) and not _MARK.search(segment):
            continue  # stray punctuation between cells
        cell = parse_label_line(segment, index, fuzzy=fuzzy)
        if cell is not None:
            if pending is not None:
                results.append((pending, ""))
            pending = cell
        elif pending is None:
            lead.append(segment)
        elif not pending.value:
            # "Label<tab>value": the cell right of a label is its value.
            pending = _with_value(pending, segment, max(pending.strength, INLINE))
        else:
            pending = _with_value(pending, f"{pending.value}\t{segment}", pending.strength)
    if pending is not None:
        results.append((pending, ""))
    if not results:
        return [], 1
    if lead:
        results.insert(0, (None, "\t".join(lead)))
    return results, 1


def _wrapped_label_cell(
    lines: Sequence[tuple[int | None, str]], i: int, index: LabelIndex, *, fuzzy: bool
) -> LabelLine | None:
    """A label cell wrapped over two lines, its value in the cell beside it.

    "Date de réalisation ou date<tab>12/10/2025" then "prévisionnelle *": the
    label is the whole of the first cells, not the shorter label that its first
    line happens to hold ("Date de réalisation"), and the value is the cells
    right of it on both lines.
    """
    line = lines[i][1]
    if "\t" not in line or i + 1 >= len(lines):
        return None
    head, _, value = line.partition("\t")
    if not index.is_prefix(head.strip()):
        return None
    below = lines[i + 1][1]
    below_head, _, below_value = below.partition("\t")
    if len(below_head.split()) > 6:
        return None
    joined = parse_label_line(f"{head.strip()} {below_head.strip()}", index, fuzzy=fuzzy)
    if joined is None or joined.value or joined.strength < LABEL_ALONE - 1:
        return None
    shorter = parse_label_line(head.strip(), index, fuzzy=fuzzy)
    if shorter is not None and shorter.key == joined.key and not shorter.value:
        return None  # the first line holds the whole label already
    value = "\n".join(v.strip() for v in (value, below_value) if v.strip())
    return _with_value(joined, value, max(joined.strength, INLINE))


def _with_value(line: LabelLine, value: str, strength: int) -> LabelLine:
    return LabelLine(line.key, value, strength, line.fuzzy, line.sure)


def _inline_labels(text: str, index: LabelIndex) -> list[tuple[int, LabelLine]]:
    """``Label : value`` pairs further along one line ("… Courriel : x@y.fr")."""
    found: list[tuple[int, LabelLine]] = []
    for token in _tokens(text)[1:]:
        if found and token.start < found[-1][0]:
            continue
        match = index.match(text, start=token.start)
        if match is None or match.size < 1:
            continue
        after = text[match.end :]
        after = after[_AFTER_LABEL.match(after).end() :]  # type: ignore[union-attr]
        if not re.match(r"^\s*[:：]", after):
            continue
        parsed = parse_label_line(text[token.start :], index)
        if parsed is not None and parsed.strength >= INLINE:
            found.append((token.start, parsed))
    return found


def _explode_inline(hits: list[_Hit], index: LabelIndex) -> list[_Hit]:
    """Split values that hold further ``Label : value`` pairs."""
    out: list[_Hit] = []
    for hit in hits:
        if hit.strength < INLINE or not hit.raw or index.kinds[hit.key] == "multiline":
            out.append(hit)
            continue
        first_line, _, more = hit.raw.partition("\n")
        inner = _inline_labels(first_line, index)
        if not inner:
            out.append(hit)
            continue
        cut = inner[0][0]
        head = first_line[:cut].strip()
        out.append(_replace_hit(hit, raw=head))
        for number, (start, parsed) in enumerate(inner):
            end = inner[number + 1][0] if number + 1 < len(inner) else len(first_line)
            value = parse_label_line(first_line[start:end], index)
            raw = value.value if value else parsed.value
            if number == len(inner) - 1 and more:
                raw = f"{raw}\n{more}"
            out.append(_replace_hit(hit, key=parsed.key, raw=raw))
    return out


def _replace_hit(hit: _Hit, **changes: Any) -> _Hit:
    values = {**hit.__dict__, **changes}
    return _Hit(**values)


# --------------------------------------------------------------------------
# Tables


def _cell_hits(
    rows: Iterable[Sequence[str]],
    index: LabelIndex,
    *,
    fuzzy: bool,
    source: str,
    layer: str,
    page: int | None,
    pairs_only: bool = False,
) -> list[_Hit]:
    """A label cell and the value cell right of it (or under it, for header rows).

    ``pairs_only``: keep only label-cell / value-cell pairs (the rows of a
    two-column page, whose other text the column reading covers better).
    """
    hits: list[_Hit] = []
    rows = [_dedupe_cells(row) for row in rows]
    for number, row in enumerate(rows):
        labels = [_cell_label(cell, index, fuzzy) for cell in row]
        header = sum(1 for lab in labels if lab is not None and not lab.value) >= 2 and all(
            lab is not None or not cell.strip() for lab, cell in zip(labels, row, strict=True)
        )
        below = rows[number + 1] if number + 1 < len(rows) else None
        if header and _answers_row(below, row, index=index, fuzzy=fuzzy):
            assert below is not None
            for lab, value in zip(labels, below, strict=True):
                if lab is not None:
                    hits.append(_Hit(lab.key, value.strip(), CELL_PAIR, source, layer, page=page))
            continue
        j = 0
        while j < len(row):
            lab = labels[j]
            cell = row[j]
            if lab is None or lab.value:
                if not pairs_only and lab is not None and "\n" not in cell:
                    hits.append(_Hit(lab.key, lab.value, lab.strength, source, layer, page=page))
                elif not pairs_only:
                    hits.extend(
                        _lines_in_cell(
                            cell, index=index, fuzzy=fuzzy, source=source, layer=layer, page=page
                        )
                    )
                j += 1
                continue
            nxt = next((k for k in range(j + 1, len(row)) if row[k].strip()), None)
            if nxt is not None and labels[nxt] is None:
                strength = CELL_PAIR - (1 if lab.fuzzy else 0)
                hits.append(_Hit(lab.key, row[nxt].strip(), strength, source, layer, page=page))
                j = nxt + 1
            else:
                # A label cell with nothing beside it: the field is empty.
                hits.append(_Hit(lab.key, "", LABEL_ALONE, source, layer, page=page))
                j += 1
    return hits


def _answers_row(
    below: Sequence[str] | None, row: Sequence[str], *, index: LabelIndex, fuzzy: bool
) -> bool:
    """Whether ``below`` holds the answers to a row of labels (a header row)."""
    if below is None or len(below) != len(row):
        return False
    return not any(_cell_label(cell, index, fuzzy) for cell in below)


def _dedupe_cells(row: Sequence[str]) -> list[str]:
    # Merged cells come back once per grid column.
    out: list[str] = []
    for cell in row:
        cell = (cell or "").strip()
        if out and cell and cell == out[-1]:
            continue
        out.append(cell)
    return out


def _cell_label(cell: str, index: LabelIndex, fuzzy: bool) -> LabelLine | None:
    """The label a cell holds: the whole cell (wrapped label), or its first line."""
    if not cell.strip():
        return None
    flat = " ".join(cell.split())
    whole = parse_label_line(flat, index, fuzzy=fuzzy)
    if whole is not None and not whole.value:
        return whole
    first_line, _, rest = cell.partition("\n")
    line = parse_label_line(first_line, index, fuzzy=fuzzy)
    if line is None:
        return None
    if rest.strip():
        # Several lines: read them as lines (labels may follow); a marker value.
        return _with_value(line, line.value or rest.strip(), line.strength)
    return line


def _lines_in_cell(
    cell: str,
    *,
    index: LabelIndex,
    fuzzy: bool,
    source: str,
    layer: str,
    page: int | None,
) -> list[_Hit]:
    lines = [(page, line) for line in cell.split("\n")]
    return _stream_hits(lines, index, fuzzy=fuzzy, describe=lambda p, t: source, layer=layer)


# --------------------------------------------------------------------------
# Form fields


def _option_index(rules: Rules) -> dict[tuple[str, ...], tuple[str, str]]:
    return _cached("options", rules, _build_option_index)


def _build_option_index(rules: Rules) -> dict[tuple[str, ...], tuple[str, str]]:
    """Folded option text -> (field key, option value), for checkbox labels."""
    by_kind = {
        "category": rules.categories,
        "nature": rules.natures,
        "criteria": rules.criteria,
        "thematique": rules.thematiques,
    }
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for key, rule in rules.fields.items():
        choices = by_kind.get(str(rule.kind))
        if not choices:
            continue
        for value, choice in choices.items():
            texts = [choice.label, *choice.synonyms, value.replace("_", " ")]
            texts += list(getattr(choice, "sub_themes", []))
            for text in texts:
                words_ = tuple(words(text))
                if words_ and not all(w.isdigit() for w in words_):
                    out.setdefault(words_, (key, value))
    return out


def _form_target(ff: FormField, index: LabelIndex, rules: Rules) -> tuple[str, str | None] | None:
    """(field key, option value or None) that a form field stands for.

    By name first (the generated form names fields by key), then by tooltip,
    then by the name read as a label, then by the text printed beside it.
    """
    leaf = ff.name.rsplit(".", 1)[-1].strip()
    folded_leaf = re.sub(r"\W+", "_", fold(leaf)).strip("_")
    if folded_leaf in rules.fields:
        return folded_leaf, None
    for key, rule in rules.fields.items():
        if str(rule.kind) == "criteria" and folded_leaf.startswith(f"{key}_"):
            option = folded_leaf[len(key) + 1 :]
            if option in rules.criteria:
                return key, option
    widget = ff.widgets[0] if ff.widgets else None
    if ff.type == "checkbox":
        # A checkbox is one option of a choice field ("Collaborative").
        texts = [ff.tooltip, leaf.replace("_", " ")]
        texts += [widget.label_right, widget.label_left] if widget else []
        for text in texts:
            option = _option_named(text or "", index, rules)
            if option is not None:
                return option
        return None
    texts = [ff.tooltip, leaf.replace("_", " "), widget.label_left if widget else ""]
    for text in texts:
        label = parse_label_line(text or "", index) if text else None
        if label is not None and not label.value:
            return label.key, None
    return None


def _option_named(text: str, index: LabelIndex, rules: Rules) -> tuple[str, str] | None:
    """The (field key, option) a checkbox's text names: "Critères : Durable", "Durable"."""
    if not text.strip():
        return None
    options = _option_index(rules)
    label = parse_label_line(text, index)
    if label is not None and label.value:
        option = options.get(tuple(words(label.value)))
        if option is not None and option[0] == label.key:
            return option
    return options.get(tuple(words(text)))


def _form_hits(reading: _Reading, index: LabelIndex, rules: Rules) -> None:
    doc = reading.doc
    for ff in doc.form_fields.values():
        if ff.type in ("button", "signature"):
            continue
        target = _form_target(ff, index, rules)
        if target is None:
            continue
        key, option = target
        reading.covered.add(key)
        reading.labels[key] = True
        source = f"form field '{ff.name}' in {doc.filename}"
        if option is not None:
            reading.ticks.setdefault(key, [])
            if ff.checked:
                reading.ticks[key].append(option)
            continue
        raw = _form_value(ff, key=key, index=index, rules=rules)
        if raw:
            reading.hits.append(_Hit(key, raw, FORM, source, "form", density=99))
    for key, options in reading.ticks.items():
        if options:
            raw = "\n".join(options)
            source = f"form checkboxes '{key}_*' in {doc.filename}"
            reading.hits.append(_Hit(key, raw, FORM, source, "form", density=99))


def _form_value(ff: FormField, *, key: str, index: LabelIndex, rules: Rules) -> str | None:
    if ff.type == "radio":
        if not ff.checked:
            return None
        value = ff.value or ""
        kind = index.kinds[key]
        if normalize_value(kind, value, rules).ok:
            return value
        # Export values such as "0" or "Choix1": the printed option next to
        # the selected button says what it means.
        for widget in ff.widgets:
            if widget.on_state == value and widget.label_right:
                return widget.label_right
        return value
    if ff.type == "checkbox":
        return "oui" if ff.checked else None
    return ff.value


# --------------------------------------------------------------------------
# One document


def _describe_line(doc: DocumentText, layer: str) -> Any:
    def describe(page: int | None, line: str) -> str:
        shown = " ".join(line.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "…"
        where = _page_label(doc, page)
        if layer == "ocr":
            return f"ocr line '{shown}' on {where}"
        return f"line '{shown}' on {where}"

    return describe


# --------------------------------------------------------------------------
# Glyphs without a Unicode mapping

_UNMAPPED = re.compile(r"\(cid:(\d+)\)")
_GARBLED_WORD = re.compile(r"(?:[^\W\d_]|\(cid:\d+\))+")


def _vocabulary(rules: Rules) -> dict[int, list[str]]:
    return _cached("vocabulary", rules, _build_vocabulary)


def _build_vocabulary(rules: Rules) -> dict[int, list[str]]:
    """Words of the form's printed labels and options, by length."""
    texts: list[str] = [*SECTION_HEADINGS.values()]
    for rule in rules.fields.values():
        texts += [rule.label, *rule.variants]
    for choices in (rules.categories, rules.natures, rules.criteria, rules.thematiques):
        for choice in choices.values():
            texts += [choice.label, *choice.synonyms, *getattr(choice, "sub_themes", [])]
    out: dict[int, list[str]] = {}
    for text in texts:
        for word in re.findall(r"[^\W\d_]+", text):
            if word not in out.setdefault(len(word), []):
                out[len(word)].append(word)
    return out


# The letters learnt from the last documents (the same document's cells are
# restored one by one).
_learnt: dict[tuple[int, str], tuple[Any, dict[str, str], dict[str, str]]] = {}


def restore_unmapped(text: str, rules: Rules, *, learn_from: str | None = None) -> str:
    """Letters printed with glyphs that have no Unicode mapping, restored.

    A PDF "printed" by some drivers keeps the form's accented letters as
    glyphs pdfminer cannot name: "Intitul(cid:1) de l'action". A word of the
    form's own labels that fits ("Intitulé") gives the letter; the letter a
    glyph number stands for most often in such words (of ``learn_from``,
    default ``text``) restores it in the other words ("Compl(cid:1)tez");
    what stays unknown becomes U+FFFD.
    """
    if "(cid:" not in text:
        return text
    source = learn_from or text
    learnt = _learnt.get((id(rules), source))
    if learnt is None or learnt[0] is not rules:
        if len(_learnt) > 8:
            _learnt.clear()
        learnt = _learnt[(id(rules), source)] = (rules, *_learn_glyphs(source, rules))
    _, resolved, best = learnt

    def restore_word(match: re.Match[str]) -> str:
        word = match.group(0)
        if word in resolved:
            return resolved[word]
        if "(cid:" not in word or not re.search(r"[^\W\d_]", _UNMAPPED.sub("", word)):
            return word
        return _UNMAPPED.sub(lambda m: best.get(m.group(1), "\ufffd"), word)

    text = _GARBLED_WORD.sub(restore_word, text)
    return _UNMAPPED.sub("\ufffd", text)


def _learn_glyphs(text: str, rules: Rules) -> tuple[dict[str, str], dict[str, str]]:
    """(garbled word -> label word it fits, glyph number -> its likeliest letter)."""
    vocabulary = _vocabulary(rules)
    votes: dict[str, dict[str, int]] = {}
    resolved: dict[str, str] = {}
    for match in _GARBLED_WORD.finditer(text):
        word = match.group(0)
        if word in resolved or "(cid:" not in word:
            continue
        if not re.search(r"[^\W\d_]", _UNMAPPED.sub("", word)):
            continue
        parts = _UNMAPPED.split(word)  # letters, glyph number, letters, ...
        pattern = "".join(
            re.escape(part) if number % 2 == 0 else r"([^\W\d_])"
            for number, part in enumerate(parts)
        )
        length = sum(len(p) if n % 2 == 0 else 1 for n, p in enumerate(parts))
        fits = {
            candidate
            for candidate in vocabulary.get(length, ())
            if re.fullmatch(pattern, candidate, re.IGNORECASE)
        }
        if len(fits) != 1:
            continue
        found = fits.pop()
        resolved[word] = found
        letters = re.fullmatch(pattern, found, re.IGNORECASE).groups()  # type: ignore[union-attr]
        for cid, letter in zip(parts[1::2], letters, strict=True):
            counts = votes.setdefault(cid, {})
            counts[letter.lower()] = counts.get(letter.lower(), 0) + 1
    best = {cid: max(counts, key=counts.__getitem__) for cid, counts in votes.items()}
    return resolved, best


def _restored(doc: DocumentText, rules: Rules) -> DocumentText:
    """``doc`` with its unmapped glyphs restored (see ``restore_unmapped``)."""
    if not any("(cid:" in page for page in doc.pages):
        return doc
    whole = "\n".join(doc.pages)

    def restore(text: str) -> str:
        return restore_unmapped(text, rules, learn_from=whole)

    return replace(
        doc,
        pages=tuple(restore(p) for p in doc.pages),
        columns=tuple(restore(c) for c in doc.columns),
        tables=tuple(
            tuple(tuple(tuple(restore(c) for c in row) for row in t) for t in tables)
            for tables in doc.tables
        ),
        column_rows=tuple(
            tuple(tuple(restore(c) for c in row) for row in rows) for rows in doc.column_rows
        ),
    )


def _read_document(doc: DocumentText, rules: Rules) -> _Reading:
    index = label_index(rules)
    doc = _restored(doc, rules)
    reading = _Reading(doc)
    _form_hits(reading, index, rules)
    ocr_pages = set(doc.ocr_pages)
    cell_hits: list[_Hit] = []
    streams: dict[str, list[tuple[int | None, str]]] = {"text": [], "ocr": []}
    all_tables = _rejoined_tables(doc, index)
    for number, page_text in enumerate(doc.pages, start=1):
        page = number if doc.kind in ("pdf", "image") else None
        tables = all_tables[number - 1] if number - 1 < len(all_tables) else ()
        # A two-column page reads column by column; otherwise line by line.
        columns = doc.columns[number - 1] if number - 1 < len(doc.columns) else ""
        if columns and number in ocr_pages and _better_view(columns, page_text, index) != columns:
            columns = ""  # and its (left block, right block) rows are not pairs either
        cell_hits += _page_cells(
            doc,
            number=number,
            page=page,
            index=index,
            is_ocr=number in ocr_pages,
            tables=tables,
            columns=bool(columns),
        )
        stream = streams["ocr" if number in ocr_pages else "text"]
        stream.extend((page, line) for line in (columns or page_text).split("\n"))
    line_hits: list[_Hit] = []
    for kind, lines in streams.items():
        # One stream per document, so that a value runs on across a page break.
        layer = "ocr" if kind == "ocr" else ("docx" if doc.kind == "docx" else "text")
        describe = _describe_line(doc, layer)
        hits = _stream_hits(lines, index, fuzzy=kind == "ocr", describe=describe, layer=layer)
        line_hits += _explode_inline(hits, index)
    # Where a table has a field's label cell, the table says what the field
    # holds (even nothing); the same words read as lines do not.
    in_tables = {(h.page, h.key) for h in cell_hits}
    page_hits = cell_hits + [h for h in line_hits if (h.page, h.key) not in in_tables]
    density: dict[int | None, set[str]] = {}
    for hit in page_hits:
        density.setdefault(hit.page, set()).add(hit.key)
    for order, hit in enumerate(page_hits):
        hit.density = max(hit.density, len(density[hit.page]))
        hit.order = order
    reading.hits.extend(page_hits)
    for hit in reading.hits:
        reading.labels[hit.key] = reading.labels.get(hit.key, False) or hit.sure
    return reading


def _better_view(columns: str, lines: str, index: LabelIndex) -> str:
    """The reading of an OCR'd page that finds more values: column by column, or line by line.

    A scanned two-column table whose rows sit close together is found to
    have two columns, but its labels then cannot be paired with their values;
    read line by line, each row gives "label<tab>value".
    """

    def found(text: str) -> int:
        pairs = [(None, line) for line in text.split("\n")]
        hits = _stream_hits(pairs, index, fuzzy=True, describe=lambda p, t: "", layer="ocr")
        return len({h.key for h in hits if h.raw.strip()})

    return lines if found(lines) > found(columns) else columns


def _page_cells(
    doc: DocumentText,
    *,
    number: int,
    page: int | None,
    index: LabelIndex,
    is_ocr: bool,
    tables: Sequence[Any],
    columns: bool = True,
) -> list[_Hit]:
    """Hits from the tables of one page and from its two-column rows."""
    layer = "ocr" if is_ocr else ("docx" if doc.kind == "docx" else "text")
    table_layer = "ocr" if is_ocr else ("docx" if doc.kind == "docx" else "table")
    where = _page_label(doc, page)
    hits: list[_Hit] = []
    for table in tables:
        kind = "docx table" if doc.kind == "docx" else "table row"
        source = f"{kind} on {where}" if page else f"{kind} in {doc.filename}"
        hits += _cell_hits(table, index, fuzzy=is_ocr, source=source, layer=table_layer, page=page)
    rows = doc.column_rows[number - 1] if columns and number - 1 < len(doc.column_rows) else ()
    if rows:
        source = f"two-column row on {where}"
        hits += _cell_hits(
            rows, index, fuzzy=is_ocr, source=source, layer=layer, page=page, pairs_only=True
        )
    return _explode_inline(hits, index)


def _rejoined_tables(doc: DocumentText, index: LabelIndex) -> list[tuple[Any, ...]]:
    """The tables of each page, a row split across a page break made whole again.

    A table row that starts at the foot of a page and goes on at the top of
    the next (its label cell continued, or empty) is one row: it is given on
    the first page, and dropped from the second.
    """
    pages: list[list[Any]] = [list(tables) for tables in doc.tables]
    for number in range(1, len(pages)):
        before, after = pages[number - 1], pages[number]
        if not before or not after or not before[-1] or not after[0]:
            continue
        last, first = before[-1][-1], after[0][0]
        if len(last) != len(first) or len(first) < 2:
            continue
        label_cell, next_label = last[0].strip(), first[0].strip()
        if next_label and _cell_label(next_label, index, False) is not None:
            continue  # the next page starts a new row
        if not (
            _cell_label(label_cell, index, False) or index.is_prefix(" ".join(label_cell.split()))
        ):
            continue
        merged = tuple(
            _join_parts(a, b, label=column == 0)
            for column, (a, b) in enumerate(zip(last, first, strict=True))
        )
        before[-1] = (*before[-1][:-1], merged)
        after[0] = after[0][1:]
        if not after[0]:
            after.pop(0)
    return [tuple(tables) for tables in pages]


def _join_parts(top: str, bottom: str, *, label: bool) -> str:
    """Two parts of one cell, cut by a page break."""
    top, bottom = top.strip(), bottom.strip()
    if not top or not bottom:
        return top or bottom
    if label:
        return f"{top}\n{bottom}"
    # A cut after a full sentence, the next part starting anew: a paragraph break.
    if re.search(r"[.!?…]$", top) and (bottom[0].isupper() or bottom[0].isdigit()):
        return f"{top}\n\n{bottom}"
    return f"{top}\n{bottom}"


# --------------------------------------------------------------------------
# Choosing values


def _unwrap(text: str) -> str:
    """Re-join lines that the page layout wrapped (not the applicant's own breaks)."""
    out: list[str] = []
    for line in text.split("\n"):
        line = line.strip()
        if out and out[-1] and line and re.search(r"\w-$", out[-1]) and line[0].isalnum():
            out[-1] = f"{out[-1]}{line}"  # "Nord-Pas-" + "de-Calais": the hyphen is the word's
        elif out and out[-1] and line and _wrapped(out[-1], line):
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
    return "\n".join(out)


def _wrapped(previous: str, line: str) -> bool:
    if re.search(r"[.!?:;…]$", previous):
        return False
    return not (line[0].isupper() or line[0].isdigit() or line[0] in "-•*–—")


# Confidence of a reading by the strength of its label match.
_CONFIDENCE = {FORM: 1.0, CELL_PAIR: 0.95, INLINE: 0.9, LABEL_ALONE: 0.85, NO_SEPARATOR: 0.75}


@dataclass(frozen=True)
class _Read:
    """One hit normalised, with how sure the reading is and why not more."""

    result: Normalised
    confidence: float
    doubt: str | None = None


def _normalise(hit: _Hit, kind: str, rules: Rules) -> _Read:
    confidence = _CONFIDENCE.get(hit.strength, 0.65)
    if hit.layer == "ocr":
        confidence *= 0.95
    if hit.layer in ("text", "table", "ocr") and kind == "multiline":
        hit = _replace_hit(hit, raw=_unwrap(hit.raw))
    if kind in CHOICE_KINDS:
        ticks = _ticks(hit.raw, ocr=hit.layer == "ocr")
        if ticks.options is not None:
            result = _ticked_value(ticks.options, kind, rules)
            ocr = hit.layer == "ocr"
            named = _options_named(hit.raw, kind, rules) if ocr else 0
            doubt = _tick_doubt(ticks, result, kind=kind, ocr=ocr, options_named=named)
            return _Read(result, min(confidence, 0.4) if doubt else confidence, doubt)
    return _Read(normalize_value(kind, hit.raw, rules), confidence)


def _options_named(text: str, kind: str, rules: Rules) -> int:
    """How many of the choice field's options ``text`` names (by their printed label)."""
    choices = {
        "category": rules.categories,
        "nature": rules.natures,
        "criteria": rules.criteria,
        "thematique": rules.thematiques,
    }[kind]
    folded = f" {' '.join(words(text))} "
    count = 0
    for choice in choices.values():
        label = [w for w in words(choice.label) if not w.isdigit()]
        if label and f" {' '.join(label)} " in folded:
            count += 1
    return count


def _tick_doubt(
    ticks: _Ticks, result: Normalised, *, kind: str, ocr: bool, options_named: int = 0
) -> str | None:
    """Why the ticks of a choice field cannot be trusted, or None."""
    if ticks.unsure:
        return "a box neither clearly ticked nor empty (ink measured on the image)"
    if ticks.guessed:
        return "no tick seen; the option was guessed from a box missing in the OCR"
    if result.reason and result.reason.startswith("several options ticked"):
        return "several boxes read as ticked where one is expected"
    if ocr and not ticks.ticked and ticks.empty:
        return "no box read as ticked in the OCR (a tick may be lost)"
    if ocr and kind == "criteria" and ticks.ticked >= 2 and not ticks.empty:
        return "every box read as ticked in the OCR: ticked and empty boxes not told apart"
    if ocr and options_named > ticks.ticked + ticks.empty + ticks.unsure:
        return "an option without its box in the OCR (its tick may be lost)"
    return None


def _ticked_value(ticked: list[str], kind: str, rules: Rules) -> Normalised:
    """One option per ticked box: the first option named after (or before) it."""
    if not ticked:
        return Normalised(None, "no box ticked")
    keys = []
    for text in ticked:
        key = first_choice(text, kind, rules)
        if key is not None and key not in keys:
            keys.append(key)
    if not keys:
        return Normalised(None, f"ticked option not recognised: {' / '.join(ticked)}")
    if kind == "criteria":
        return Normalised([k for k in rules.criteria if k in keys])
    if len(keys) > 1:
        # Only one category, nature or thematique may be chosen.
        return Normalised(None, f"several options ticked: {', '.join(keys)}")
    return Normalised(keys[0])


def _choose(reading: _Reading, rules: Rules) -> tuple[dict, dict, list[str]]:
    index = label_index(rules)
    fields: dict[str, Any] = {}
    evidence: dict[str, FieldEvidence] = {}
    warnings: list[str] = []
    by_key: dict[str, list[_Hit]] = {}
    for hit in reading.hits:
        if hit.key in reading.covered and hit.layer != "form":
            continue  # the form has this field: its printed text is not an answer
        by_key.setdefault(hit.key, []).append(hit)
    for key in rules.fields:
        hits = [h for h in by_key.get(key, []) if h.raw.strip()]
        if not hits:
            continue
        hits.sort(key=lambda h: (-h.strength, -h.density, h.order))
        kind = index.kinds[key]
        chosen: tuple[_Hit, _Read] | None = None
        first_failure: tuple[_Hit, _Read] | None = None
        for hit in hits:
            read = _normalise(hit, kind, rules)
            if read.result.ok:
                chosen = (hit, read)
                break
            if first_failure is None or (read.doubt and not first_failure[1].doubt):
                first_failure = (hit, read)
        if chosen is None:
            assert first_failure is not None
            hit, read = first_failure
            # Nothing read: sure of that unless the reading itself is in doubt.
            evidence[key] = FieldEvidence(
                key,
                None,
                hit.raw,
                hit.source,
                hit.layer,
                confidence=read.confidence,
                page=hit.page,
                doubt=read.doubt,
            )
            if read.result.reason and read.result.reason != "empty":
                warnings.append(f"{key}: {read.result.reason} ({hit.source})")
            continue
        hit, read = chosen
        if read.doubt and first_failure is None:
            # An uncertain choice: a weaker reading of the same field that is
            # sure (the same boxes in a table cell) wins over it.
            for other in hits[hits.index(hit) + 1 :]:
                again = _normalise(other, kind, rules)
                if again.result.ok and not again.doubt:
                    hit, read = other, again
                    break
        fields[key] = read.result.value
        evidence[key] = FieldEvidence(
            key,
            read.result.value,
            hit.raw,
            hit.source,
            hit.layer,
            confidence=read.confidence,
            page=hit.page,
            doubt=read.doubt,
        )
        if read.result.reason:
            warnings.append(f"{key}: {read.result.reason} ({hit.source})")
        if read.doubt:
            warnings.append(f"{key}: uncertain, {read.doubt} ({hit.source})")
    doc = reading.doc
    if doc.ocr_pages and not doc.form_fields:
        # Read by OCR: a required field not found at all may be there, unread
        # (a label the OCR mangled); that is a doubt, not a gap to report.
        for key in rules.fields:
            if key not in evidence and is_required(key, fields, rules):
                doubt = "label not found in the OCR text (it may be there, unread)"
                source = f"OCR of {doc.filename}"
                evidence[key] = FieldEvidence(
                    key, None, "", source, "ocr", confidence=0.3, doubt=doubt
                )
                warnings.append(f"{key}: uncertain, {doubt} ({source})")
    return fields, evidence, warnings


# --------------------------------------------------------------------------
# The dossier of a message


def _hinted(name: str, hints: Sequence[str]) -> bool:
    folded = fold(name)
    return any(re.search(fold(h), folded) for h in hints)


def read_dossier(documents: Sequence[DocumentText], *, rules: Rules) -> DossierReading:
    """Find the dossier d'intention among ``documents`` and read its fields."""
    readings = [_read_document(doc, rules) for doc in documents if doc.pages or doc.form_fields]
    hints = rules.pieces.dossier_filename_hints
    ranked = sorted(
        readings,
        key=lambda r: (
            -r.label_score,
            not _hinted(r.doc.filename, hints),
            -sum(1 for h in r.hits if h.raw.strip()),
        ),
    )
    candidates = tuple((r.doc.sha256, r.label_score) for r in ranked)
    unreadable = [d for d in documents if d.needs_review and not (d.pages or d.form_fields)]
    best = ranked[0] if ranked else None
    if best is None or best.label_score < rules.pieces.dossier_min_labels:
        warnings = []
        if unreadable:
            names = ", ".join(d.filename for d in unreadable)
            warnings.append(f"no dossier found; unreadable attachment(s) may hold it: {names}")
        return DossierReading(
            dossier_sha256=None,
            warnings=tuple(warnings),
            needs_review=bool(unreadable),
            labels_found=best.label_score if best else 0.0,
            candidates=candidates,
        )
    if best.doc.kind == "image":
        best = _with_other_photos(best, ranked[1:])
    fields, evidence, warnings = _choose(best, rules)
    doc = best.doc
    uncertain = tuple(key for key, ev in evidence.items() if ev.uncertain)
    uncertain_required = tuple(k for k in uncertain if is_required(k, fields, rules))
    return DossierReading(
        dossier_sha256=doc.sha256,
        fields=fields,
        evidence=evidence,
        warnings=tuple(warnings),
        needs_review=doc.needs_review or bool(uncertain_required),
        labels_found=best.label_score,
        candidates=candidates,
        uncertain=uncertain,
        uncertain_required=uncertain_required,
    )


def _with_other_photos(best: _Reading, others: Sequence[_Reading]) -> _Reading:
    """A dossier photographed page by page: the other photos' labels and values too.

    One picture per page (phone photos, JPEG scans): every other picture
    where form labels were read is a page of the same dossier.
    """
    pages = [r for r in others if r.doc.kind == "image" and r.label_score >= 1]
    if not pages:
        return best
    merged = _Reading(best.doc, list(best.hits), dict(best.labels), set(best.covered))
    offset = len(best.hits)
    for reading in pages:
        for hit in reading.hits:
            merged.hits.append(_replace_hit(hit, order=hit.order + offset))
        offset += len(reading.hits)
        for key, sure in reading.labels.items():
            merged.labels[key] = merged.labels.get(key, False) or sure
    return merged


def count_labels(text: str, rules: Rules) -> float:
    """Distinct field labels opening a line of ``text``; a common word counts half.

    A form page shows many; a letter's letterhead ("Téléphone", "Adresse")
    a couple at most.
    """
    index = label_index(rules)
    keys: dict[str, bool] = {}
    for line in text.split("\n"):
        for segment in line.split("\t"):
            parsed = parse_label_line(segment, index)
            if parsed is not None and parsed.strength >= LABEL_ALONE:
                keys[parsed.key] = keys.get(parsed.key, False) or parsed.sure
    return sum(1.0 if sure else 0.5 for sure in keys.values())
