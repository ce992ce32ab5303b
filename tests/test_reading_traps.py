"""The reading traps of real producers (issue 15), each on a small synthetic document.

Paragraph breaks (line gaps, empty DOCX paragraphs), hyphenated wraps,
stop words at a line start, label cells wrapped over two lines, table rows
split across a page break, unmapped glyphs ("Intitul(cid:1)"), tick boxes
drawn as vector shapes on a flattened form, tick boxes measured by their ink
on a scan, and uncertainty as a result: a required choice that cannot be
told is neither an answer nor a missing field.
"""

from __future__ import annotations

import io
import re

from docx import Document
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from mailbot.config import load_config
from parsers.documents import DocumentLimits, DocumentText, Word, extract_document
from parsers.documents.layout import join_lines
from parsers.documents.marks import EMPTY_BOX, TICKED_BOX, box_words, ink_boxes
from parsers.dossier import read_dossier, restore_unmapped
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import attachment

RULES = load_config(SHIPPED_CONFIG).rules
LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=60)


def text_doc(text: str | tuple[str, ...], **extra) -> DocumentText:
    pages = (text,) if isinstance(text, str) else text
    return DocumentText(sha256="a" * 64, filename="dossier.pdf", kind="pdf", pages=pages, **extra)


def read(text: str | tuple[str, ...], **extra):
    return read_dossier([text_doc(text, **extra)], rules=RULES)


HEAD = (
    "Intitulé de l'action ou du projet : Potager solidaire\n"
    "Catégorie de label demandée : ☒ 1 - Initiative réalisée ☐ 2 - Projet\n"
    "Thématique : Habitat – Environnement\n"
    "Critère(s) Smart City : ☒ Collaborative ☐ Durable ☐ Innovante\n"
)


MORE = (
    "Lieu de réalisation : Square Blum\n"
    "Description de l'action : Un jardin.\n"
    "Nom et prénom du référent : Jean Dupont\n"
    "Courriel : jean.dupont@example.org\n"
)


def words_line(texts: list[str], *, top: float, height: float = 10.0) -> list[Word]:
    out, x = [], 50.0
    for text in texts:
        out.append(Word(x, x + 6 * len(text), top, top + height, text))
        x += 6 * len(text) + 4
    return out


# --------------------------------------------------------------------------
# Lines


def test_a_gap_wider_than_a_line_is_a_paragraph_break():
    lines = [
        words_line(["Première", "ligne"], top=100),
        words_line(["suite", "du", "paragraphe."], top=112),  # wrapped: 2 pt apart
        words_line(["Second", "paragraphe."], top=136),  # 14 pt apart: a break
    ]
    assert join_lines(lines) == [
        "Première ligne",
        "suite du paragraphe.",
        "",
        "Second paragraphe.",
    ]
    assert "" not in join_lines(lines, paragraphs=False)


def test_paragraph_breaks_survive_into_the_description():
    reading = read(
        HEAD + "Description de l'action :\nUn jardin partagé\npour tous.\n\nDes ateliers.\n"
    )
    assert reading.fields["description"] == "Un jardin partagé pour tous.\n\nDes ateliers."


def test_empty_docx_paragraphs_in_a_cell_are_paragraph_breaks():
    document = Document()
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Description de l'action"
    cell = table.cell(0, 1)
    cell.text = "Premier paragraphe."
    cell.add_paragraph("")
    cell.add_paragraph("Second paragraphe.")
    out = io.BytesIO()
    document.save(out)
    doc = extract_document(attachment("dossier.docx", out.getvalue()), limits=LIMITS)
    assert doc.tables[0][0][0][1] == "Premier paragraphe.\n\nSecond paragraphe."


def test_a_hyphenated_wrap_keeps_its_hyphen_and_no_space():
    reading = read(
        HEAD + "Lieu de réalisation : Toute la région Nord-Pas-\nde-Calais\n"
        "Description de l'action :\nVenus du Nord-Pas-\nde-Calais entier.\n"
    )
    assert reading.fields["lieu"] == "Toute la région Nord-Pas-de-Calais"
    assert reading.fields["description"] == "Venus du Nord-Pas-de-Calais entier."


