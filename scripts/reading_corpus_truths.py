"""The truth files of the reading corpus, drawn once from seeded pools of applicants' words.

``python scripts/make_reading_corpus.py --new-truths`` calls ``write_truths``;
afterwards the JSON files in ``tests/reading_corpus/truth/`` are the source
(edit them by hand, the renderer reads only them). Each truth says what an
applicant typed (``written``), what the service must read after the
project's normalisation (``expected``), which producer renders it, how the
document is laid out and which traps it was built to contain.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from parsers.normalize import normalize_value
from parsers.text import strip_accents

PRODUCERS = (
    "writer_docx_pdf",
    "writer_odt_pdf",
    "word_docx",
    "pdftk_filled",
    "pdftk_flattened",
    "qpdf_rewritten",
    "scan_table",
    "scan_form",
    "phone_photo",
    "gs_printed",
)
PER_PRODUCER = 10

_TITLES = [
    "Bornes de recharge pour vélos électriques en centre-ville",
    "Potager partagé du quartier du Mont-Liébaut",
    "Repair café intergénérationnel",
    "Capteurs de qualité de l'air dans les écoles",
    "Navette électrique à la demande pour les seniors",
    "Plateforme numérique des commerces de proximité",
    "Compostage collectif en pied d'immeuble",
    "Ateliers numériques pour les demandeurs d'emploi",
    "Festival des mobilités douces",
    "Télésurveillance bienveillante en EHPAD",
    "Bibliothèque d'objets partagés",
    "Éclairage public intelligent rue d'Arras",
    "Cantine zéro déchet au collège",
    "Jardins thérapeutiques de l'hôpital",
]
_THEMES = {
    # thematique key -> (printed label, a sub-theme)
    "mobilite_transports": ("Mobilité – Transports", "Modes de déplacement"),
    "habitat_environnement": ("Habitat – Environnement", "Biodiversité (faune, flore) / Climat"),
    "entraide_solidarite": ("Entraide – Solidarité", "Liens entre citoyens"),
    "sante_bien_etre": ("Santé – Bien-être", "EHPAD"),
    "alimentation_consommation": ("Alimentation – Consommation", "Commerce"),
    "education_emploi": ("Éducation – Emploi", "Monde économique"),
    "loisirs_culture": ("Loisirs – Culture", "Évènementiel"),
}
_STRUCTURES = [
    ("Association Béthune Vélo Plus", "associatif"),
    ("Centre communal d'action sociale de Béthune", "public"),
    ("SARL Énergies du Béthunois", "prive"),
    ("Collectif des habitants du Perroy", "associatif"),
    ("Collège Maurice Piquet", "public"),
    ("Les Jardins de Catorive", "associatif"),
    ("EHPAD Les Tilleuls", "public"),
    ("Jean-Pierre Delattre", "particulier"),
    ("Société coopérative Artois Mobilités", "prive"),
]
_PEOPLE = [
    ("Claire Vandenbussche", "Présidente"),
    ("Mehdi Benali", "Chargé de mission développement durable"),
    ("Sophie Lefebvre-Dumont", "Directrice"),
    ("Thomas Wattrelot", "Coordinateur"),
    ("Aïcha Boukhris", "Responsable des partenariats"),
    ("Jean-Pierre Delattre", "Habitant porteur du projet"),
    ("Hélène Caron", "Cadre de santé"),
    ("Bruno Lemaire", "Gérant"),
]
_PLACES = [
    "Place Clemenceau, 62400 Béthune",
    "Quartier du Mont-Liébaut, Béthune",
    "Rue d'Arras et abords de la gare, Béthune",
    "Ensemble du territoire de Béthune (Nord-Pas-de-Calais)",
    "Parc de la Loisne, Béthune",
    "Quartier du Perroy, 62400 Béthune",
    "Centre-ville de Béthune, Hauts-de-France",
]
_DATES = [
    "15 mars 2025",
    "1er septembre 2026",
    "juin 2026",
    "12/10/2025",
    "Printemps 2026",
    "2026-04-20",
    "30 novembre 2025",
    "octobre 2026",
]
_BUDGETS = ["12 500 €", "3 200 EUR", "45.000,00 €", "8k€", "150 000 €", "950 €", "27 300 euros"]
_PHONES = ["03 21 56 78 90", "06 12 34 56 78", "+33 3 21 68 40 00", "07.81.22.45.19", "0321574411"]
_PARTNERS = [
    "Ville de Béthune, Communauté d'agglomération Béthune-Bruay, Région Hauts-de-France",
    "Maison de quartier, bailleur social Pas-de-Calais Habitat",
    "Lycée professionnel Marcel Pagnol, Pôle emploi",
    "Centre hospitalier de Béthune-Beuvry",
    "Union commerciale de Béthune",
]
_OPENINGS = [
    "Le projet installe dix bornes de recharge où les vélos électriques sont rechargés "
    "gratuitement par l'énergie solaire, à proximité des commerces et des équipements publics.",
    "Les habitants du quartier se retrouvent chaque semaine pour cultiver, réparer et partager, "
    "avec l'appui de bénévoles formés et des services municipaux.",
    "Des capteurs mesurent en continu la qualité de l'air et le bruit ; les données ouvertes "
    "sont publiées sur un tableau de bord consultable par tous les habitants.",
    "Un service de transport à la demande relie les quartiers aux équipements de santé, avec "
    "des véhicules électriques rechargés la nuit sur le réseau municipal.",
]
_MIDDLES = [
    "Une première phase d'expérimentation a réuni une centaine de participants venus de toute "
    "la région Nord-Pas-de-Calais ; leurs retours ont permis d'adapter le dispositif.",
    "Chaque participant s'inscrit sur une feuille de présence qui porte sa signature. "
    "Les séances sont ensuite évaluées avec les partenaires.",
    "Le mobilier a été construit par les jeunes du chantier d'insertion. Fait à partir de "
    "palettes récupérées, il est entretenu par les habitants eux-mêmes.",
    "Le calendrier prévisionnel prévoit une mise en service progressive, quartier par quartier, "
    "avec des ateliers d'accompagnement pour les publics éloignés du numérique.",
]
_CLOSINGS = [
    "Un bilan public sera présenté au conseil de quartier à la fin de la première année.",
    "Les données collectées resteront anonymes et seront supprimées au bout de douze mois.",
    "Le dispositif pourra être étendu aux communes voisines de l'agglomération.",
]
_JUSTIFICATIONS = [
    "Collaborative : conçue avec les habitants et les associations. Durable : matériaux "
    "réemployés et énergie renouvelable. Innovante : capteurs connectés et données ouvertes.",
    "L'action est durable (réduction des déchets et des déplacements en voiture) et "
    "collaborative (bénévoles, commerçants et services de la ville travaillent ensemble).",
    "Innovante par l'usage d'une application simple, durable grâce aux vélos électriques "
    "rechargés à l'énergie solaire.",
]
_MATURITY = [
    "Étude de faisabilité terminée ; financements en cours de recherche.",
    "Prototype testé pendant trois mois.\n\nDéploiement prévu après validation du conseil "
    "municipal.",
    "Partenaires réunis, convention en préparation.",
]
_LAYOUT_FONTS = ["DejaVu Sans", "DejaVu Serif", "Nimbus Sans", "Nimbus Roman", "P052"]


# Producers that print the project's fillable form: a flattened field shows only
# what fits in its box, so their descriptions are kept to what fits.
FORM_PRODUCERS = ("pdftk_filled", "pdftk_flattened", "qpdf_rewritten", "scan_form", "gs_printed")


def _description(rng: random.Random, *, fits_form_box: bool) -> tuple[str, list[str]]:
    """Two to five paragraphs separated by blank lines, and the traps they carry."""
    paragraphs = [rng.choice(_OPENINGS)]
    paragraphs += rng.sample(_MIDDLES, 1 if fits_form_box else rng.randint(1, 3))
    if not fits_form_box and rng.random() < 0.6:
        paragraphs.append(rng.choice(_CLOSINGS))
    traps = ["paragraphs"] if len(paragraphs) > 1 else []
    text = "\n\n".join(paragraphs)
    if "Nord-Pas-de-Calais" in text:
        traps.append("hyphen_wrap")
    if "signature." in text or "Fait à" in text:
        traps.append("stop_word_wrap")
    if len(paragraphs) >= 4:
        traps.append("row_split")
    if any(w in text for w in ("électriques", "rechargés", "prévisionnel")):
        traps.append("long_words")
    return text, traps


def _truth(number: int, producer: str, rng: random.Random, *, rules: Any) -> dict[str, Any]:
    theme = rng.choice(sorted(_THEMES))
    theme_label, sub_theme = _THEMES[theme]
    structure, nature = rng.choice(_STRUCTURES)
    person, function = rng.choice(_PEOPLE)
    category = rng.choice(["realisee", "projet"])
    criteria = sorted(rng.sample(["collaborative", "durable", "innovante"], rng.randint(1, 3)))
    source = rng.choice(["table", "form"]) if producer == "phone_photo" else None
    description, traps = _description(
        rng, fits_form_box=producer in FORM_PRODUCERS or source == "form"
    )
    first, _, last = person.partition(" ")
    domain = rng.choice(["gmail.com", "orange.fr", "asso-bethune.fr", "laposte.net"])
    written: dict[str, str] = {
        "intitule": rng.choice(_TITLES),
        "thematique": theme_label,
        "justification_criteres": rng.choice(_JUSTIFICATIONS),
        "description": description,
        "lieu": rng.choice(_PLACES),
        "date_realisation": rng.choice(_DATES),
        "porteur_structure": structure,
        "contact_nom": person,
        "contact_email": strip_accents(f"{first}.{last}@{domain}").lower().replace(" ", "-"),
    }
    optional = {
        "sous_thematique": sub_theme,
        "partenaires": rng.choice(_PARTNERS),
        "budget": rng.choice(_BUDGETS),
        "contact_fonction": function,
        "contact_telephone": rng.choice(_PHONES),
        "adresse": rng.choice(["12 rue de la Délivrance, 62400 Béthune", "BP 40 - 62401 Béthune"]),
    }
    for key, value in optional.items():
        if rng.random() < 0.8:
            written[key] = value
    if category == "projet":
        written["maturite"] = rng.choice(_MATURITY)
    if "Nord-Pas-de-Calais" in written["lieu"]:
        traps.append("hyphen_wrap")
    # A few dossiers really are incomplete: their notice is right, not false.
    if rng.random() < 0.06:
        del written[rng.choice(["lieu", "description", "contact_email"])]
    expected: dict[str, Any] = {}
    for key, text in written.items():
        reading = normalize_value(str(rules.fields[key].kind), text, rules)
        expected[key] = reading.value
    expected["categorie_label"] = category
    expected["criteres"] = criteria
    if rng.random() < 0.85:
        expected["porteur_nature"] = nature
    letter = "separate"
    if rng.random() < 0.1:
        letter = "none"
    elif producer in ("scan_table", "scan_form") and rng.random() < 0.4:
        letter = "first_page"
    layout = {
        "font": rng.choice(_LAYOUT_FONTS),
        "font_size": rng.choice([9.5, 10, 10.5, 11]),
        "label_width_cm": rng.choice([3.2, 4.0, 5.0, 6.0]),
        "justify": rng.random() < 0.5,
        "retyped_labels": rng.random() < 0.3,
        "source": source,
    }
    if layout["label_width_cm"] <= 4.0:
        traps.append("narrow_label_cells")
    return {
        "id": f"{number:03d}",
        "producer": producer,
        "seed": number,
        "letter": letter,
        "layout": layout,
        "traps": sorted(set(traps)),
        "written": written,
        "expected": dict(sorted(expected.items())),
    }


def write_truths(truth_dir: Path, *, rules: Any, seed: int = 20261202) -> list[Path]:
    rng = random.Random(seed)
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    number = 1
    for producer in PRODUCERS:
        for _ in range(PER_PRODUCER):
            truth = _truth(number, producer, rng, rules=rules)
            path = truth_dir / f"{truth['id']}.json"
            path.write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n")
            paths.append(path)
            number += 1
    return paths
