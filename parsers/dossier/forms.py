"""Form fields: the values of AcroForm fields, matched to dossier fields and options.

Owns the option index, which dossier field (or option) a form field fills,
and the value a form field gives.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from parsers.documents import FormField
from parsers.dossier.cells import (
    _Hit,
    _Reading,
)
from parsers.dossier.labels import (
    LabelIndex,
    _cached,
    parse_label_line,
)
from parsers.dossier.results import (
    FORM,
)
from parsers.normalize import normalize_value, words
from parsers.text import fold

if TYPE_CHECKING:
    from parsers.rules import Rules


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
