"""Glyphs without a Unicode mapping: restoring ``(cid:N)`` words from the labels.

Owns ``restore_unmapped`` and the glyph map learnt from the known label
vocabulary, and a document with its unmapped glyphs restored.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from parsers.documents import DocumentText
from parsers.dossier.labels import (
    _cached,
)
from parsers.dossier.results import (
    SECTION_HEADINGS,
)

if TYPE_CHECKING:
    from parsers.rules import Rules


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
