"""Normalisation of field values: every example of shared/dossier-intention.md."""

from __future__ import annotations

import pytest

from mailbot.config import load_config
from parsers.normalize import (
    category_key,
    clean_text,
    criteria_keys,
    nature_key,
    normalize_value,
    parse_amount,
    parse_date,
    parse_email,
    parse_phone,
    thematique_key,
)
from tests.fixtures.config import SHIPPED_CONFIG


@pytest.fixture(scope="module")
def rules():
    return load_config(SHIPPED_CONFIG).rules


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Habitat – Environnement", "habitat_environnement"),
        ("Mobilité – Transports", "mobilite_transports"),
        ("Éducation – Emploi", "education_emploi"),
        ("Alimentation – Consommation", "alimentation_consommation"),
        ("Loisirs – Culture", "loisirs_culture"),
        ("Santé – Bien-être", "sante_bien_etre"),
        ("Entraide – Solidarité", "entraide_solidarite"),
        # The ways applicants write them (contract examples).
        ("Mobilité et transports", "mobilite_transports"),
        ("MOBILITE", "mobilite_transports"),
        ("Santé/bien être", "sante_bien_etre"),
        ("Solidarité et entraide", "entraide_solidarite"),
        ("Déchets", "habitat_environnement"),
        # Sub-themes, accents, case, punctuation, plurals, OCR noise.
        ("biodiversite", "habitat_environnement"),
        ("EHPAD", "sante_bien_etre"),
        ("Environnement patient", "sante_bien_etre"),
        ("Intermodalité", "mobilite_transports"),
        ("Monde académique", "education_emploi"),
        ("agriculture", "alimentation_consommation"),
        ("Évènementiel", "loisirs_culture"),
        ("Mieux vivre ensemble", "entraide_solidarite"),
        ("loisirs-culture", "loisirs_culture"),
        ("Mobilité – Transport", "mobilite_transports"),
        ("Habitat - Envirormement", "habitat_environnement"),
        ("Loisirs et culture (Évènementiel)", "loisirs_culture"),
        ("mobilite_transports", "mobilite_transports"),
    ],
)
def test_thematique_key(rules, text, key):
    assert thematique_key(text, rules).value == key


@pytest.mark.parametrize(
    ("text", "reason"),
    [("Voirie", "not recognised"), ("Culture et santé", "ambiguous"), ("", "empty")],
)
def test_thematique_not_recognised_says_why(rules, text, reason):
    result = thematique_key(text, rules)
    assert result.value is None
    assert reason in result.reason


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("Collaborative, durable", ["collaborative", "durable"]),
        ("innovante et collaborative", ["collaborative", "innovante"]),
        ("Durable", ["durable"]),
        ("développement durable, participatif", ["collaborative", "durable"]),
        ("INNOVANT", ["innovante"]),
        ("collaborative\ndurable\ninnovante", ["collaborative", "durable", "innovante"]),
    ],
)
def test_criteria_keys_in_rules_order(rules, text, keys):
    assert criteria_keys(text, rules).value == keys


def test_criteria_unknown(rules):
    result = criteria_keys("aucun", rules)
    assert result.value is None and result.reason


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("1 - Initiative réalisée", "realisee"),
        ("2 - Projet", "projet"),
        ("Initiative réalisée", "realisee"),
        ("réalisée", "realisee"),
        ("Projet mature", "projet"),
        ("1", "realisee"),
        ("2", "projet"),
        ("PROJET", "projet"),
    ],
)
def test_category_key(rules, text, key):
    assert category_key(text, rules).value == key


