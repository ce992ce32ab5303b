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

On OCR'd pages, ``▒`` marks ink that no OCR word covers: a label with
nothing after it and no such ink is a box left empty (the field is
missing); ink there is a value the OCR lost (a doubt, the dossier goes to
review).

The package: ``results`` (what a reading gives back), ``labels`` (label
index and matching), ``marks`` (ticked boxes), ``ink`` (unread ink),
``cells`` (hits from lines and table cells), ``forms`` (form-field values),
``glyphs`` (unmapped-glyph restoration), ``document`` (one document) and
``reading`` (``read_dossier``).
"""

from parsers.dossier.glyphs import (
    restore_unmapped,
)
from parsers.dossier.labels import (
    LabelIndex,
    LabelLine,
    LabelMatch,
    label_index,
    parse_label_line,
)
from parsers.dossier.marks import (
    ticked_options,
)
from parsers.dossier.reading import (
    count_labels,
    read_dossier,
)
from parsers.dossier.results import (
    CELL_PAIR,
    CHOICE_KINDS,
    FORM,
    INLINE,
    LABEL_ALONE,
    NO_SEPARATOR,
    SECTION_HEADINGS,
    UNCERTAIN_BELOW,
    DossierReading,
    FieldEvidence,
)

__all__ = [
    "CELL_PAIR",
    "CHOICE_KINDS",
    "FORM",
    "INLINE",
    "LABEL_ALONE",
    "NO_SEPARATOR",
    "SECTION_HEADINGS",
    "UNCERTAIN_BELOW",
    "DossierReading",
    "FieldEvidence",
    "LabelIndex",
    "LabelLine",
    "LabelMatch",
    "count_labels",
    "label_index",
    "parse_label_line",
    "read_dossier",
    "restore_unmapped",
    "ticked_options",
]