def test_a_wrapped_line_starting_with_a_stop_word_does_not_end_the_field():
    reading = read(
        HEAD + "Description de l'action :\nChaque participant appose sa\n"
        "signature. Les séances sont évaluées.\nLe mobilier est construit.\n"
        "Fait à partir de palettes récupérées.\n"
        "Fait à Béthune, le 4 novembre 2025\nSignature du porteur :\nJean Dupont\n"
    )
    description = reading.fields["description"]
    assert "signature. Les séances" in description
    assert description.endswith("Fait à partir de palettes récupérées.")
    assert "Béthune, le 4" not in description


# --------------------------------------------------------------------------
# Labels and cells


def test_a_label_cell_wrapped_over_two_lines_is_not_half_matched():
    reading = read(
        HEAD + "Date de réalisation ou date\t12/10/2025\nprévisionnelle *\n"
        "Lieu de réalisation (territoire de\tQuartier du Mont-Liébaut\nBéthune) *\n"
    )
    assert reading.fields["date_realisation"] == "2025-10-12"
    assert reading.fields["lieu"] == "Quartier du Mont-Liébaut"


def test_a_table_row_split_across_a_page_break_is_rejoined():
    first = (("Budget estimé (€)", "950 €"), ("État d'avancement (projets", "Prototype testé."))
    second = (("uniquement)", "Déploiement prévu."), ("Nom de la structure ou du porteur", "ACME"))
    reading = read(
        (HEAD + MORE + "Budget estimé (€)\t950 €", "Nom de la structure ou du porteur\tACME"),
        tables=((first,), (second,)),
    )
    assert reading.fields["maturite"] == "Prototype testé.\n\nDéploiement prévu."
    assert reading.fields["porteur_structure"] == "ACME"


def test_a_table_cell_of_justified_text_has_no_tabs(tmp_path):
    # Words far apart inside one cell (justified text) stay one value:
    # "Partenaires réunis…" is not the label "Partenaires".
    pdf = io.BytesIO()
    page = canvas.Canvas(pdf, pagesize=A4)
    page.rect(40, 700, 200, 30)
    page.rect(240, 700, 300, 30)
    page.setFont("Helvetica", 10)
    page.drawString(45, 712, "État d'avancement (projets uniquement)")
    for x, word in ((245, "Partenaires"), (340, "réunis,"), (420, "convention"), (500, "signée.")):
        page.drawString(x, 712, word)
    page.save()
    doc = extract_document(attachment("dossier.pdf", pdf.getvalue()), limits=LIMITS)
    cells = [cell for table in doc.tables[0] for row in table for cell in row]
    assert "Partenaires réunis, convention signée." in cells


# --------------------------------------------------------------------------
# Glyphs without Unicode


def test_unmapped_glyphs_are_restored_from_the_form_labels():
    text = (
        "Intitul(cid:1) de l'action ou du projet *\n"
        "Compl(cid:1)tez ce dossier\n"
        "Budget estim(cid:1) ((cid:4))"
    )
    restored = restore_unmapped(text, RULES)
    assert restored.splitlines() == [
        "Intitulé de l'action ou du projet *",
        "Complétez ce dossier",
        "Budget estimé (\ufffd)",
    ]


def test_a_dossier_with_unmapped_label_glyphs_is_read():
    reading = read(
        "Intitul(cid:1) de l'action ou du projet *\nJardins partagés\n"
        "Th(cid:1)matique *\nAlimentation – Consommation\n"
        "Crit(cid:3)re(s) Smart City *\n☒ Collaborative ☐ Durable ☐ Innovante\n"
        "Budget estim(cid:1) ((cid:4))\n12 500 €\n"
    )
    assert reading.fields["intitule"] == "Jardins partagés"
    assert reading.fields["thematique"] == "alimentation_consommation"
    assert reading.fields["criteres"] == ["collaborative"]
    assert reading.fields["budget"] == 12500


# --------------------------------------------------------------------------
# Boxes drawn on a flattened form


def shape(x0, top, size, *, fill=None, stroke=True):
    return {
        "x0": x0,
        "x1": x0 + size,
        "top": top,
        "bottom": top + size,
        "fill": fill is not None,
        "non_stroking_color": fill,
        "stroke": stroke,
        "stroking_color": (0.45, 0.5, 0.6),
    }