def test_category_both_is_ambiguous(rules):
    assert category_key("réalisée et projet", rules).value is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Public", "public"),
        ("Collectivité", "public"),
        ("Privé", "prive"),
        ("prive", "prive"),
        ("Entreprise", "prive"),
        ("Associatif", "associatif"),
        ("Association loi 1901", "associatif"),
        ("Particulier", "particulier"),
        ("citoyen", "particulier"),
    ],
)
def test_nature_key(rules, text, key):
    assert nature_key(text, rules).value == key


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("15 mars 2025", "2025-03-15"),
        ("1er mars 2025", "2025-03-01"),
        ("ler mars 2025", "2025-03-01"),  # OCR
        ("mars 2026", "2026-03"),
        ("Mars 2026", "2026-03"),
        ("15/03/2025", "2025-03-15"),
        ("15.03.25", "2025-03-15"),
        ("15-03-2025", "2025-03-15"),
        ("2025-03-15", "2025-03-15"),
        ("03/2026", "2026-03"),
        ("le lundi 3 septembre 2029", "2029-09-03"),
        ("3 févr. 2026", "2026-02-03"),
        ("prévue en décembre 2025", "2025-12"),
        # Not one day or month: the text as written.
        ("printemps 2026", "printemps 2026"),
        ("du 15 mars au 30 juin 2025", "du 15 mars au 30 juin 2025"),
        ("2026", "2026"),
        ("31/02/2025", "31/02/2025"),
    ],
)
def test_parse_date(text, value):
    assert parse_date(text).value == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12 500 €", 12500),
        ("12\u202f500\u00a0€", 12500),  # narrow no-break space
        ("12\u00a0500 €", 12500),  # no-break space
        ("12.500,00 EUR", 12500),
        ("8.000,00 EUR", 8000),
        ("12k€", 12000),
        ("12,5 k€", 12500),
        ("15 k€", 15000),
        ("1,5 M€", 1500000),
        ("2 millions d'euros", 2000000),
        ("3000 euros", 3000),
        ("12 500,50 €", 12500.5),
        ("12,500.00 EUR", 12500),
        ("150000", 150000),
    ],
)
def test_parse_amount(text, value):
    result = parse_amount(text)
    assert result.value == value
    assert type(result.value) is type(value)


def test_amount_range_keeps_the_largest_and_says_so():
    result = parse_amount("entre 10 000 et 15 000 €")
    assert result.value == 15000 and result.reason


def test_amount_not_a_number():
    result = parse_amount("à définir")
    assert result.value is None and result.reason


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("03 21 00 00 00", "+33321000000"),
        ("03.21.00.00.00", "+33321000000"),
        ("0321000000", "+33321000000"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("Tél : 06-12-34-56-78 (portable)", "+33612345678"),
        ("06 12 34 56 78 / 03 21 00 00 00", "+33612345678"),
        ("+32 2 123 45 67", "+3221234567"),
    ],
)
def test_parse_phone(text, value):
    assert parse_phone(text).value == value


def test_phone_not_a_number_keeps_the_text():
    result = parse_phone("voir avec le secrétariat")
    assert result.value == "voir avec le secrétariat" and result.reason


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Marie.Lefebvre@Jardins-Perroy.FR", "marie.lefebvre@jardins-perroy.fr"),
        ("mailto:contact@asso.fr", "contact@asso.fr"),
        ("<contact@asso.fr>", "contact@asso.fr"),
        ("contact @ asso.fr", "contact@asso.fr"),
        ("contact@repartout. org", "contact@repartout.org"),
        ("écrire à jean.dupont@ville-bethune.fr.", "jean.dupont@ville-bethune.fr"),
    ],
)
def test_parse_email(text, value):
    assert parse_email(text).value == value


@pytest.mark.parametrize(
    "text", ["jean.dupont(at)gmail.com", "jean@", "@asso.fr", "x@y", "a..b@asso.fr"]
)
def test_invalid_email_is_not_a_value(text):
    result = parse_email(text)
    assert result.value is None
    assert "invalid e-mail" in result.reason


def test_text_cleaning():
    assert clean_text("  Potager \n solidaire.  ") == "Potager solidaire"
    assert clean_text("ligne 1\n\n\n\nligne 2 -", multiline=True) == "ligne 1\n\nligne 2"
    assert clean_text("Jean- Pierre") == "Jean-Pierre"


def test_normalize_value_dispatches_on_kind(rules):
    assert normalize_value("amount", "12k€", rules).value == 12000
    assert normalize_value("date", " 15 mars 2025 ", rules).value == "2025-03-15"
    assert normalize_value("text", "  a  b ", rules).value == "a b"
    assert normalize_value("multiline", "", rules).value is None
