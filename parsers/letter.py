"""Finding the official letter to the mayor among a message's documents.

A candidature needs "un courrier officiel de demande de labellisation à
l'attention du maire". It is usually its own PDF, DOCX or scan, sometimes
the first page of the dossier's PDF. Each document is scored by the weighted
signs of ``rules.letter`` (regexes on folded text: "Monsieur le Maire", the
mayor's name, "demande de labellisation", a date, a closing formula…); the
best document at or above ``rules.letter.threshold`` is the letter. File
names only break ties.

The dossier itself mentions the mayor (its instructions say "joignez le
courrier adressé à Monsieur le Maire"), so inside a document that holds the
dossier only the pages *without* form labels are candidates, and they must
read like a letter: addressed to the mayor AND closed like one (a closing
formula, or a dated request for the label).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parsers.documents import DocumentText
from parsers.dossier import count_labels
from parsers.text import fold

if TYPE_CHECKING:
    from parsers.rules import Rules

# A page showing this many field labels is a form page, not a letter (a
# letterhead may show two or so: "Téléphone", "Adresse").
FORM_PAGE_LABELS = 3
# Signs that make letter-like text inside the dossier's own document a letter.
ADDRESSED = "addressed_to_mayor"
CLOSINGS = ("signature_block",)
DATED_REQUEST = ("label_request", "dated")


@dataclass(frozen=True)
class LetterFinding:
    """The letter found (or not), why, and every candidate's score."""

    letter_sha256: str | None
    # 1-based first page of the letter when it is part of a larger document
    # (the dossier's PDF); None when the whole document is the letter.
    page: int | None = None
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    # (sha256, page or None, score) of every candidate, best first.
    candidates: list[tuple[str, int | None, float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    sha256: str
    page: int | None
    score: float
    reasons: tuple[str, ...]
    hinted: bool
    eligible: bool


def score_letter_text(text: str, rules: Rules) -> tuple[float, tuple[str, ...]]:
    """The letter score of ``text`` and the names of the signs it shows."""
    folded = fold(text)
    score = 0.0
    reasons: list[str] = []
    for sign in rules.letter.signs:
        if sign.regex.search(folded):
            score += sign.weight
            reasons.append(sign.name)
    return score, tuple(reasons)


def _hinted(filename: str, rules: Rules) -> bool:
    folded = fold(filename)
    return any(re.search(fold(hint), folded) for hint in rules.letter.filename_hints)


def _reads_like_a_letter(reasons: tuple[str, ...]) -> bool:
    """The higher bar for text inside the dossier's own document."""
    if ADDRESSED not in reasons:
        return False
    return any(c in reasons for c in CLOSINGS) or all(s in reasons for s in DATED_REQUEST)


def _form_like(doc: DocumentText, rules: Rules) -> list[bool]:
    return [count_labels(page, rules) >= FORM_PAGE_LABELS for page in doc.pages]


def _page_runs(doc: DocumentText, form_pages: list[bool]) -> list[tuple[int, str]]:
    """(first page, text) of each run of consecutive pages without form labels."""
    runs: list[tuple[int, str]] = []
    start: int | None = None
    texts: list[str] = []
    for number, (text, is_form) in enumerate(zip(doc.pages, form_pages, strict=True), start=1):
        if is_form:
            if start is not None:
                runs.append((start, "\n".join(texts)))
            start, texts = None, []
            continue
        if start is None:
            start = number
        texts.append(text)
    if start is not None:
        runs.append((start, "\n".join(texts)))
    return runs


def _text_before_form(text: str, rules: Rules) -> str:
    """A one-page document (DOCX) holding both: the text above the form.

    The form starts where labels crowd together (a window of lines showing
    a form page's worth of labels), not at a letterhead's "Téléphone :".
    """
    lines = text.split("\n")
    window = 10
    for start in range(len(lines)):
        if count_labels("\n".join(lines[start : start + window]), rules) >= FORM_PAGE_LABELS:
            # The form begins at the window's first label line.
            first = next(n for n in range(start, start + window) if count_labels(lines[n], rules))
            return "\n".join(lines[:first])
    return text


def _candidates(doc: DocumentText, rules: Rules, dossier_sha256: str | None) -> list[_Candidate]:
    hinted = _hinted(doc.filename, rules)
    form_pages = _form_like(doc, rules)
    holds_form = doc.sha256 == dossier_sha256 or any(form_pages)
    if not holds_form:
        score, reasons = score_letter_text(doc.text, rules)
        return [_Candidate(doc.sha256, None, score, reasons, hinted, True)]
    out: list[_Candidate] = []
    if len(doc.pages) == 1:
        score, reasons = score_letter_text(_text_before_form(doc.pages[0], rules), rules)
        out.append(
            _Candidate(doc.sha256, None, score, reasons, hinted, _reads_like_a_letter(reasons))
        )
        return out
    for first, text in _page_runs(doc, form_pages):
        score, reasons = score_letter_text(text, rules)
        eligible = _reads_like_a_letter(reasons)
        out.append(_Candidate(doc.sha256, first, score, reasons, hinted, eligible))
    return out


def find_letter(
    documents: Sequence[DocumentText], *, rules: Rules, dossier_sha256: str | None = None
) -> LetterFinding:
    """The official letter among ``documents`` (a whole document or pages of the dossier)."""
    threshold = rules.letter.threshold
    bonus = rules.letter.filename_weight
    candidates: list[_Candidate] = []
    for doc in documents:
        if doc.pages:
            candidates.extend(_candidates(doc, rules, dossier_sha256))
    # File names only order candidates that already read as letters.
    candidates.sort(key=lambda c: (-(c.score + (bonus if c.hinted else 0.0)), c.page or 0))
    listed = [(c.sha256, c.page, c.score) for c in candidates]
    for candidate in candidates:
        if candidate.eligible and candidate.score >= threshold:
            reasons = candidate.reasons + (("filename",) if candidate.hinted else ())
            return LetterFinding(
                letter_sha256=candidate.sha256,
                page=candidate.page,
                score=candidate.score,
                reasons=reasons,
                candidates=listed,
            )
    best = candidates[0] if candidates else None
    return LetterFinding(
        letter_sha256=None,
        score=best.score if best else 0.0,
        reasons=best.reasons if best else (),
        candidates=listed,
    )