def test_drawn_boxes_become_ticked_or_empty_boxes_before_their_option():
    words = [Word(64, 120, 100, 110, "Collaborative"), Word(166, 200, 100, 110, "Durable")]
    objects = [
        shape(50, 100, 10, fill=(1.0, 1.0, 1.0)),
        shape(51, 101, 8, fill=(0.0, 0.0, 0.0), stroke=False),  # the tick
        shape(152, 100, 10, fill=(1.0, 1.0, 1.0)),
        shape(300, 100, 10, fill=(1.0, 1.0, 1.0)),  # no option beside it
    ]
    boxes = sorted(box_words(objects, words), key=lambda w: w.x0)
    assert [(round(b.x0), b.text) for b in boxes] == [(50, TICKED_BOX), (152, EMPTY_BOX)]


def test_a_flattened_form_reads_its_choices_from_the_drawn_marks():
    pdf = io.BytesIO()
    page = canvas.Canvas(pdf, pagesize=A4)
    page.setFont("Helvetica", 10)
    y = 780
    page.drawString(50, y, "Intitulé de l'action ou du projet")
    page.drawString(50, y - 14, "Potager partagé")
    page.drawString(50, y - 40, "Catégorie de label demandée")
    for x, option, ticked in ((50, "1 - Initiative réalisée", False), (200, "2 - Projet", True)):
        page.setFillColorRGB(1, 1, 1)
        page.circle(x + 5, y - 57, 5, fill=1)
        if ticked:
            page.setFillColorRGB(0, 0, 0)
            page.circle(x + 5, y - 57, 2, stroke=0, fill=1)
        page.setFillColorRGB(0, 0, 0)
        page.drawString(x + 14, y - 60, option)
    page.drawString(50, y - 80, "Critère(s) Smart City")
    for number, line in enumerate(MORE.splitlines()):
        page.drawString(50, y - 140 - 20 * number, line)
    for x, option, ticked in (
        (50, "Collaborative", True),
        (150, "Durable", False),
        (250, "Innovante", True),
    ):
        page.setFillColorRGB(1, 1, 1)
        page.rect(x, y - 100, 10, 10, fill=1)
        if ticked:
            page.setFillColorRGB(0, 0, 0)
            page.rect(x + 2, y - 98, 6, 6, stroke=0, fill=1)
        page.setFillColorRGB(0, 0, 0)
        page.drawString(x + 14, y - 99, option)
    page.save()
    doc = extract_document(attachment("dossier.pdf", pdf.getvalue()), limits=LIMITS)
    reading = read_dossier([doc], rules=RULES)
    assert reading.fields["categorie_label"] == "projet"
    assert reading.fields["criteres"] == ["collaborative", "innovante"]


# --------------------------------------------------------------------------
# Boxes on a scan, measured by their ink


def scanned_boxes(ticks: list[str]) -> tuple[Image.Image, list[Word]]:
    """A grey image with a box before each option (tick: "x", "dot", ""), and OCR-like words."""
    image = Image.new("L", (900, 120), 255)
    draw = ImageDraw.Draw(image)
    words: list[Word] = []
    for number, tick in enumerate(ticks):
        x = 40 + number * 280
        draw.rectangle((x, 40, x + 36, 76), outline=90, width=3)
        if tick == "x":
            draw.line((x + 8, 48, x + 28, 68), fill=0, width=5)
            draw.line((x + 28, 48, x + 8, 68), fill=0, width=5)
        elif tick == "dot":
            draw.ellipse((x + 12, 52, x + 24, 64), fill=0)
        words.append(Word(x + 2, x + 30, 42, 74, "[]", line=1))  # what OCR made of the box
        words.append(Word(x + 52, x + 220, 40, 76, f"Option{number}", line=1))
    return image, words


def test_ink_inside_a_scanned_box_tells_ticked_from_empty():
    image, words = scanned_boxes(["x", "", "dot"])
    read = ink_boxes(image, words)
    texts = [w.text for w in sorted(read, key=lambda w: w.x0)]
    assert texts == [TICKED_BOX, "Option0", EMPTY_BOX, "Option1", TICKED_BOX, "Option2"]


