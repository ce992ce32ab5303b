"""Missing pieces, their French wording, and attachment roles."""

from __future__ import annotations

from mailbot.config import load_config
from parsers.checks import attachment_roles, describe_missing, is_required, missing_pieces
from parsers.documents import DocumentText
from tests.fixtures.config import SHIPPED_CONFIG

RULES = load_config(SHIPPED_CONFIG).rules
COMPLETE = {
    "intitule": "Potager",
    "categorie_label": "realisee",
    "thematique": "habitat_environnement",
    "criteres": ["durable"],
    "justification_criteres": "…",
    "description": "…",
    "lieu": "Perroy",
    "date_realisation": "2025-03-15",
    "porteur_structure": "Asso",
    "contact_nom": "Marie",
    "contact_email": "a@b.fr",
}


def missing(fields, *, dossier=True, letter=True):
    return missing_pieces(
        fields=fields, dossier_present=dossier, letter_present=letter, rules=RULES
    )


def test_complete():
    assert missing(COMPLETE) == ()


def test_order_dossier_letter_then_fields_in_rules_order():
    fields = {k: v for k, v in COMPLETE.items() if k not in ("contact_email", "intitule")}
    assert missing(fields, letter=False) == ("letter", "field:intitule", "field:contact_email")


def test_without_a_dossier_only_the_pieces_are_named():
    assert missing({}, dossier=False, letter=False) == ("dossier", "letter")


def test_maturite_is_required_for_projects_only():
    assert "field:maturite" not in missing(COMPLETE)
    project = {**COMPLETE, "categorie_label": "projet"}
    assert missing(project) == ("field:maturite",)
    assert missing({**project, "maturite": "Prototype"}) == ()
    assert is_required("maturite", project, RULES) and not is_required("maturite", COMPLETE, RULES)


def test_empty_values_are_missing():
    fields = {**COMPLETE, "criteres": [], "intitule": ""}
    assert missing(fields) == ("field:intitule", "field:criteres")


def test_every_required_field_is_named_when_the_dossier_is_blank():
    required = [k for k, rule in RULES.fields.items() if rule.required]
    assert missing({}) == tuple(f"field:{k}" for k in required)


def test_describe_missing_in_french():
    text = describe_missing(
        ("dossier", "letter", "field:description", "field:criteres", "field:unknown"), rules=RULES
    )
    assert text == [
        "le dossier d'intention complété",
        "le courrier officiel adressé à Monsieur le Maire",
        "le champ « Description de l'action »",
        "le champ « Critère(s) Smart City » (au moins un critère coché)",
        "field:unknown",
    ]


def doc(sha: str, kind: str, size: int, detected: str = "") -> DocumentText:
    return DocumentText(
        sha256=sha, filename=f"{sha}.x", kind=kind, size=size, detected=detected or kind
    )


def test_attachment_roles():
    documents = [
        doc("d", "pdf", 50_000),
        doc("l", "docx", 20_000),
        doc("photo", "image", 400_000, "jpeg"),
        doc("logo", "image", 3_000, "png"),
        doc("empty", "other", 0, "empty"),
        doc("odt", "other", 30_000, "odf"),
        doc("scan", "pdf", 90_000),
    ]
    roles = attachment_roles(documents, dossier_sha256="d", letter_sha256="l")
    assert roles == {
        "d": "dossier",
        "l": "letter",
        "photo": "supporting",
        "logo": "ignored",
        "empty": "ignored",
        "odt": "supporting",
        "scan": "supporting",
    }


def test_a_letter_inside_the_dossier_leaves_it_a_dossier():
    roles = attachment_roles([doc("d", "pdf", 1)], dossier_sha256="d", letter_sha256="d")
    assert roles == {"d": "dossier"}
