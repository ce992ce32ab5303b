"""A corpus of realistic candidatures, built in code, with the expected reading.

Each ``Item`` is what one message carries (dossier, letter, photos) plus what
a careful clerk would read from it: the normalised fields, which file is the
dossier, which is the letter (and on which page). The dossiers are made the
ways applicants make them: the project's own fillable form filled by another
tool (with and without appearance streams), forms re-made by other tools with
other field names, text PDFs in several layouts, Word files (tables,
paragraphs, content controls), and degraded scans that need OCR.

Nothing is read from disk except fonts: DejaVu Sans when the system has it
(it draws ☒ ☐ ✓), else Vera, shipped with reportlab, with boxes written as
[x] / [ ].
"""

from __future__ import annotations

import hashlib
import io
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import reportlab
from docx import Document
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from mailbot.forms import blank_form_pdf
from parsers.types import Attachment

# --------------------------------------------------------------------------
# Fonts

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
_VERA = Path(reportlab.__file__).parent / "fonts"


@cache
def fonts() -> tuple[str, str, bool]:
    """(regular, bold, draws box glyphs) registered with reportlab."""
    if (_DEJAVU / "DejaVuSans.ttf").is_file() and (_DEJAVU / "DejaVuSans-Bold.ttf").is_file():
        pdfmetrics.registerFont(TTFont("Corpus", str(_DEJAVU / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("Corpus-Bold", str(_DEJAVU / "DejaVuSans-Bold.ttf")))
        return "Corpus", "Corpus-Bold", True
    pdfmetrics.registerFont(TTFont("Corpus", str(_VERA / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont("Corpus-Bold", str(_VERA / "VeraBd.ttf")))
    return "Corpus", "Corpus-Bold", False


MARKS = {
    "glyph": ("☒", "☐"),
    "check": ("☑", "☐"),
    "brackets": ("[x]", "[ ]"),
    "paren": ("(x)", "( )"),
    "bare_x": ("X", ""),
}


def mark(style: str, ticked: bool) -> str:
    if style in ("glyph", "check") and not fonts()[2]:
        style = "brackets"  # the font has no box glyphs
    return MARKS[style][0 if ticked else 1]


# --------------------------------------------------------------------------
# Projects: what applicants write, and what must be read


@dataclass(frozen=True)
class Project:
    slug: str
    raw: dict[str, str]  # the applicant's words, per field key (text fields)
    category: str
    nature: str | None
    criteria: tuple[str, ...]
    thematique: str  # as written
    expected: dict[str, Any]  # normalised reading
    signatory: str
    letter_date: str


def _project(slug: str, raw: dict[str, str], expected: dict[str, Any], **choices: Any) -> Project:
    exp = {k: v for k, v in raw.items() if k not in expected}
    exp.update(expected)
    exp["categorie_label"] = choices["category"]
    exp["criteres"] = list(choices["criteria"])
    if choices.get("nature"):
        exp["porteur_nature"] = choices["nature"]
    return Project(slug=slug, raw=raw, expected=exp, **choices)


POTAGER = _project(
    "potager",
    {
        "intitule": "Potager solidaire du quartier du Perroy",
        "sous_thematique": "Biodiversité (faune, flore) / Climat",
        "justification_criteres": (
            "Le potager est cultivé par les habitants eux-mêmes (collaboratif), "
            "en permaculture et sans intrants chimiques (durable)."
        ),
        "description": (
            "Un jardin partagé de 800 m² ouvert à tous les habitants du Perroy.\n"
            "Chaque semaine, des ateliers de jardinage sont animés par des bénévoles.\n"
            "Les récoltes sont partagées avec l'épicerie solidaire du quartier."
        ),
        "lieu": "Square Léon Blum, quartier du Perroy, 62400 Béthune",
        "date_realisation": "15 mars 2025",
        "partenaires": "Ville de Béthune, Pas-de-Calais Habitat, épicerie solidaire Le Panier",
        "budget": "12 500 €",
        "porteur_structure": "Association Les Jardins du Perroy",
        "contact_nom": "Marie Lefebvre",
        "contact_fonction": "Présidente",
        "contact_email": "Marie.Lefebvre@jardins-perroy.fr",
        "contact_telephone": "03 21 00 00 00",
        "adresse": "12 rue des Jardins, 62400 Béthune",
    },
    {
        "thematique": "habitat_environnement",
        "date_realisation": "2025-03-15",
        "budget": 12500,
        "contact_email": "marie.lefebvre@jardins-perroy.fr",
        "contact_telephone": "+33321000000",
    },
    category="realisee",
    nature="associatif",
    criteria=("collaborative", "durable"),
    thematique="Habitat – Environnement",
    signatory="Marie Lefebvre, Présidente",
    letter_date="12 mars 2025",
)

COVOITURAGE = _project(
    "covoiturage",
    {
        "intitule": "Covoit'Béthune, application de covoiturage domicile-travail",
        "sous_thematique": "Modes de déplacement",
        "justification_criteres": (
            "L'application réduit l'usage de la voiture individuelle (durable) et met en "
            "relation les salariés de la zone d'activités en temps réel (innovante)."
        ),
        "description": (
            "Application mobile gratuite qui met en relation conducteurs et passagers\n"
            "sur les trajets domicile-travail de l'agglomération.\n"
            "Un système de points récompense les covoitureurs réguliers."
        ),
        "lieu": "Zone d'activités Actiparc, Béthune",
        "date_realisation": "mars 2026",
        "partenaires": "Communauté d'agglomération Béthune-Bruay, Mobilité Hauts-de-France",
        "budget": "45k€",
        "maturite": "Prototype testé auprès de 40 salariés ; lancement public prévu en 2026.",
        "porteur_structure": "SAS MobiNord",
        "contact_nom": "Karim Benali",
        "contact_fonction": "Directeur technique",
        "contact_email": "k.benali@mobinord.fr",
        "contact_telephone": "+33 6 12 34 56 78",
        "adresse": "45 avenue de Lens, 62400 Béthune",
    },
    {
        "thematique": "mobilite_transports",
        "date_realisation": "2026-03",
        "budget": 45000,
        "contact_telephone": "+33612345678",
    },
    category="projet",
    nature="prive",
    criteria=("durable", "innovante"),
    thematique="MOBILITE",
    signatory="Karim Benali, Directeur technique",
    letter_date="3 février 2026",
)

FETE = _project(
    "fete",
    {
        "intitule": "Fête de quartier du Mont-Liébaut",
        "sous_thematique": "Évènementiel",
        "justification_criteres": (
            "La fête est préparée par un collectif d'habitants, d'associations et de "
            "commerçants qui se réunit chaque mois."
        ),
        "description": (
            "Une journée festive avec spectacles, repas partagé et jeux pour enfants.\n"
            "Plus de 600 habitants y ont participé en 2025."
        ),
        "lieu": "Place du Mont-Liébaut, Béthune",
        "date_realisation": "1er juin 2025",
        "partenaires": "Centre social du Mont-Liébaut, commerçants du quartier",
        "budget": "8.000,00 EUR",
        "porteur_structure": "Collectif des habitants du Mont-Liébaut",
        "contact_nom": "Jean-Pierre Dubois",
        "contact_fonction": "Coordinateur bénévole",
        "contact_email": "jp.dubois@laposte.net",
        "contact_telephone": "06 98 76 54 32",
        "adresse": "3 allée des Tilleuls, 62400 Béthune",
    },
    {
        "thematique": "loisirs_culture",
        "date_realisation": "2025-06-01",
        "budget": 8000,
        "contact_telephone": "+33698765432",
    },
    category="realisee",
    nature="particulier",
    criteria=("collaborative",),
    thematique="Loisirs et culture",
    signatory="Jean-Pierre Dubois",
    letter_date="20 juin 2025",
)

REPAIR = _project(
    "repair",
    {
        "intitule": "Repair Café béthunois",
        "sous_thematique": "Liens entre citoyens",
        "justification_criteres": (
            "Des bénévoles réparent avec les habitants (collaborative), les objets ne "
            "sont plus jetés (durable), un outil en ligne suit chaque réparation (innovante)."
        ),
        "description": (
            "Un samedi par mois, des bénévoles réparent gratuitement petit électroménager,\n"
            "vélos et vêtements avec leurs propriétaires."
        ),
        "lieu": "Maison des associations, rue de la Délivrance, Béthune",
        "date_realisation": "15/03/2025",
        "partenaires": "Emmaüs, Ressourcerie du Béthunois",
        "budget": "3 200 €",
        "porteur_structure": "Association Répar'Tout",
        "contact_nom": "Sophie Martin",
        "contact_fonction": "Trésorière",
        "contact_email": "contact@repartout.org",
        "contact_telephone": "0033 3 21 56 78 90",
        "adresse": "Maison des associations, 62400 Béthune",
    },
    {
        "thematique": "entraide_solidarite",
        "date_realisation": "2025-03-15",
        "budget": 3200,
        "contact_telephone": "+33321567890",
    },
    category="realisee",
    nature="associatif",
    criteria=("collaborative", "durable", "innovante"),
    thematique="Solidarité et entraide",
    signatory="Sophie Martin, Trésorière",
    letter_date="1er avril 2025",
)

CAPTEURS = _project(
    "capteurs",
    {
        "intitule": "Capteurs de qualité de l'air dans les écoles",
        "justification_criteres": (
            "Des capteurs connectés mesurent le CO2 en continu (innovante) et guident "
            "l'aération des classes pour économiser le chauffage (durable)."
        ),
        "description": (
            "Installation de capteurs de CO2 dans les 14 écoles élémentaires de la ville.\n"
            "Les mesures sont affichées dans chaque classe et sur un tableau de bord."
        ),
        "lieu": "Écoles élémentaires de Béthune",
        "date_realisation": "15.09.25",
        "partenaires": "Atmo Hauts-de-France",
        "budget": "15 k€",
        "maturite": "Étude de faisabilité terminée, appel d'offres en cours.",
        "porteur_structure": "Ville de Béthune, direction de l'éducation",
        "contact_nom": "Claire Dumont",
        "contact_fonction": "Cheffe de projet",
        "contact_email": "c.dumont@ville-bethune.fr",
        "contact_telephone": "03.21.64.00.00",
    },
    {
        "thematique": "sante_bien_etre",
        "date_realisation": "2025-09-15",
        "budget": 15000,
        "contact_telephone": "+33321640000",
    },
    category="projet",
    nature="public",
    criteria=("durable", "innovante"),
    thematique="Santé/bien être",
    signatory="Claire Dumont, Cheffe de projet",
    letter_date="10 juillet 2025",
)

BIODECHETS = _project(
    "biodechets",
    {
        "intitule": "Tri des biodéchets au marché couvert",
        "justification_criteres": "Les biodéchets des commerçants sont compostés sur place.",
        "description": (
            "Des bacs de tri sont installés pour les commerçants du marché couvert.\n"
            "Le compost produit est donné aux jardins familiaux."
        ),
        "lieu": "Marché couvert, place Clemenceau, Béthune",
        "date_realisation": "printemps 2026",
        "partenaires": "Syndicat mixte Artois Valorisation",
        "budget": "1,5 M€",
        "maturite": "Expérimentation sur deux stands depuis janvier 2026.",
        "porteur_structure": "Béthune Marchés SARL",
        "contact_nom": "Luc Vasseur",
        "contact_fonction": "Gérant",
        "contact_email": "LUC.VASSEUR@BETHUNE-MARCHES.FR",
        "contact_telephone": "03 21 11 22 33",
        "adresse": "8 place Clemenceau, 62400 Béthune",
    },
    {
        "thematique": "habitat_environnement",
        "budget": 1500000,
        "contact_email": "luc.vasseur@bethune-marches.fr",
        "contact_telephone": "+33321112233",
    },
    category="projet",
    nature="prive",
    criteria=("durable",),
    thematique="Déchets",
    signatory="Luc Vasseur, Gérant",
    letter_date="5 mars 2026",
)

PROJECTS = (POTAGER, COVOITURAGE, FETE, REPAIR, CAPTEURS, BIODECHETS)

# Labels as applicants retype them (variants from rules.toml).
VARIANT_LABELS = {
    "intitule": "Nom du projet",
    "categorie_label": "Catégorie",
    "thematique": "Thème",
    "sous_thematique": "Sous-thème",
    "criteres": "Critères",
    "justification_criteres": "Justification des critères",
    "description": "Présentation du projet",
    "lieu": "Localisation",
    "date_realisation": "Date prévue",
    "partenaires": "Partenaires associés",
    "budget": "Coût estimé",
    "maturite": "Avancement",
    "porteur_structure": "Porteur du projet",
    "porteur_nature": "Statut du porteur",
    "contact_nom": "Référent",
    "contact_fonction": "Fonction",
    "contact_email": "E-mail",
    "contact_telephone": "Tél.",
    "adresse": "Adresse",
}


def printed_labels(rules: Any) -> dict[str, str]:
    return {key: rule.label for key, rule in rules.fields.items()}


def _choices(rules: Any, key: str) -> dict[str, str]:
    kind = str(rules.fields[key].kind)
    source = {
        "category": rules.categories,
        "nature": rules.natures,
        "criteria": rules.criteria,
        "thematique": rules.thematiques,
    }[kind]
    return {value: choice.label for value, choice in source.items()}


def _ticked(project: Project, key: str) -> set[str]:
    if key == "criteres":
        return set(project.criteria)
    if key == "categorie_label":
        return {project.category}
    if key == "porteur_nature":
        return {project.nature} if project.nature else set()
    return set()


def _text_value(project: Project, key: str) -> str | None:
    if key == "thematique":
        return project.thematique
    return project.raw.get(key)


# --------------------------------------------------------------------------
# Text PDFs (reportlab)


class _Page:
    """A simple top-to-bottom writer over reportlab pages."""

    def __init__(self) -> None:
        self.regular, self.bold, _ = fonts()
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=A4)
        self.width, self.height = A4
        self.margin = 50
        self.y = self.height - self.margin
        self.page = 1

    def need(self, height: float) -> None:
        if self.y - height < self.margin:
            self.canvas.showPage()
            self.page += 1
            self.y = self.height - self.margin

    def text(self, text: str, *, x: float | None = None, bold: bool = False, size=10.0) -> None:
        x = self.margin if x is None else x
        font = self.bold if bold else self.regular
        for paragraph in text.split("\n"):
            for line in simpleSplit(paragraph, font, size, self.width - x - self.margin) or [""]:
                self.need(size + 4)
                self.y -= size + 4
                self.canvas.setFont(font, size)
                self.canvas.drawString(x, self.y, line)

    def cells(self, parts: Iterable[tuple[float, str]], *, size=10.0) -> None:
        """Texts at fixed x positions on one line (options with their boxes)."""
        self.need(size + 4)
        self.y -= size + 4
        self.canvas.setFont(self.regular, size)
        for x, text in parts:
            self.canvas.drawString(x, self.y, text)

    def gap(self, height: float = 6) -> None:
        self.y -= height

    def finish(self) -> bytes:
        self.canvas.save()
        return self.buffer.getvalue()


def _options_line(rules: Any, project: Project, key: str, style: str) -> list[str]:
    ticked = _ticked(project, key)
    return [
        f"{mark(style, value in ticked)} {label}".strip()
        for value, label in _choices(rules, key).items()
    ]


def _title(page: _Page) -> None:
    page.text("Label Béthune Smart City — Dossier d'intention", bold=True, size=15)
    page.gap(8)


def text_colon_pdf(rules: Any, project: Project, *, labels: dict[str, str], style: str) -> bytes:
    """``Label : value`` lines; options with boxes on the label's line."""
    page = _Page()
    _title(page)
    for key in rules.fields:
        label = labels[key]
        if key in ("criteres", "categorie_label", "porteur_nature"):
            options = _options_line(rules, project, key, style)
            page.text(f"{label} : " + "    ".join(options))
            continue
        value = _text_value(project, key)
        if value is None:
            continue
        page.text(f"{label} : {value}")
    page.gap(20)
    page.text("Fait à Béthune, le " + project.letter_date)
    return page.finish()


def text_next_line_pdf(rules: Any, project: Project, *, labels: dict[str, str]) -> bytes:
    """A bold label alone, its value on the following lines; ticks as a bare X."""
    page = _Page()
    _title(page)
    for key in rules.fields:
        page.gap(4)
        page.text(labels[key], bold=True)
        if key in ("criteres", "categorie_label", "porteur_nature"):
            ticked = _ticked(project, key)
            x = page.margin
            parts = []
            for value, label in _choices(rules, key).items():
                parts.append((x, "X" if value in ticked else ""))
                parts.append((x + 14, label))
                x += 30 + pdfmetrics.stringWidth(label, page.regular, 10) + 20
            page.cells(parts)
            continue
        value = _text_value(project, key)
        page.text(value or "")
    return page.finish()


def text_table_pdf(rules: Any, project: Project, *, labels: dict[str, str], style: str) -> bytes:
    """A ruled two-column table: label cell, value cell (boxes for options)."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold, _ = fonts()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=45, rightMargin=45)
    cell = ParagraphStyle("cell", fontName=regular, fontSize=9.5, leading=12)
    head = ParagraphStyle("head", fontName=bold, fontSize=9.5, leading=12)
    title = ParagraphStyle("title", fontName=bold, fontSize=15, leading=19)
    rows = []
    for key in rules.fields:
        if key in ("criteres", "categorie_label", "porteur_nature"):
            value = "&nbsp;&nbsp;&nbsp;&nbsp;".join(_options_line(rules, project, key, style))
        else:
            value = (_text_value(project, key) or "").replace("\n", "<br/>")
        rows.append([Paragraph(labels[key], head), Paragraph(value, cell)])
    table = Table(rows, colWidths=[170, 335])
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story = [Paragraph("Label Béthune Smart City — Dossier d'intention", title), Spacer(1, 12)]
    doc.build([*story, table])
    return buffer.getvalue()


def two_column_pairs_pdf(rules: Any, project: Project, *, labels: dict[str, str]) -> bytes:
    """No rules: labels (wrapped) in a left column, values in a right column."""
    page = _Page()
    _title(page)
    left_x, right_x, left_w = 50, 250, 165
    for key in rules.fields:
        if key in ("criteres", "categorie_label", "porteur_nature"):
            value = "   ".join(_options_line(rules, project, key, "brackets"))
        else:
            value = _text_value(project, key) or ""
        label_lines = simpleSplit(labels[key], page.bold, 10, left_w)
        value_lines = []
        for paragraph in value.split("\n"):
            value_lines += simpleSplit(paragraph, page.regular, 10, 545 - right_x) or [""]
        height = max(len(label_lines), len(value_lines)) * 13 + 8
        page.need(height)
        y = page.y
        page.canvas.setFont(page.bold, 10)
        for number, line in enumerate(label_lines):
            page.canvas.drawString(left_x, y - 13 * (number + 1), line)
        page.canvas.setFont(page.regular, 10)
        for number, line in enumerate(value_lines):
            page.canvas.drawString(right_x, y - 13 * (number + 1), line)
        page.y -= height
    return page.finish()


def two_column_flow_pdf(rules: Any, project: Project, *, labels: dict[str, str]) -> bytes:
    """A newspaper layout: ``Label : value`` paragraphs in two columns."""
    page = _Page()
    _title(page)
    keys = list(rules.fields)
    left_keys = keys[: len(keys) // 2 + 1]
    right_keys = keys[len(keys) // 2 + 1 :]
    top = page.y
    column_width = 235
    for x, column in ((50, left_keys), (310, right_keys)):
        y = top
        for key in column:
            if key in ("criteres", "categorie_label", "porteur_nature"):
                value = " ".join(_options_line(rules, project, key, "glyph"))
            else:
                value = _text_value(project, key)
                if value is None:
                    continue
            text = f"{labels[key]} : {value}"
            for paragraph in text.split("\n"):
                for line in simpleSplit(paragraph, page.regular, 9, column_width):
                    y -= 12
                    page.canvas.setFont(page.regular, 9)
                    page.canvas.drawString(x, y, line)
            y -= 6
    return page.finish()


# --------------------------------------------------------------------------
# Fillable forms


def _fill(pdf: bytes, values: dict[str, str]) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    for page in writer.pages:
        writer.update_page_form_field_values(page, values, auto_regenerate=False)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _strip_appearances(pdf: bytes) -> bytes:
    """Values only in the fields: no widget appearance, no NeedAppearances."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    for page in writer.pages:
        for ref in page.get("/Annots") or []:
            annot = ref.get_object()
            if "/AP" in annot:
                del annot[NameObject("/AP")]
    acro = writer._root_object.get("/AcroForm")
    if acro is not None and "/NeedAppearances" in acro.get_object():
        del acro.get_object()[NameObject("/NeedAppearances")]
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def form_values(rules: Any, project: Project) -> dict[str, str]:
    values: dict[str, str] = {}
    for key in rules.fields:
        if key == "criteres":
            for option in rules.criteria:
                values[f"criteres_{option}"] = "/Yes" if option in project.criteria else "/Off"
        elif key == "categorie_label":
            values[key] = f"/{project.category}"
        elif key == "porteur_nature":
            if project.nature:
                values[key] = f"/{project.nature}"
        elif key == "thematique":
            theme = project.expected["thematique"]
            values[key] = rules.thematiques[theme].label
        elif key in project.raw:
            values[key] = project.raw[key]
    return values


def form_pdf(rules: Any, project: Project, *, appearances: bool = True) -> bytes:
    filled = _fill(blank_form_pdf(rules), form_values(rules, project))
    return filled if appearances else _strip_appearances(filled)


def remade_form_pdf(rules: Any, project: Project, *, tooltips: bool) -> bytes:
    """Another tool's form: fields Texte1…, Case1…, Groupe1…; labels printed left.

    With ``tooltips`` the fields carry the labels as tooltips (variants); without,
    only the printed text beside each field tells what it is.
    """
    regular, bold, _ = fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    form = canvas.acroForm
    y = A4[1] - 60
    canvas.setFont(bold, 14)
    canvas.drawString(50, y, "Demande de label Smart City – formulaire")
    y -= 30
    values: dict[str, str] = {}
    counters = {"text": 0, "box": 0, "group": 0}
    style = {"borderWidth": 0.5, "fillColor": None, "forceBorder": True}

    def name(kind: str, prefix: str) -> str:
        counters[kind] += 1
        return f"{prefix}{counters[kind]}"

    for key, rule in rules.fields.items():
        label = VARIANT_LABELS[key]
        tall = str(rule.kind) == "multiline"
        height = 48 if tall else 18
        if y - height < 60:
            canvas.showPage()
            y = A4[1] - 60
        canvas.setFont(regular, 9)
        canvas.drawString(50, y - 12, label)
        tip = {"tooltip": label} if tooltips else {}
        if key in ("criteres", "porteur_nature", "categorie_label"):
            x = 200
            group = name("group", "Groupe") if key != "criteres" else None
            for number, (value, text) in enumerate(_choices(rules, key).items(), start=1):
                ticked = value in _ticked(project, key)
                if key == "criteres":
                    box = name("box", "Case")
                    form.checkbox(
                        name=box,
                        x=x,
                        y=y - 14,
                        size=11,
                        checked=False,
                        fieldFlags="",
                        **({"tooltip": text} if tooltips else {}),
                    )
                    if ticked:
                        values[box] = "/Yes"
                else:
                    # Export values that mean nothing: "Choix1", "Choix2"…
                    export = f"Choix{number}" if key == "categorie_label" else text
                    form.radio(
                        name=group,
                        value=export,
                        x=x,
                        y=y - 14,
                        size=11,
                        selected=False,
                        fieldFlags="noToggleToOff radio",
                        **tip,
                    )
                    if ticked:
                        values[group] = f"/{export}"
                canvas.setFont(regular, 9)
                canvas.drawString(x + 14, y - 12, text)
                x += 24 + pdfmetrics.stringWidth(text, regular, 9) + 14
            y -= 26
            continue
        field_name = name("text", "Texte")
        form.textfield(
            name=field_name,
            x=200,
            y=y - height,
            width=345,
            height=height,
            maxlen=None,
            fieldFlags="multiline" if tall else "",
            **tip,
            **style,
        )
        value = _text_value(project, key)
        if value:
            values[field_name] = value
        y -= height + 10
    canvas.save()
    return _fill(buffer.getvalue(), values)


# --------------------------------------------------------------------------
# Word documents


def _docx_bytes(document: Any) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_table(rules: Any, project: Project, *, labels: dict[str, str], style: str) -> bytes:
    document = Document()
    document.add_heading("Label Béthune Smart City — Dossier d'intention", level=1)
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for key in rules.fields:
        row = table.add_row()
        row.cells[0].text = labels[key]
        if key in ("criteres", "categorie_label", "porteur_nature"):
            row.cells[1].text = "    ".join(_options_line(rules, project, key, style))
        elif key == "thematique":
            # All pillars listed, the right one ticked.
            ticked = project.expected["thematique"]
            lines = [
                f"{mark(style, value == ticked)} {label}"
                for value, label in _choices(rules, key).items()
            ]
            row.cells[1].text = "\n".join(lines)
        else:
            row.cells[1].text = _text_value(project, key) or ""
    return _docx_bytes(document)


def docx_paragraphs(rules: Any, project: Project, *, labels: dict[str, str]) -> bytes:
    document = Document()
    document.add_heading("Dossier d'intention – label Béthune Smart City", level=1)
    for key in rules.fields:
        if key in ("criteres", "categorie_label", "porteur_nature"):
            ticked = _ticked(project, key)
            options = "\t".join(
                f"{'✓' if v in ticked else '☐'} {label}"
                for v, label in _choices(rules, key).items()
            )
            document.add_paragraph(f"{labels[key]} :\t{options}")
            continue
        value = _text_value(project, key)
        if value is None:
            continue
        if "\n" in value:
            document.add_paragraph(f"{labels[key]} :")
            for line in value.split("\n"):
                document.add_paragraph(line)
        else:
            document.add_paragraph(f"{labels[key]} : {value}")
    return _docx_bytes(document)


def _checkbox_sdt(checked: bool) -> Any:
    glyph = "☒" if checked else "☐"
    value = "1" if checked else "0"
    return parse_xml(
        f"<w:sdt {nsdecls('w', 'w14')}><w:sdtPr><w14:checkbox>"
        f'<w14:checked w14:val="{value}"/>'
        '<w14:checkedState w14:val="2612" w14:font="MS Gothic"/>'
        '<w14:uncheckedState w14:val="2610" w14:font="MS Gothic"/>'
        "</w14:checkbox></w:sdtPr><w:sdtContent><w:r>"
        # Word may leave a stale glyph: the state above is what counts.
        f"<w:t>{'☐' if checked else glyph}</w:t></w:r></w:sdtContent></w:sdt>"
    )


def _text_sdt(text: str | None) -> Any:
    if text is None:
        content = "<w:r><w:t>Cliquez ou appuyez ici pour entrer du texte.</w:t></w:r>"
        placeholder = "<w:showingPlcHdr/>"
    else:
        content = "".join(
            f'<w:r><w:t xml:space="preserve">{_xml(line)}</w:t></w:r>'
            + ("<w:r><w:br/></w:r>" if n < len(text.split("\n")) - 1 else "")
            for n, line in enumerate(text.split("\n"))
        )
        placeholder = ""
    return parse_xml(
        f"<w:sdt {nsdecls('w')}><w:sdtPr><w:alias w:val='Réponse'/>{placeholder}</w:sdtPr>"
        f"<w:sdtContent>{content}</w:sdtContent></w:sdt>"
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def docx_content_controls(rules: Any, project: Project) -> bytes:
    """Word's own form: content controls for answers, checkbox controls for options."""
    document = Document()
    document.add_heading("Label Béthune Smart City — Dossier d'intention", level=1)
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for key, rule in rules.fields.items():
        row = table.add_row()
        row.cells[0].text = rule.label
        paragraph = row.cells[1].paragraphs[0]
        if key in ("criteres", "categorie_label", "porteur_nature", "thematique"):
            ticked = (
                {project.expected["thematique"]} if key == "thematique" else _ticked(project, key)
            )
            for value, label in _choices(rules, key).items():
                paragraph._p.append(_checkbox_sdt(value in ticked))
                paragraph.add_run(f" {label}    ")
            continue
        paragraph._p.append(_text_sdt(_text_value(project, key)))
    return _docx_bytes(document)


def docx_header_rows(rules: Any, project: Project) -> bytes:
    """Labels in a header row, answers in the row below; the rest as paragraphs."""
    document = Document()
    document.add_heading("Dossier d'intention", level=1)
    keys = ["intitule", "thematique", "lieu", "date_realisation"]
    table = document.add_table(rows=2, cols=len(keys))
    table.style = "Table Grid"
    for column, key in enumerate(keys):
        table.rows[0].cells[column].text = rules.fields[key].label
        table.rows[1].cells[column].text = _text_value(project, key) or ""
    document.add_paragraph()
    for key in rules.fields:
        if key in keys:
            continue
        if key in ("criteres", "categorie_label", "porteur_nature"):
            options = "   ".join(_options_line(rules, project, key, "check"))
            document.add_paragraph(f"{rules.fields[key].label} : {options}")
            continue
        value = _text_value(project, key)
        if value is not None:
            document.add_paragraph(f"{rules.fields[key].label} : {value}")
    return _docx_bytes(document)


def _shout(label: str) -> str:
    """A label retyped in capitals without accents, as on an old typewriter form."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", label)
    return "".join(c for c in plain if not unicodedata.combining(c)).upper()


def text_leaders_pdf(rules: Any, project: Project) -> bytes:
    """CAPITAL labels, dotted leaders, criteria answered oui/non."""
    page = _Page()
    page.text("DOSSIER D'INTENTION - LABEL BETHUNE SMART CITY", bold=True, size=13)
    page.gap(8)
    for key in rules.fields:
        label = _shout(rules.fields[key].label)
        if key == "criteres":
            answers = "   ".join(
                f"{text} : {'oui' if value in project.criteria else 'non'}"
                for value, text in _choices(rules, key).items()
            )
            page.text(f"{label} ...... {answers}")
            continue
        if key in ("categorie_label", "porteur_nature"):
            value = next(
                (text for v, text in _choices(rules, key).items() if v in _ticked(project, key)),
                None,
            )
        else:
            value = _text_value(project, key)
        if value is None:
            continue
        first, *rest = value.split("\n")
        page.text(f"{label} ........ {first}")
        for line in rest:
            page.text(line)
    return page.finish()


def plain_text_dossier(rules: Any, project: Project) -> bytes:
    """A dossier typed in a text file, labels retyped with a twist."""
    twisted = {
        "intitule": "Intitulé du projet",
        "lieu": "Lieu de l'action",
        "contact_telephone": "Téléphone portable",
        "contact_email": "Courriel du référent",
    }
    lines = []
    for key in rules.fields:
        label = twisted.get(key, VARIANT_LABELS[key])
        if key == "criteres":
            value = ", ".join(rules.criteria[c].label.lower() for c in project.criteria)
        elif key == "categorie_label":
            value = rules.categories[project.category].label
        elif key == "porteur_nature":
            value = rules.natures[project.nature].label if project.nature else None
        else:
            value = _text_value(project, key)
        if value is None:
            continue
        if "\n" in value:
            lines += [f"{label} :", *value.split("\n"), ""]
        else:
            lines.append(f"{label} : {value}")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def printed_form_scan(rules: Any, project: Project, *, seed: int) -> bytes:
    """The filled form printed (field appearances drawn) and scanned to a PDF."""
    import pypdfium2 as pdfium

    data = form_pdf(rules, project)
    document = pdfium.PdfDocument(data)
    document.init_forms()
    images = []
    try:
        for page in document:
            bitmap = page.render(scale=200 / 72, may_draw_forms=True, grayscale=True)
            images.append(degrade(bitmap.to_pil().copy(), seed=seed))
            bitmap.close()
            page.close()
    finally:
        document.close()
    return image_pdf(images)


# --------------------------------------------------------------------------
# Letters


def letter_lines(project: Project) -> list[str]:
    structure = project.raw.get("porteur_structure", "")
    return [
        structure,
        project.raw.get("adresse", "62400 Béthune"),
        "",
        "Monsieur Olivier Gacquerre",
        "Maire de Béthune",
        "Hôtel de Ville",
        "62400 Béthune",
        "",
        f"Béthune, le {project.letter_date}",
        "",
        "Objet : demande de labellisation « Béthune Smart City »",
        "",
        "Monsieur le Maire,",
        "",
        f"Nous avons l'honneur de solliciter le label Béthune Smart City pour notre action "
        f"« {project.raw['intitule']} ». Vous trouverez ci-joint le dossier d'intention "
        "complété qui présente le projet, ses partenaires et son calendrier.",
        "",
        "Nous restons à votre disposition pour vous présenter cette initiative.",
        "",
        "Nous vous prions d'agréer, Monsieur le Maire, l'expression de notre haute considération.",
        "",
        project.signatory,
    ]


def letter_pdf(project: Project) -> bytes:
    page = _Page()
    for line in letter_lines(project):
        if line:
            page.text(line, size=11)
        else:
            page.gap(8)
    return page.finish()


def letter_docx(project: Project) -> bytes:
    document = Document()
    for line in letter_lines(project):
        document.add_paragraph(line)
    return _docx_bytes(document)


def letter_and_dossier_docx(rules: Any, project: Project) -> bytes:
    """One Word file: the letter, a page break, then the dossier as a table."""
    from docx.enum.text import WD_BREAK

    document = Document()
    for line in letter_lines(project):
        document.add_paragraph(line)
    document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.add_heading("Dossier d'intention", level=1)
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for key, rule in rules.fields.items():
        row = table.add_row()
        row.cells[0].text = rule.label
        if key in ("criteres", "categorie_label", "porteur_nature"):
            row.cells[1].text = "   ".join(_options_line(rules, project, key, "brackets"))
        else:
            row.cells[1].text = _text_value(project, key) or ""
    return _docx_bytes(document)


def combined_pdf(*parts: bytes) -> bytes:
    writer = PdfWriter()
    for part in parts:
        writer.append(PdfReader(io.BytesIO(part)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --------------------------------------------------------------------------
# Scans


def render_page(pdf: bytes, page: int = 0, dpi: int = 200) -> Image.Image:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        bitmap = document[page].render(scale=dpi / 72, grayscale=True)
        image = bitmap.to_pil().copy()
        bitmap.close()
        return image
    finally:
        document.close()


def degrade(image: Image.Image, *, seed: int, angle: float = 0.6) -> Image.Image:
    """What a cheap scanner does: slight rotation, blur, speckles, grey paper."""
    rng = random.Random(seed)
    image = image.convert("L").rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    noise = Image.frombytes("L", image.size, rng.randbytes(image.width * image.height))
    dark = noise.point(lambda v: 100 if v > 254 else 255)
    light = noise.point(lambda v: 210 if v < 1 else 0)
    image = ImageChops.darker(image, dark)
    image = ImageChops.lighter(image, light)
    return image.point(lambda v: int(v * 0.88 + 18))


def jpeg(image: Image.Image, quality: int = 72) -> bytes:
    out = io.BytesIO()
    image.convert("L").save(out, "JPEG", quality=quality)
    return out.getvalue()


def image_pdf(images: list[Image.Image], dpi: int = 200) -> bytes:
    out = io.BytesIO()
    first, *rest = [im.convert("L") for im in images]
    first.save(out, "PDF", resolution=dpi, save_all=True, append_images=rest)
    return out.getvalue()


def scanned(pdf: bytes, *, seed: int) -> list[Image.Image]:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    pages = len(document)
    document.close()
    return [degrade(render_page(pdf, n), seed=seed + n) for n in range(pages)]


def photo(seed: int, size: tuple[int, int] = (900, 600)) -> bytes:
    """A supporting visual: a noisy picture, large enough not to be a logo."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (120, 170, 90))
    draw = ImageDraw.Draw(image)
    for _ in range(300):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x, y, x + rng.randrange(5, 60), y + rng.randrange(5, 60)), fill=colour)
    return jpeg(image.convert("RGB").convert("L"), quality=85)


def logo() -> bytes:
    image = Image.new("RGB", (120, 40), (0, 90, 160))
    ImageDraw.Draw(image).text((10, 12), "BSC", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# --------------------------------------------------------------------------
# Items


@dataclass(frozen=True)
class Item:
    """One message's documents and the reading expected from them."""

    name: str
    files: tuple[tuple[str, bytes], ...]
    fields: dict[str, Any]
    dossier: str | None  # file name of the dossier
    letter: str | None  # file name of the letter
    letter_page: int | None = None
    ocr: bool = False
    # Warnings expected to mention these words (e.g. an invalid e-mail).
    warnings: tuple[str, ...] = ()
    roles: dict[str, str] = field(default_factory=dict)

    def attachments(self) -> list[Attachment]:
        return [attachment(name, data) for name, data in self.files]


def attachment(name: str, data: bytes, content_type: str = "application/octet-stream"):
    return Attachment(
        filename=name,
        content_type=content_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def _without(project: Project, *keys: str) -> Project:
    raw = {k: v for k, v in project.raw.items() if k not in keys}
    expected = {k: v for k, v in project.expected.items() if k not in keys}
    return replace(project, raw=raw, expected=expected)


def _item(
    name: str,
    project: Project | None,
    dossier: tuple[str, bytes] | None,
    letter: tuple[str, bytes] | None,
    *,
    extra: Iterable[tuple[str, bytes]] = (),
    letter_page: int | None = None,
    ocr: bool = False,
    expected: dict[str, Any] | None = None,
    warnings: tuple[str, ...] = (),
) -> Item:
    files = [f for f in (dossier, letter) if f is not None] + list(extra)
    fields = dict(project.expected) if project and expected is None else dict(expected or {})
    return Item(
        name=name,
        files=tuple(files),
        fields=fields,
        dossier=dossier[0] if dossier else None,
        letter=(letter[0] if letter else (dossier[0] if letter_page else None)),
        letter_page=letter_page,
        ocr=ocr,
        warnings=warnings,
    )


def build_corpus(rules: Any, *, with_ocr: bool = True) -> list[Item]:
    """Every item of the corpus (OCR items are the slow ones)."""
    printed = printed_labels(rules)
    items: list[Item] = [
        _item(
            "form-filled-pypdf",
            POTAGER,
            ("dossier_intention.pdf", form_pdf(rules, POTAGER)),
            ("courrier_maire.pdf", letter_pdf(POTAGER)),
            extra=[("photo_potager.jpg", photo(1)), ("logo.png", logo())],
        ),
        _item(
            "form-no-appearance",
            COVOITURAGE,
            ("formulaire.pdf", form_pdf(rules, COVOITURAGE, appearances=False)),
            ("lettre.docx", letter_docx(COVOITURAGE)),
        ),
        _item(
            "form-remade-tooltips",
            FETE,
            ("candidature_fete.pdf", remade_form_pdf(rules, FETE, tooltips=True)),
            ("courrier.pdf", letter_pdf(FETE)),
        ),
        _item(
            "form-remade-printed-labels",
            REPAIR,
            ("repair_cafe.pdf", remade_form_pdf(rules, REPAIR, tooltips=False)),
            ("demande_label.pdf", letter_pdf(REPAIR)),
        ),
        _item(
            "text-table-glyphs",
            CAPTEURS,
            ("dossier.pdf", text_table_pdf(rules, CAPTEURS, labels=printed, style="glyph")),
            ("courrier_maire.pdf", letter_pdf(CAPTEURS)),
        ),
        _item(
            "text-colon-variants",
            BIODECHETS,
            (
                "biodechets.pdf",
                text_colon_pdf(rules, BIODECHETS, labels=VARIANT_LABELS, style="brackets"),
            ),
            None,
        ),
        _item(
            "text-next-line-bare-x",
            POTAGER,
            ("dossier potager.pdf", text_next_line_pdf(rules, POTAGER, labels=printed)),
            ("Lettre au maire.docx", letter_docx(POTAGER)),
        ),
        _item(
            "two-column-pairs",
            COVOITURAGE,
            ("dossier.pdf", two_column_pairs_pdf(rules, COVOITURAGE, labels=printed)),
            ("courrier.pdf", letter_pdf(COVOITURAGE)),
        ),
        _item(
            "two-column-flow",
            FETE,
            ("fete_dossier.pdf", two_column_flow_pdf(rules, FETE, labels=printed)),
            ("courrier.pdf", letter_pdf(FETE)),
        ),
        _item(
            "docx-table-glyphs",
            REPAIR,
            ("dossier.docx", docx_table(rules, REPAIR, labels=printed, style="glyph")),
            ("courrier.docx", letter_docx(REPAIR)),
        ),
        _item(
            "docx-paragraphs-checks",
            CAPTEURS,
            ("capteurs.docx", docx_paragraphs(rules, CAPTEURS, labels=VARIANT_LABELS)),
            ("lettre.pdf", letter_pdf(CAPTEURS)),
        ),
        _item(
            "docx-content-controls",
            BIODECHETS,
            ("formulaire.docx", docx_content_controls(rules, BIODECHETS)),
            ("courrier.pdf", letter_pdf(BIODECHETS)),
        ),
        _item(
            "combined-letter-then-text",
            COVOITURAGE,
            (
                "candidature.pdf",
                combined_pdf(
                    letter_pdf(COVOITURAGE),
                    text_colon_pdf(rules, COVOITURAGE, labels=printed, style="paren"),
                ),
            ),
            None,
            letter_page=1,
        ),
        _item(
            "combined-letter-then-form",
            CAPTEURS,
            (
                "dossier_complet.pdf",
                combined_pdf(letter_pdf(CAPTEURS), form_pdf(rules, CAPTEURS)),
            ),
            None,
            letter_page=1,
        ),
        _item(
            "missing-fields",
            _without(POTAGER, "description", "contact_email", "lieu"),
            (
                "dossier.pdf",
                text_colon_pdf(
                    rules,
                    _without(POTAGER, "description", "contact_email", "lieu"),
                    labels=printed,
                    style="glyph",
                ),
            ),
            ("courrier.pdf", letter_pdf(POTAGER)),
        ),
        _item(
            "blank-form",
            None,
            ("dossier_intention.pdf", blank_form_pdf(rules)),
            ("courrier.pdf", letter_pdf(REPAIR)),
            expected={},
        ),
        _item(
            "letter-only",
            None,
            None,
            ("courrier_maire.pdf", letter_pdf(FETE)),
            extra=[("photo.jpg", photo(2))],
            expected={},
        ),
        _item(
            "invalid-email",
            REPAIR,
            (
                "dossier.docx",
                docx_table(
                    rules,
                    replace(
                        REPAIR, raw={**REPAIR.raw, "contact_email": "sophie.martin(at)gmail.com"}
                    ),
                    labels=printed,
                    style="brackets",
                ),
            ),
            ("courrier.docx", letter_docx(REPAIR)),
            expected={k: v for k, v in REPAIR.expected.items() if k != "contact_email"},
            warnings=("contact_email",),
        ),
    ]
    items += [
        _item(
            "docx-header-rows",
            BIODECHETS,
            ("dossier.docx", docx_header_rows(rules, BIODECHETS)),
            ("courrier.docx", letter_docx(BIODECHETS)),
        ),
        _item(
            "text-capitals-leaders-oui-non",
            FETE,
            ("DOSSIER.PDF", text_leaders_pdf(rules, FETE)),
            ("courrier.pdf", letter_pdf(FETE)),
        ),
        _item(
            "plain-text-file",
            REPAIR,
            ("dossier.txt", plain_text_dossier(rules, REPAIR)),
            ("courrier.pdf", letter_pdf(REPAIR)),
        ),
        _item(
            "docx-letter-then-dossier",
            POTAGER,
            ("candidature.docx", letter_and_dossier_docx(rules, POTAGER)),
            None,
            letter_page=None,
        ),
    ]
    items[-1] = replace(items[-1], letter="candidature.docx")
    if with_ocr:
        items += ocr_items(rules)
    return items


def ocr_items(rules: Any) -> list[Item]:
    """Scans: an image-only PDF dossier, a JPEG dossier, a scanned letter."""
    printed = printed_labels(rules)
    dossier_text = text_colon_pdf(rules, REPAIR, labels=printed, style="brackets")
    flow = text_next_line_pdf(rules, FETE, labels=printed)
    return [
        _item(
            "scan-pdf-dossier",
            REPAIR,
            ("scan_dossier.pdf", image_pdf(scanned(dossier_text, seed=7))),
            ("courrier_maire.jpg", jpeg(degrade(render_page(letter_pdf(REPAIR)), seed=3))),
            ocr=True,
        ),
        _item(
            "scan-of-printed-form",
            BIODECHETS,
            ("scan.pdf", printed_form_scan(rules, BIODECHETS, seed=21)),
            ("courrier.pdf", letter_pdf(BIODECHETS)),
            ocr=True,
        ),
        _item(
            "scan-sideways-letter",
            REPAIR,
            ("dossier.docx", docx_table(rules, REPAIR, labels=printed, style="check")),
            (
                "IMG_0007.jpg",
                jpeg(degrade(render_page(letter_pdf(REPAIR)), seed=4).rotate(90, expand=True)),
            ),
            ocr=True,
        ),
        _item(
            "scan-jpeg-dossier",
            FETE,
            ("IMG_2041.jpg", jpeg(degrade(render_page(flow, 0), seed=11, angle=-0.4))),
            ("courrier.pdf", letter_pdf(FETE)),
            ocr=True,
            expected=_first_page_fields(rules, FETE, flow),
        ),
    ]


def _first_page_fields(rules: Any, project: Project, pdf: bytes) -> dict[str, Any]:
    """The fields whose labels are printed on the first page of ``pdf``."""
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    folded = text.casefold()
    keys = [k for k in rules.fields if rules.fields[k].label.casefold() in folded]
    # A field whose label ends the page has its value on the next page.
    present = {k: v for k, v in project.expected.items() if k in keys}
    last = keys[-1] if keys else None
    value = _text_value(project, last) if last else None
    if last and value and value.split("\n")[0].casefold() not in folded:
        present.pop(last, None)
    return present


# --------------------------------------------------------------------------
# Hostile documents


def xref_loop_pdf() -> bytes:
    """A PDF whose trailer /Prev points back at itself, and whose page tree loops."""
    body = (
        b"%PDF-1.4\n"
        b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n"
    )
    xref_at = len(body)
    xref = (
        b"xref\n0 4\n0000000000 65535 f \n"
        + b"".join(b"%010d 00000 n \n" % body.index(b"%d 0 obj" % n) for n in (1, 2, 3))
        + b"trailer << /Size 4 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
        % (xref_at, xref_at)
    )
    return body + xref


def bomb_pdf(expanded_gb: float = 2.0) -> bytes:
    """A one-page PDF whose content stream inflates to gigabytes of zeros.

    Built cheaply: deflate blocks of zeros after a full flush are identical,
    so one block is compressed once and repeated.
    """
    chunk = bytes(64 * 2**20)
    compressor = zlib.compressobj(9)
    head = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    repeats = max(1, int(expanded_gb * 1024 / 64) - 1)
    # The stream's checksum is wrong; the inflating has to happen first anyway.
    stream = head + block * repeats + tail
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return _assemble_pdf(objects)


def _assemble_pdf(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def many_pages_pdf(pages: int = 2000) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf(rules: Any) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(letter_pdf(POTAGER))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def huge_image_png(megapixels: int = 100) -> bytes:
    side = int((megapixels * 1_000_000) ** 0.5)
    out = io.BytesIO()
    Image.new("1", (side, side), 1).save(out, "PNG", optimize=True)
    return out.getvalue()


def hostile_files(rules: Any) -> dict[str, tuple[str, Callable[[], bytes]]]:
    """name -> (file name, builder)."""
    return {
        "xref-loop": ("boucle.pdf", xref_loop_pdf),
        "bomb": ("bombe.pdf", bomb_pdf),
        "2000-pages": ("annexes.pdf", many_pages_pdf),
        "encrypted": ("protege.pdf", lambda: encrypted_pdf(rules)),
        "100-megapixels": ("plan.png", huge_image_png),
        "empty": ("dossier.pdf", lambda: b""),
        "jpeg-named-pdf": ("dossier.pdf", lambda: photo(5)),
        "garbage-docx": ("dossier.docx", lambda: random.Random(9).randbytes(4000)),
    }
