"""Answers typed in the body of a message: ``Lieu : …`` lines, values under a quoted notice.

An applicant told that a field is missing often answers in the message
itself rather than with a new form: ``Lieu : Quartier du Perroy`` on a line
of their own, or the value typed under the line of our quoted notice that
names the field (``> - le champ « Lieu de réalisation … »``). Both are read
here with the dossier reader's own label index (``parse_label_line``: the
printed labels, their variants, accents and case aside) and normalised by
``normalize_value``, exactly as a value read from a form.

What the applicant quotes is never an answer: quoted lines (``>``), the
original message under an Outlook-style header block (``De : … Envoyé :``)
and what follows a signature delimiter are left out, so our own notice,
which lists labels, cannot fill anything. A quoted line only serves to name
the field that the applicant's next lines answer.

Pure: text in, a ``DossierReading`` out (fields and ``FieldEvidence`` whose
source is "message body" and whose snippet is the line read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parsers.dossier.labels import label_index, parse_label_line
from parsers.dossier.results import INLINE, DossierReading, FieldEvidence
from parsers.normalize import normalize_value

if TYPE_CHECKING:
    from parsers.dossier.labels import LabelIndex
    from parsers.rules import Rules

SOURCE = "message body"
LAYER = "body"
# How sure an answer typed by the applicant is: what they wrote, read as is.
CONFIDENCE = 0.95
# A snippet kept as evidence is cut to this many characters.
SNIPPET_MAX_LENGTH = 200
# Lines a multi-line answer (a description) may run over.
MAX_ANSWER_LINES = 40

_QUOTED = re.compile(r"^\s*>")
# The line that introduces the original message below a top-posted answer.
_ORIGINAL_MARKER = re.compile(
    r"^\s*(?:-{2,}\s*(?:message d.origine|original message|message transf[ée]r[ée]"
    r"|forwarded message)\s*-{2,}|_{8,})\s*$",
    re.IGNORECASE,
)
# Outlook quotes nothing: a header block "De : … / Envoyé : …" opens the original.
_HEADER_FROM = re.compile(r"^\s*\*?(?:de|from)\s*\*?\s*:\s*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:envoy[ée]|sent|date|[àa]|to|objet|subject)\s*\*?\s*:", re.IGNORECASE
)
_SIGNATURE = re.compile(r"^-- ?$")
# A quoted line of our notice naming a field: « label ».
_GUILLEMETS = re.compile(r"«\s*([^»]{2,200}?)\s*»")


@dataclass(frozen=True)
class _Line:
    text: str
    quoted: bool


def read_body_answers(text: str, *, rules: Rules) -> DossierReading:
    """The field values the applicant typed in ``text`` (a message's plain body)."""
    index = label_index(rules)
    fields: dict[str, object] = {}
    evidence: dict[str, FieldEvidence] = {}
    warnings: list[str] = []
    for key, raw, snippet in _answers(_own_lines(text), index):
        if key in fields:
            continue  # the first answer given for a field counts
        kind = index.kinds[key]
        normalised = normalize_value(kind, raw, rules)
        if not normalised.ok:
            warnings.append(f"{key}: {normalised.reason or 'not recognised'} ({SOURCE})")
            continue
        fields[key] = normalised.value
        evidence[key] = FieldEvidence(
            key,
            normalised.value,
            snippet[:SNIPPET_MAX_LENGTH],
            SOURCE,
            LAYER,
            confidence=CONFIDENCE,
        )
    return DossierReading(
        dossier_sha256=None,
        fields=fields,
        evidence=evidence,
        warnings=tuple(warnings),
        labels_found=float(len(fields)),
    )


def _own_lines(text: str) -> list[_Line]:
    """The body's lines, each marked quoted or not; what follows the original marker is dropped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[_Line] = []
    for number, line in enumerate(lines):
        if _SIGNATURE.match(line) or _ORIGINAL_MARKER.match(line):
            break
        if _HEADER_FROM.match(line) and any(
            _HEADER_NEXT.match(following) for following in lines[number + 1 : number + 4]
        ):
            break
        out.append(_Line(line.rstrip(), bool(_QUOTED.match(line))))
    return out


def _answers(lines: list[_Line], index: LabelIndex) -> list[tuple[str, str, str]]:
    """(field key, raw value, snippet) of every answer, in the order they were typed."""
    found: list[tuple[str, str, str]] = []
    asked: str | None = None  # the field a quoted line just named
    position = 0
    while position < len(lines):
        line = lines[position]
        if line.quoted:
            named = _field_named(line.text, index)
            # A quoted line naming nothing keeps the question open only when
            # it continues the notice (an empty quoted line does not).
            asked = named if named is not None else (asked if line.text.strip(" >") else None)
            position += 1
            continue
        if not line.text.strip():
            position += 1
            continue
        parsed = parse_label_line(line.text, index)
        if parsed is not None and parsed.value and parsed.strength >= INLINE - 1:
            value, used = _continued(
                lines, position, first=parsed.value, kind=index.kinds[parsed.key], index=index
            )
            found.append((parsed.key, value, line.text.strip()))
            position += used
            asked = None
            continue
        if asked is not None:
            value, used = _continued(
                lines, position, first=line.text.strip(), kind=index.kinds[asked], index=index
            )
            found.append((asked, value, line.text.strip()))
            position += used
            asked = None
            continue
        position += 1
    return found


def _continued(
    lines: list[_Line], start: int, *, first: str, kind: str, index: LabelIndex
) -> tuple[str, int]:
    """A value and the lines it took: one line, or a paragraph for a multi-line field."""
    if kind != "multiline":
        return first, 1
    parts = [first]
    position = start + 1
    while position < len(lines) and len(parts) < MAX_ANSWER_LINES:
        line = lines[position]
        if line.quoted or not line.text.strip():
            break
        parsed = parse_label_line(line.text, index)
        if parsed is not None and parsed.strength >= INLINE - 1:
            break
        parts.append(line.text.strip())
        position += 1
    return "\n".join(parts), position - start


def _field_named(text: str, index: LabelIndex) -> str | None:
    """The field a quoted line names: « label » of our notice, or a quoted ``Label :`` line."""
    body = re.sub(r"^[\s>]+", "", text)
    for inner in _GUILLEMETS.findall(body):
        parsed = parse_label_line(inner, index)
        if parsed is not None and not parsed.value:
            return parsed.key
    parsed = parse_label_line(body, index)
    if parsed is not None and not parsed.value:
        return parsed.key
    return None
