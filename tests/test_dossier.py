"""Reading a dossier: labels, layouts, ticked boxes, form fields, choice of document."""

from __future__ import annotations

import re

import pytest

from mailbot.config import load_config
from parsers.documents import DocumentText, FormField, Widget, extract_document
from parsers.dossier import (
    count_labels,
    label_index,
    parse_label_line,
    read_dossier,
    ticked_options,
)
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG

RULES = load_config(SHIPPED_CONFIG).rules


def text_doc(text: str, *, name: str = "dossier.pdf", kind: str = "pdf", **extra) -> DocumentText:
    sha = re.sub(r"\W", "", name).ljust(64, "0")[:64]
    return DocumentText(sha256=sha, filename=name, kind=kind, pages=(text,), **extra)


def read(text: str, **extra):
    return read_dossier([text_doc(text, **extra)], rules=RULES)


FULL = """Intitulé de l'action ou du projet : Potager solidaire du Perroy
Catégorie de label demandée : ☒ 1 - Initiative réalisée ☐ 2 - Projet
Thématique : Habitat – Environnement
Critère(s) Smart City : ☒ Collaborative ☐ Durable ☒ Innovante
Nom de la structure ou du porteur : Les Jardins du Perroy
Courriel : contact@perroy.fr"""


# --------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("Intitulé de l'action ou du projet : Potager", "intitule", "Potager"),
        ("INTITULE DE L'ACTION OU DU PROJET: Potager", "intitule", "Potager"),
        ("intitulé de l’action ou du projet — Potager", "intitule", "Potager"),
        ("Intitulé   de  l'action ou du projet :Potager", "intitule", "Potager"),
        ("Nom du projet : Potager", "intitule", "Potager"),
        ("Titre du projet = Potager", "intitule", "Potager"),
        ("Intitulé du projet : Potager", "intitule", "Potager"),
        ("1. Intitulé : Potager", "intitule", "Potager"),
        ("- Thème : Mobilité", "thematique", "Mobilité"),
        ("Domaine\tMobilité", "thematique", "Mobilité"),
        ("Critères smart-city : durable", "criteres", "durable"),
        ("Critère(s) Smart City * : durable", "criteres", "durable"),
        ("Budget estimé (€) : 12 500 €", "budget", "12 500 €"),
        ("Budget estimé (en €) : 12 500 €", "budget", "12 500 €"),
        ("Coût estimé : 12 k€", "budget", "12 k€"),
        ("Lieu de réalisation (territoire de Béthune) : Perroy", "lieu", "Perroy"),
        ("Lieu de réalisation : Perroy", "lieu", "Perroy"),
        ("E-mail : a@b.fr", "contact_email", "a@b.fr"),
        ("Email: a@b.fr", "contact_email", "a@b.fr"),
        ("Adresse électronique : a@b.fr", "contact_email", "a@b.fr"),
        ("Tél. : 03 21 00 00 00", "contact_telephone", "03 21 00 00 00"),
        ("Référent : Marie Lefebvre", "contact_nom", "Marie Lefebvre"),
        ("Personne à contacter : Marie", "contact_nom", "Marie"),
        ("Adresse : 12 rue des Jardins", "adresse", "12 rue des Jardins"),
        ("Adresse du projet : square Blum", "lieu", "square Blum"),
        ("Statut du porteur : association", "porteur_nature", "association"),
        ("Nom de la structure ou du porteur ........ Asso", "porteur_structure", "Asso"),
        (
            "En quoi l'action est-elle collaborative, durable et/ou innovante ? : parce que",
            "justification_criteres",
            "parce que",
        ),
    ],
)
def test_label_lines(line, key, value):
    parsed = parse_label_line(line, label_index(RULES))
    assert parsed is not None and (parsed.key, parsed.value) == (key, value)


@pytest.mark.parametrize("line", ["Intitulé de l'action ou du projet", "Thème :", "Courriel *"])
def test_label_alone(line):
    parsed = parse_label_line(line, label_index(RULES))
    assert parsed is not None and parsed.value == ""


@pytest.mark.parametrize(
    "line",
    [
        "Lieu de rencontre des habitants, le jardin est ouvert à tous.",
        "Description sommaire en quelques mots",
        "Contactez-nous au 03 21 00 00 00",
        "Le projet est porté par l'association",
        "Structure juridique et gouvernance de l'association sont décrites ci-après.",
    ],
)
def test_sentences_are_not_labels(line):
    parsed = parse_label_line(line, label_index(RULES))
    assert parsed is None or not parsed.value or parsed.strength < 3


