"""The blank dossier d'intention, generated from the rules."""

from __future__ import annotations

import io

import pytest
from docx import Document
from pypdf import PdfReader

from mailbot.config import FieldKind, load_config
from mailbot.forms import MAILBOXES, TITLE, blank_form_docx, blank_form_pdf
from parsers.documents import DocumentLimits, extract_document
from parsers.dossier import read_dossier
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import attachment

RULES = load_config(SHIPPED_CONFIG).rules
CHOICE_KINDS = (FieldKind.CATEGORY, FieldKind.NATURE, FieldKind.CRITERIA, FieldKind.THEMATIQUE)


@pytest.fixture(scope="module")
def pdf_fields():
    return PdfReader(io.BytesIO(blank_form_pdf(RULES))).get_fields()


def test_a_text_field_per_key_named_by_the_key(pdf_fields):
    for key, rule in RULES.fields.items():
        if rule.kind in CHOICE_KINDS:
            continue
        field = pdf_fields[key]
        assert field["/FT"] == "/Tx"
        assert field["/TU"] == rule.label
        multiline = bool(int(field.get("/Ff", 0)) & (1 << 12))
        assert multiline == (rule.kind == FieldKind.MULTILINE), key
        assert "/MaxLen" not in field


def test_criteria_are_three_checkboxes(pdf_fields):
    for option, choice in RULES.criteria.items():
        field = pdf_fields[f"criteres_{option}"]
        assert field["/FT"] == "/Btn" and not int(field.get("/Ff", 0)) & (1 << 15)
        assert field["/V"] == "/Off"
        assert choice.label in field["/TU"] and RULES.fields["criteres"].label in field["/TU"]


@pytest.mark.parametrize(
    ("key", "choices"), [("categorie_label", "categories"), ("porteur_nature", "natures")]
)
def test_radio_groups_export_the_keys(pdf_fields, key, choices):
    field = pdf_fields[key]
    assert field["/FT"] == "/Btn" and int(field["/Ff"]) & (1 << 15)
    states = {s.lstrip("/") for s in field["/_States_"]} - {"Off"}
    assert states == set(getattr(RULES, choices))
    assert field["/TU"] == RULES.fields[key].label


def test_thematique_is_a_choice_of_the_printed_names(pdf_fields):
    field = pdf_fields["thematique"]
    assert field["/FT"] == "/Ch"
    options = [o if isinstance(o, str) else o[-1] for o in field["/Opt"]]
    assert [o for o in options if o.strip()] == [t.label for t in RULES.thematiques.values()]
    assert field["/TU"] == RULES.fields["thematique"].label


def test_no_other_fields(pdf_fields):
    expected = {k for k, r in RULES.fields.items() if r.kind != FieldKind.CRITERIA}
    expected |= {f"criteres_{c}" for c in RULES.criteria}
    assert set(pdf_fields) == expected


def test_pdf_text_title_instructions_labels():
    doc = extract_document(attachment("f.pdf", blank_form_pdf(RULES)), limits=DocumentLimits())
    text = doc.text
    assert TITLE in text
    assert "Monsieur le Maire" in text
    for mailbox in MAILBOXES:
        assert mailbox in text
    for rule in RULES.fields.values():
        assert rule.label in text.replace("\n", " ")
    for choice in [*RULES.categories.values(), *RULES.natures.values(), *RULES.criteria.values()]:
        assert choice.label in text


def test_docx_two_column_table_with_boxes():
    document = Document(io.BytesIO(blank_form_docx(RULES)))
    body = "\n".join(p.text for p in document.paragraphs)
    assert TITLE in body and "Monsieur le Maire" in body
    assert all(mailbox in body for mailbox in MAILBOXES)
    rows = [tuple(c.text for c in row.cells) for t in document.tables for row in t.rows]
    assert all(len(row) == 2 for row in rows)
    labels = [row[0].rstrip(" *") for row in rows]
    assert labels == [rule.label for rule in RULES.fields.values()]
    cells = dict(zip(labels, (row[1] for row in rows), strict=True))
    assert cells["Critère(s) Smart City"] == "☐ Collaborative    ☐ Durable    ☐ Innovante"
    assert cells["Thématique"].count("☐") == 7


@pytest.mark.parametrize("make", [blank_form_pdf, blank_form_docx])
def test_the_parser_reads_the_blank_forms_as_an_empty_dossier(make):
    name = "dossier.pdf" if make is blank_form_pdf else "dossier.docx"
    doc = extract_document(attachment(name, make(RULES)), limits=DocumentLimits())
    reading = read_dossier([doc], rules=RULES)
    assert reading.dossier_sha256 == doc.sha256
    assert reading.labels_found == len(RULES.fields)
    assert reading.fields == {}


def test_a_field_added_by_an_admin_appears_in_both_forms():
    fields = dict(RULES.fields)
    fields["site_web"] = RULES.fields["partenaires"].model_copy(update={"label": "Site internet"})
    rules = RULES.model_copy(update={"fields": fields})
    assert "site_web" in PdfReader(io.BytesIO(blank_form_pdf(rules))).get_fields()
    document = Document(io.BytesIO(blank_form_docx(rules)))
    assert "Site internet" in [row.cells[0].text for t in document.tables for row in t.rows]
