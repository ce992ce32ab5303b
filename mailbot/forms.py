"""The blank dossier d'intention, generated from ``rules.toml``.

The form is not published anywhere we could copy, so the project owns it: the
same field rules that the parser reads (printed labels, option labels) print
the form, which keeps the two in step when admins edit the rules. Two
formats: a fillable PDF (AcroForm fields named by field key, as
``shared/dossier-intention.md`` specifies) and a DOCX with a two-column
table for applicants who prefer a word processor.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import reportlab
from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.shared import Cm, Pt
from reportlab.lib.colors import Color, black, white
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from mailbot.config import FieldKind, FieldRule, Rules
from parsers.dossier import SECTION_HEADINGS

TITLE = "Label Béthune Smart City — Dossier d'intention"
MAILBOXES = ("n.bataillon@ville-bethune.fr", "d.berteloot@ville-bethune.fr")
INSTRUCTIONS = (
    "Complétez ce dossier d'intention (un champ par rubrique ; cochez les cases "
    "qui conviennent). Les champs marqués d'un astérisque (*) sont obligatoires.",
    "Joignez le courrier officiel de demande de labellisation adressé à "
    "Monsieur le Maire de Béthune, ainsi que, si vous le souhaitez, des visuels "
    "ou documents de présentation.",
    f"Envoyez le tout par courriel à {MAILBOXES[0]} et/ou {MAILBOXES[1]}.",
)
CHECKBOX_PREFIX = "criteres_"

# Vera ships with reportlab itself, so the form never depends on system fonts;
# it covers Latin-1, the euro sign and typographic dashes and quotes.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
FONT = "BSC-Vera"
FONT_BOLD = "BSC-Vera-Bold"
# Older names, used by mailbot.demo.
_FONT, _FONT_BOLD = FONT, FONT_BOLD

_PAGE_W, _PAGE_H = A4
_MARGIN = 50
_WIDTH = _PAGE_W - 2 * _MARGIN
_FIELD_FILL = Color(0.94, 0.96, 1.0)
_FIELD_BORDER = Color(0.45, 0.5, 0.6)
_LINE_HEIGHTS = {FieldKind.MULTILINE: 72}
_TALL_FIELDS = {"description": 110}


def register_fonts() -> None:
    """Register FONT and FONT_BOLD with reportlab (idempotent)."""
    registered = pdfmetrics.getRegisteredFontNames()
    if FONT not in registered:
        pdfmetrics.registerFont(TTFont(FONT, str(_FONT_DIR / "Vera.ttf")))
    if FONT_BOLD not in registered:
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(_FONT_DIR / "VeraBd.ttf")))


_register_fonts = register_fonts


def option_labels(rules: Rules, key: str) -> dict[str, str]:
    """Normalised value -> printed option label, for the choice fields."""
    kind = rules.fields[key].kind
    choices = {
        FieldKind.CATEGORY: rules.categories,
        FieldKind.NATURE: rules.natures,
        FieldKind.CRITERIA: rules.criteria,
        FieldKind.THEMATIQUE: rules.thematiques,
    }.get(kind, {})
    return {value: choice.label for value, choice in choices.items()}


def printed_label(rule: FieldRule) -> str:
    """The label as printed on the form, with the required marker."""
    required = rule.required and not rule.required_when
    return f"{rule.label} *" if required else rule.label


# --------------------------------------------------------------------------
# PDF


class _PdfWriter:
    """Lays out the form top to bottom, breaking pages as needed."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=A4, pageCompression=1)
        self.canvas.setTitle(TITLE)
        self.canvas.setAuthor("Ville de Béthune")
        self.canvas.setSubject("Formulaire de candidature au label Béthune Smart City")
        self.page = 1
        self.y = _PAGE_H - _MARGIN

    def need(self, height: float) -> None:
        if self.y - height < _MARGIN + 20:
            self._footer()
            self.canvas.showPage()
            self.page += 1
            self.y = _PAGE_H - _MARGIN

    def _footer(self) -> None:
        self.canvas.setFont(FONT, 8)
        self.canvas.drawCentredString(_PAGE_W / 2, _MARGIN - 20, f"{TITLE} — page {self.page}")

    def paragraph(self, text: str, *, font: str = FONT, size: float = 10) -> None:
        lines = simpleSplit(text, font, size, _WIDTH)
        self.need(len(lines) * (size + 3))
        self.canvas.setFont(font, size)
        for line in lines:
            self.y -= size + 3
            self.canvas.drawString(_MARGIN, self.y, line)

    def finish(self) -> bytes:
        self._footer()
        self.canvas.save()
        return self.buffer.getvalue()


def _field_style() -> dict:
    return {
        "fillColor": _FIELD_FILL,
        "borderColor": _FIELD_BORDER,
        "textColor": black,
        "borderWidth": 0.8,
        "forceBorder": True,
        "annotationFlags": "print",
    }