def test_ocr_labels_are_matched_fuzzily():
    index = label_index(RULES)
    line = "Intitnlé de l'actiou ou du projct : Potager"
    assert parse_label_line(line, index) is None
    parsed = parse_label_line(line, index, fuzzy=True)
    assert parsed is not None and parsed.key == "intitule" and parsed.value == "Potager"


def test_admins_can_add_variants():
    rule = RULES.fields["intitule"]
    fields = dict(RULES.fields)
    fields["intitule"] = rule.model_copy(
        update={"variants": [*rule.variants, "Nom de l'initiative"]}
    )
    rules = RULES.model_copy(update={"fields": fields})
    reading = read_dossier([text_doc(FULL + "\nNom de l'initiative : X")], rules=rules)
    assert reading.evidence["intitule"].value == "Potager solidaire du Perroy"
    doc = text_doc("Nom de l'initiative : Repair café\n" + FULL.split("\n", 1)[1])
    assert read_dossier([doc], rules=rules).fields["intitule"] == "Repair café"
    assert "intitule" not in read_dossier([doc], rules=RULES).fields


# --------------------------------------------------------------------------
# Ticked boxes


@pytest.mark.parametrize(
    ("text", "ticked"),
    [
        ("☒ Collaborative ☐ Durable ☑ Innovante", ["Collaborative", "Innovante"]),
        ("[x] Collaborative [ ] Durable [X] Innovante", ["Collaborative", "Innovante"]),
        ("(x) 1 - Initiative réalisée ( ) 2 - Projet", ["1 - Initiative réalisée"]),
        ("✓ Durable\n☐ Innovante", ["Durable"]),
        ("✔ Durable", ["Durable"]),
        ("X Collaborative\tDurable\tX Innovante", ["Collaborative", "Innovante"]),
        ("Collaborative ☒  Durable ☐  Innovante ☒", ["Collaborative", "Innovante"]),
        ("☐ Public ☐ Privé ☐ Associatif ☒\nParticulier", ["Particulier"]),
        ("☐ Collaborative ☐ Durable", []),
        ("Collaborative : oui  Durable : non  Innovante : oui", ["Collaborative", "Innovante"]),
        ("collaborative et durable", None),
    ],
)
def test_ticked_options(text, ticked):
    assert ticked_options(text) == ticked


def test_ocr_of_a_printed_form_loses_ticks_but_keeps_empty_boxes():
    assert ticked_options("[] Collaborative\tDurable\t[| innovante", ocr=True) == ["Durable"]
    assert ticked_options("6) 1-Initiative réalisée\t @) 2 - Projet") == ["2 - Projet"]


def test_choices_from_boxes():
    reading = read(FULL)
    assert reading.fields["categorie_label"] == "realisee"
    assert reading.fields["criteres"] == ["collaborative", "innovante"]
    assert reading.fields["thematique"] == "habitat_environnement"


def test_nothing_ticked_is_no_value():
    reading = read(FULL.replace("☒ Collaborative", "☐ Collaborative").replace("☒ Inn", "☐ Inn"))
    assert "criteres" not in reading.fields


def test_two_categories_ticked_is_no_value_and_a_warning():
    reading = read(FULL.replace("☐ 2 - Projet", "☒ 2 - Projet"))
    assert "categorie_label" not in reading.fields
    assert any("several options ticked" in w for w in reading.warnings)


def test_unknown_thematique_is_named_in_a_warning():
    reading = read(FULL.replace("Habitat – Environnement", "Voirie"))
    assert "thematique" not in reading.fields
    assert reading.evidence["thematique"].raw == "Voirie"
    assert any("Voirie" in w for w in reading.warnings)


# --------------------------------------------------------------------------
# Layouts


def test_label_then_value_on_following_lines():
    text = (
        "Intitulé de l'action ou du projet\nPotager solidaire\n"
        "Description de l'action\nUn jardin partagé.\nAvec des ateliers.\n"
        "Lieu de réalisation\nSquare Blum\n" + FULL.split("\n", 1)[1]
    )
    reading = read(text)
    assert reading.fields["intitule"] == "Potager solidaire"
    assert reading.fields["description"] == "Un jardin partagé.\nAvec des ateliers."
    assert reading.fields["lieu"] == "Square Blum"