def test_numbers_and_short_words_are_not_boxes():
    image = Image.new("L", (600, 100), 255)
    draw = ImageDraw.Draw(image)
    draw.text((40, 40), "12", fill=0)
    words = [Word(40, 52, 40, 52, "12", line=1), Word(60, 90, 40, 52, "rue", line=1)]
    assert ink_boxes(image, words) == words


# --------------------------------------------------------------------------
# Uncertainty


def test_an_ocr_choice_whose_boxes_cannot_be_told_is_uncertain_not_all_options():
    # Every criterion ticked by glyphs the OCR made of the boxes, not by ink.
    text = MORE + (
        "Intitulé de l'action ou du projet : Potager\n"
        "Critère(s) Smart City : [x] Collaborative [x] Durable [x] Innovante\n"
        "Catégorie de label demandée : ☐ 1 - Initiative réalisée ⍰ 2 - Projet\n"
    )
    reading = read(text, ocr_pages=(1,))
    assert reading.evidence["criteres"].uncertain
    assert reading.evidence["categorie_label"].uncertain
    assert re.search("neither clearly ticked", reading.evidence["categorie_label"].doubt)
    assert {"criteres", "categorie_label"} <= set(reading.uncertain_required)
    assert reading.needs_review


def test_every_criterion_ticked_by_measured_ink_is_read_where_the_ink_tells_boxes_apart():
    criteria = "Critère(s) Smart City : ☒ Collaborative ☒ Durable ☒ Innovante\n"
    category = "Catégorie de label demandée : ☒ 1 - Initiative réalisée ☐ 2 - Projet\n"
    told = read(MORE + criteria + category, ocr_pages=(1,))
    assert told.fields["criteres"] == ["collaborative", "durable", "innovante"]
    assert not told.evidence["criteres"].uncertain
    # No box measured empty anywhere on the page: the measure may see ink in
    # every box, ticked or not.
    untold = read(MORE + criteria, ocr_pages=(1,))
    assert untold.evidence["criteres"].uncertain


def test_clear_readings_carry_confidence_and_page():
    reading = read(HEAD + "Lieu de réalisation : Square Blum\n")
    evidence = reading.evidence["lieu"]
    assert evidence.confidence >= 0.85 and not evidence.uncertain
    assert evidence.page == 1
    assert reading.uncertain_required == ()
    assert not reading.needs_review


def test_a_required_field_not_found_in_an_ocr_text_is_uncertain_not_missing():
    reading = read(HEAD + MORE, ocr_pages=(1,))
    evidence = reading.evidence["porteur_structure"]
    assert evidence.value is None and evidence.uncertain
    assert "porteur_structure" in reading.uncertain_required
    # The same text with a text layer: the field is simply missing.
    plain = read(HEAD + MORE)
    assert "porteur_structure" not in plain.evidence
    assert "porteur_structure" not in plain.uncertain_required


def test_an_ocr_value_that_does_not_validate_is_a_doubt_not_a_missing_value():
    text = HEAD + MORE.replace("jean.dupont@example.org", "jean.dupont@example org")
    reading = read(text, ocr_pages=(1,))
    evidence = reading.evidence["contact_email"]
    assert evidence.value is None and evidence.uncertain
    assert "does not validate" in evidence.doubt
    assert "contact_email" in reading.uncertain_required
    # In a text layer the same value is simply invalid: reported as missing.
    assert "contact_email" not in read(text).uncertain_required


def test_ocr_confusions_in_a_phone_or_email_are_repaired_only_when_the_result_validates():
    text = HEAD + MORE.replace("jean.dupont@example.org", "jean.dupont@example,org")
    text += "Téléphone : 07.81.22.45,19\n"
    reading = read(text, ocr_pages=(1,))
    assert reading.fields["contact_email"] == "jean.dupont@example.org"
    assert reading.fields["contact_telephone"] == "+33781224519"
    # Digits lost by the OCR cannot be repaired: kept as read, and not made up.
    lost = read(HEAD + MORE + "Téléphone : 06 12 4 56 78\n", ocr_pages=(1,))
    assert lost.fields["contact_telephone"] == "06 12 4 56 78"
    # A text layer is read as written.
    typed = read(text)
    assert typed.fields.get("contact_email") is None
