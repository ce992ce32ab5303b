"""What reading a dossier gives back: ``FieldEvidence``, ``DossierReading``, shared constants.

The section headings of the generated form, the choice kinds, the strength
of each layer a value can be read from, the line limits of a value and the
confidence below which a value is uncertain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


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