def test_a_long_value_continues_across_pages():
    first = FULL + "\nDescription de l'action : Un jardin partagé\nde 800 m²"
    doc = DocumentText(
        sha256="f" * 64,
        filename="d.pdf",
        kind="pdf",
        pages=(first, "Page 2/2\nouvert à tous.\nLieu de réalisation : Perroy"),
    )
    reading = read_dossier([doc], rules=RULES)
    assert reading.fields["description"] == "Un jardin partagé de 800 m² ouvert à tous."
    assert reading.fields["lieu"] == "Perroy"


def test_several_labels_on_one_line():
    text = FULL + "\nFonction : Présidente Téléphone : 03 21 00 00 00\tAdresse : 1 rue X"
    reading = read(text)
    assert reading.fields["contact_fonction"] == "Présidente"
    assert reading.fields["contact_telephone"] == "+33321000000"
    assert reading.fields["adresse"] == "1 rue X"


def test_table_rows():
    table = (
        ("Intitulé de l'action ou du projet", "Potager"),
        ("Thématique", "Déchets"),
        ("Courriel", ""),
        ("Nom de la structure ou du porteur", "Asso"),
        ("Critère(s) Smart City", "☒ Durable"),
    )
    doc = text_doc("", tables=((table,),))
    reading = read_dossier([doc], rules=RULES)
    assert reading.fields == {
        "intitule": "Potager",
        "thematique": "habitat_environnement",
        "porteur_structure": "Asso",
        "criteres": ["durable"],
    }
    assert reading.evidence["intitule"].source == "table row on page 1 of dossier.pdf"


def test_header_row_tables():
    table = (
        ("Intitulé", "Thématique", "Lieu", "Date prévue"),
        ("Potager", "Déchets", "Perroy", "mars 2026"),
    )
    doc = text_doc("Courriel : a@b.fr", kind="docx", name="d.docx", tables=((table,),))
    reading = read_dossier([doc], rules=RULES)
    assert reading.fields["lieu"] == "Perroy"
    assert reading.fields["date_realisation"] == "2026-03"
    assert reading.evidence["lieu"].layer == "docx"


def test_text_layouts_over_every_project():
    # Each layout of the corpus with each project: what the clerk reads.
    printed = corpus.printed_labels(RULES)
    layouts = {
        "table": lambda p: corpus.text_table_pdf(
            RULES, p, labels=corpus.VARIANT_LABELS, style="bare_x"
        ),
        "colon": lambda p: corpus.text_colon_pdf(RULES, p, labels=printed, style="check"),
        "next-line": lambda p: corpus.text_next_line_pdf(RULES, p, labels=corpus.VARIANT_LABELS),
        "pairs": lambda p: corpus.two_column_pairs_pdf(RULES, p, labels=corpus.VARIANT_LABELS),
        "flow": lambda p: corpus.two_column_flow_pdf(RULES, p, labels=corpus.VARIANT_LABELS),
        "leaders": lambda p: corpus.text_leaders_pdf(RULES, p),
    }
    errors = []
    for name, build in layouts.items():
        for project in corpus.PROJECTS:
            data = build(project)
            doc = extract_document(corpus.attachment("d.pdf", data), limits=corpus_limits())
            fields = read_dossier([doc], rules=RULES).fields
            for key in set(project.expected) | set(fields):
                want, got = project.expected.get(key), fields.get(key)
                if isinstance(want, str) and isinstance(got, str):
                    want, got = " ".join(want.split()), " ".join(got.split())
                if want != got:
                    errors.append(f"{name}/{project.slug}/{key}: {want!r} != {got!r}")
    assert not errors, "\n".join(errors)


def corpus_limits():
    from parsers.documents import DocumentLimits

    return DocumentLimits()


# --------------------------------------------------------------------------
# Form fields


def form_doc(fields: dict[str, FormField], text: str = "") -> DocumentText:
    return DocumentText(
        sha256="e" * 64, filename="form.pdf", kind="pdf", pages=(text,), form_fields=fields
    )


def test_form_fields_by_name():
    fields = {
        "intitule": FormField("intitule", "text", "Potager"),
        "categorie_label": FormField("categorie_label", "radio", "projet"),
        "criteres_durable": FormField("criteres_durable", "checkbox", "Yes"),
        "criteres_innovante": FormField("criteres_innovante", "checkbox", "Off"),
        "thematique": FormField("thematique", "choice", "Mobilité – Transports"),
        "porteur_nature": FormField("porteur_nature", "radio", None),
    }
    reading = read_dossier([form_doc(fields)], rules=RULES)
    assert reading.fields == {
        "intitule": "Potager",
        "categorie_label": "projet",
        "criteres": ["durable"],
        "thematique": "mobilite_transports",
    }
    assert reading.evidence["intitule"].source == "form field 'intitule' in form.pdf"
    assert reading.evidence["criteres"].layer == "form"