def _draw_options(
    writer: _PdfWriter, key: str, options: dict[str, str], *, label: str, radio: bool
) -> None:
    """A row (wrapped as needed) of radio buttons or checkboxes with their labels."""
    form = writer.canvas.acroForm
    size = 11
    x = _MARGIN
    writer.need(size + 8)
    writer.y -= size + 4
    writer.canvas.setFont(FONT, 10)
    for value, text in options.items():
        width = size + 6 + pdfmetrics.stringWidth(text, FONT, 10) + 18
        if x + width > _MARGIN + _WIDTH:
            writer.need(size + 8)
            writer.y -= size + 8
            x = _MARGIN
        style = _field_style()
        style["fillColor"] = white
        if radio:
            form.radio(
                name=key,
                value=value,
                selected=False,
                # The group's tooltip is its label; the option is printed beside.
                tooltip=label,
                buttonStyle="circle",
                shape="circle",
                size=size,
                x=x,
                y=writer.y - 2,
                fieldFlags="noToggleToOff radio",
                **style,
            )
        else:
            form.checkbox(
                name=f"{CHECKBOX_PREFIX}{value}",
                checked=False,
                tooltip=f"{label} : {text}",
                buttonStyle="check",
                shape="square",
                size=size,
                x=x,
                y=writer.y - 2,
                fieldFlags="",
                **style,
            )
        writer.canvas.setFont(FONT, 10)
        writer.canvas.drawString(x + size + 5, writer.y, text)
        x += width
    writer.y -= 6


def _draw_field(writer: _PdfWriter, *, key: str, rule: FieldRule, rules: Rules) -> None:
    label = printed_label(rule)
    heading = simpleSplit(label, FONT_BOLD, 10, _WIDTH)
    writer.need(len(heading) * 13 + 26)
    writer.canvas.setFont(FONT_BOLD, 10)
    for line in heading:
        writer.y -= 13
        writer.canvas.drawString(_MARGIN, writer.y, line)
    form = writer.canvas.acroForm
    kind = rule.kind
    if kind in (FieldKind.CATEGORY, FieldKind.NATURE):
        _draw_options(writer, key, option_labels(rules, key), label=rule.label, radio=True)
    elif kind == FieldKind.CRITERIA:
        _draw_options(writer, key, option_labels(rules, key), label=rule.label, radio=False)
    elif kind == FieldKind.THEMATIQUE:
        writer.y -= 24
        # reportlab cannot write a choice field whose value is "": a blank
        # option (one space) stands for "not chosen yet".
        options = [" ", *option_labels(rules, key).values()]
        form.choice(
            name=key,
            tooltip=rule.label,
            value=" ",
            options=options,
            width=300,
            height=20,
            x=_MARGIN,
            y=writer.y,
            fieldFlags="combo",
            fontName="Helvetica",
            fontSize=10,
            **_field_style(),
        )
        writer.y -= 6
    else:
        height = _TALL_FIELDS.get(key) or _LINE_HEIGHTS.get(kind, 20)
        writer.need(height + 10)
        writer.y -= height + 4
        form.textfield(
            name=key,
            tooltip=rule.label,
            value="",
            width=_WIDTH,
            height=height,
            x=_MARGIN,
            y=writer.y,
            maxlen=None,
            fieldFlags="multiline" if kind == FieldKind.MULTILINE else "",
            fontName="Helvetica",
            fontSize=10,
            **_field_style(),
        )
        writer.y -= 6


def blank_form_pdf(rules: Rules) -> bytes:
    """The fillable PDF form: one AcroForm field per key, tooltips = printed labels."""
    register_fonts()
    writer = _PdfWriter()
    writer.paragraph(TITLE, font=FONT_BOLD, size=16)
    writer.y -= 6
    for text in INSTRUCTIONS:
        writer.paragraph(text, size=9.5)
        writer.y -= 3
    for key, rule in rules.fields.items():
        heading = SECTION_HEADINGS.get(key)
        if heading:
            writer.need(60)
            writer.y -= 10
            writer.paragraph(heading, font=FONT_BOLD, size=12.5)
        _draw_field(writer, key=key, rule=rule, rules=rules)
    writer.need(40)
    writer.y -= 16
    writer.paragraph("Fait à ………………………, le ………………………", size=10)
    writer.y -= 8
    writer.paragraph("Signature du porteur :", size=10)
    return writer.finish()


# --------------------------------------------------------------------------
# DOCX


def _option_line(options: dict[str, str]) -> str:
    return "    ".join(f"☐ {text}" for text in options.values())


def _docx_rows(rules: Rules) -> Iterator[tuple[str | None, str, str]]:
    """(section heading or None, label, cell text) in form order."""
    for key, rule in rules.fields.items():
        options = option_labels(rules, key)
        if rule.kind == FieldKind.THEMATIQUE:
            cell = "\n".join(f"☐ {text}" for text in options.values())
        elif options:
            cell = _option_line(options)
        else:
            cell = ""
        yield SECTION_HEADINGS.get(key), printed_label(rule), cell


def blank_form_docx(rules: Rules) -> bytes:
    """The same form as a Word document: a two-column table, ☐ boxes for options."""
    document = Document()
    style = document.styles["Normal"]
    style.font.name = "Calibri"
    style.font.size = Pt(10.5)
    document.core_properties.title = TITLE
    document.core_properties.author = "Ville de Béthune"
    document.add_heading(TITLE, level=1)
    for text in INSTRUCTIONS:
        document.add_paragraph(text)
    table = None
    for heading, label, cell in _docx_rows(rules):
        if heading or table is None:
            document.add_heading(heading or "Le projet", level=2)
            table = document.add_table(rows=0, cols=2)
            table.style = "Table Grid"
            table.alignment = WD_TABLE_ALIGNMENT.CENTER
        row = table.add_row()
        row.cells[0].width = Cm(6)
        row.cells[1].width = Cm(11)
        row.cells[0].paragraphs[0].add_run(label).bold = True
        row.cells[1].text = cell
    document.add_paragraph()
    document.add_paragraph("Fait à ………………………, le ………………………")
    document.add_paragraph("Signature du porteur :")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
