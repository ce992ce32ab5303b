"""The dossier of a message: ``read_dossier`` and choosing each field's value.

Owns normalising the hits, the doubt of ticked choices, choosing the best
value per field across layers, which attachment is the dossier, and
``count_labels``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parsers.checks import is_required
from parsers.documents import DocumentText
from parsers.documents.marks import EMPTY_BOX, TICKED_BOX
from parsers.dossier.cells import (
    _Hit,
    _Reading,
    _replace_hit,
)
from parsers.dossier.document import (
    _read_document,
)
from parsers.dossier.ink import without_ink
from parsers.dossier.labels import (
    label_index,
    parse_label_line,
)
from parsers.dossier.marks import (
    _Ticks,
    _ticks,
)
from parsers.dossier.results import (
    CELL_PAIR,
    CHOICE_KINDS,
    FORM,
    INLINE,
    LABEL_ALONE,
    NO_SEPARATOR,
    DossierReading,
    FieldEvidence,
)
from parsers.normalize import Normalised, first_choice, normalize_value, words
from parsers.text import fold

if TYPE_CHECKING:
    from parsers.rules import Rules


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


_OCR_INVALID = "the OCR read a value that does not validate (a misread, not a missing value)"
_UNREAD = "ink where the value is that the OCR did not read (a value lost, not an empty box)"
_SPLIT_ADDRESS = "the OCR read a space inside the e-mail address (part of it may be lost)"

# Confidence of a reading by the strength of its label match.
_CONFIDENCE = {FORM: 1.0, CELL_PAIR: 0.95, INLINE: 0.9, LABEL_ALONE: 0.85, NO_SEPARATOR: 0.75}


@dataclass(frozen=True)
class _Read:
    """One hit normalised, with how sure the reading is and why not more."""

    result: Normalised
    confidence: float
    doubt: str | None = None


def _normalise(hit: _Hit, kind: str, rules: Rules, *, ink_tells: bool = False) -> _Read:
    """``ink_tells``: the OCR'd pages show boxes measured empty as well as ticked,
    so the ink measure tells them apart on this document."""
    confidence = _CONFIDENCE.get(hit.strength, 0.65)
    if hit.layer == "ocr":
        confidence *= 0.95
    raw, unread = without_ink(hit.raw)
    if unread:
        if not raw.strip():
            # Ink where the value is, that the OCR did not read: lost, not empty.
            return _Read(normalize_value(kind, "", rules), min(confidence, 0.4), _UNREAD)
        hit = _replace_hit(hit, raw=raw)
    if hit.layer in ("text", "table", "ocr") and kind == "multiline":
        hit = _replace_hit(hit, raw=_unwrap(hit.raw))
    if kind == "email":
        # An address wrapped after its hyphen, dot or "@": one word again.
        hit = _replace_hit(hit, raw=re.sub(r"(?<=[-.@_])[ \t]*\n[ \t]*", "", hit.raw.strip()))
    if kind in CHOICE_KINDS:
        ticks = _ticks(hit.raw, ocr=hit.layer == "ocr")
        if ticks.options is not None:
            result = _ticked_value(ticks.options, kind, rules)
            ocr = hit.layer == "ocr"
            named = _options_named(hit.raw, kind, rules) if ocr else 0
            doubt = _tick_doubt(
                ticks, result, kind=kind, ocr=ocr, options_named=named, ink_tells=ink_tells
            )
            return _Read(result, min(confidence, 0.4) if doubt else confidence, doubt)
    result = normalize_value(kind, hit.raw, rules)
    if (
        hit.layer == "ocr"
        and kind == "email"
        and result.ok
        and _split_before(hit.raw, result.value)
    ):
        return _Read(result, min(confidence, 0.4), _SPLIT_ADDRESS)
    if hit.layer == "ocr" and kind in _OCR_REPAIRS and (not result.ok or result.reason):
        # Letters the OCR confuses with digits or dots: taken only when the
        # repaired text validates, as the applicant's own would.
        repaired = _OCR_REPAIRS[kind](hit.raw)
        again = normalize_value(kind, repaired, rules) if repaired != hit.raw else result
        if again.ok and not again.reason:
            return _Read(again, confidence)
    return _Read(result, confidence)


def _split_before(raw: str, address: str) -> bool:
    """ "jean-pierre delattre@laposte.net": the address read is the end of a longer one.

    The OCR turned a dot of the address into a space: what it kept after the
    space is an address, but not the applicant's.
    """
    local = address.split("@", 1)[0]
    at = raw.casefold().find(f"{local.casefold()}@")
    return at > 1 and raw[at - 1] == " " and bool(re.match(r"[\w.-]", raw[at - 2]))


def _repair_phone(text: str) -> str:
    """ "07.81.22.45,19", "O6 12 34 56 78": OCR's commas and letters between digits."""
    return re.sub(
        r"(?<=[\d .])[,OolI|](?=[\d .]|$)|^[Oo](?=\d)",
        lambda m: {",": ".", "O": "0", "o": "0"}.get(m.group(0), "1"),
        text,
    )


def _repair_email(text: str) -> str:
    """ "jean.dupont@laposte,net": OCR's comma for a dot, spaces inside the address."""
    return re.sub(r"\s*,\s*", ".", text.strip())


_OCR_REPAIRS = {"phone": _repair_phone, "email": _repair_email}


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
    ticks: _Ticks,
    result: Normalised,
    *,
    kind: str,
    ocr: bool,
    options_named: int = 0,
    ink_tells: bool = False,
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
    # Every box ticked is a doubt, unless each tick is ink measured inside its
    # located box and the same pages show boxes measured empty (the measure
    # does tell them apart there), not a glyph the OCR guessed.
    all_ticked = kind == "criteria" and ticks.ticked >= 2 and not ticks.empty
    if ocr and all_ticked and (ticks.measured_ticks < ticks.ticked or not ink_tells):
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
    ink_tells = bool(reading.doc.ocr_pages) and any(
        EMPTY_BOX in page and TICKED_BOX in page for page in reading.doc.pages
    )
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
            read = _normalise(hit, kind, rules, ink_tells=ink_tells)
            if read.result.ok:
                chosen = (hit, read)
                break
            if first_failure is None or (read.doubt and not first_failure[1].doubt):
                first_failure = (hit, read)
        if chosen is None:
            assert first_failure is not None
            hit, read = first_failure
            if hit.layer == "ocr" and not read.doubt:
                # Text the OCR read that does not validate ("sophie.lefebvre-
                # dumont@laposte net", or specks read as "_" beside the label)
                # is a value misread, not a value missing.
                read = _Read(read.result, min(read.confidence, 0.4), _OCR_INVALID)
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
                again = _normalise(other, kind, rules, ink_tells=ink_tells)
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
        # (a label the OCR mangled); that is a doubt, not a gap to report. A
        # label read with nothing after it and no unread ink beside it (the
        # page reader marks ink no OCR word covers) is a box left empty.
        empty = {h.key for h in reading.hits if h.layer == "ocr" and h.sure and not h.raw}
        for key in rules.fields:
            if key in empty:
                continue
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