def test_form_fields_by_tooltip_and_by_printed_label():
    label = Widget(page=1, rect=(0, 0, 1, 1), label_left="Nom du projet")
    fields = {
        "Texte1": FormField("Texte1", "text", "Potager", tooltip="Thème"),
        "Texte2": FormField("Texte2", "text", "Asso", widgets=(label,)),
        "Case1": FormField("Case1", "checkbox", "Yes", tooltip="Collaborative"),
        "Case2": FormField(
            "Case2",
            "checkbox",
            "Oui",
            widgets=(Widget(page=1, rect=(0, 0, 1, 1), on_state="Oui", label_right="Durable"),),
        ),
        "Groupe1": FormField(
            "Groupe1",
            "radio",
            "Choix2",
            tooltip="Catégorie",
            widgets=(
                Widget(1, (0, 0, 1, 1), "Choix1", label_right="1 - Initiative réalisée"),
                Widget(1, (0, 0, 1, 1), "Choix2", label_right="2 - Projet"),
            ),
        ),
    }
    reading = read_dossier([form_doc(fields)], rules=RULES)
    assert reading.evidence["thematique"].raw == "Potager"  # tooltip "Thème"
    assert reading.fields["intitule"] == "Asso"  # the label printed beside it
    assert reading.fields["criteres"] == ["collaborative", "durable"]
    assert reading.fields["categorie_label"] == "projet"


def test_empty_form_fields_are_not_filled_from_the_printed_form():
    # The page prints the option labels; the unticked boxes must not read as answers.
    text = "Critère(s) Smart City *\nCollaborative\tDurable\tInnovante\nThématique *\n"
    fields = {
        "criteres_collaborative": FormField("criteres_collaborative", "checkbox", "Off"),
        "thematique": FormField("thematique", "choice", None),
        "intitule": FormField("intitule", "text", None),
    }
    reading = read_dossier([form_doc(fields, text)], rules=RULES)
    assert reading.fields == {}


def test_blank_generated_form_is_a_dossier_without_values():
    from mailbot.forms import blank_form_pdf

    doc = extract_document(
        corpus.attachment("d.pdf", blank_form_pdf(RULES)), limits=corpus_limits()
    )
    reading = read_dossier([doc], rules=RULES)
    assert reading.dossier_sha256 == doc.sha256
    assert reading.fields == {}


# --------------------------------------------------------------------------
# Which document is the dossier


def test_the_document_with_most_labels_is_the_dossier():
    letter = text_doc("Monsieur le Maire,\nIntitulé : Potager\n", name="courrier.pdf")
    dossier = text_doc(FULL, name="scan.pdf")
    reading = read_dossier([letter, dossier], rules=RULES)
    assert reading.dossier_sha256 == dossier.sha256
    assert reading.candidates[0][0] == dossier.sha256


def test_file_name_breaks_ties():
    a = text_doc(FULL, name="annexe.pdf")
    b = text_doc(FULL, name="dossier_intention.pdf")
    assert read_dossier([a, b], rules=RULES).dossier_sha256 == b.sha256


def test_too_few_labels_is_no_dossier():
    reading = read("Intitulé : Potager\nThème : Déchets\nRien d'autre.")
    assert reading.dossier_sha256 is None and reading.fields == {}


def test_a_brochure_with_contact_details_is_not_a_dossier():
    brochure = (
        "Contact : Marie\nAdresse : 1 rue X\nMail : a@b.fr\nTél : 03 21 00 00 00\nFonction : X"
    )
    assert read(brochure).dossier_sha256 is None


def test_unreadable_attachment_is_named_when_no_dossier_is_found():
    broken = DocumentText(
        sha256="b" * 64, filename="dossier.pdf", kind="pdf", needs_review=True, warnings=("x",)
    )
    reading = read_dossier([broken], rules=RULES)
    assert reading.dossier_sha256 is None and reading.needs_review
    assert "dossier.pdf" in reading.warnings[0]


def test_count_labels():
    assert count_labels(FULL, RULES) == 6
    assert count_labels("Contact : Marie\nCourriel : a@b.fr", RULES) == 1.5
    assert count_labels("Monsieur le Maire,\nJe vous prie d'agréer…", RULES) == 0
