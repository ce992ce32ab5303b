"""Regenerate the reading corpus (``tests/reading_corpus/``) from its truth files with real tools.

    .venv/bin/python scripts/make_reading_corpus.py            # render every truth
    .venv/bin/python scripts/make_reading_corpus.py 001 042    # render some
    .venv/bin/python scripts/make_reading_corpus.py --new-truths   # redraw the truths (seeded)

Each ``truth/NNN.json`` names its producer; the documents go to ``files/NNN/``
(the dossier, the letter unless the truth has none) and ``manifest.json``
records, per dossier, its files and the traps that really happened in the
rendered text (a hyphenated wrap at a line end, a line starting with
"signature." or "Fait à", a description row split across pages). Producers are
the tools applicants use: LibreOffice (DOCX and ODT tables exported to PDF),
python-docx (the Word file itself), pdftk-java (fill, flatten), qpdf,
Ghostscript ("print to PDF"), and scans and phone photos made with
pdftoppm, ImageMagick and img2pdf. Random
choices (rotation, noise, perspective) come from the truth's seed; LibreOffice
and pdftk stamp dates and IDs, so bytes differ between runs but text and
layout do not. The tools are needed only here: the committed files are what
the tests and ``bench.accuracy`` read.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pdfplumber  # noqa: E402
from docx import Document  # noqa: E402
from docx.enum.text import WD_ALIGN_PARAGRAPH  # noqa: E402
from docx.shared import Cm, Pt  # noqa: E402
from reading_corpus_truths import write_truths  # noqa: E402

from mailbot.config import load_config  # noqa: E402
from mailbot.forms import option_labels  # noqa: E402
from parsers.text import strip_accents  # noqa: E402

CORPUS = REPO / "tests" / "reading_corpus"
CHOICE_KINDS = ("category", "nature", "criteria", "thematique")
SCAN_DPI = 150
PHOTO_DPI = 120
JPEG_QUALITY = 60


def run(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=cwd, capture_output=True, timeout=300)


def blank_form(fmt: str, work: Path) -> Path:
    """The blank form the service hands out: ``mailbot template --format pdf|docx``, made once."""
    path = work / f"blank.{fmt}"
    if not path.exists():
        mailbot = Path(sys.executable).with_name("mailbot")
        run(mailbot, "--config", REPO / "config", "template", "--format", fmt, "-o", path)
    return path


# --------------------------------------------------------------------------
# Word and LibreOffice


def _chosen(truth: dict[str, Any], key: str) -> set[str]:
    value = truth["expected"].get(key)
    if value is None:
        return set()
    return set(value) if isinstance(value, list) else {value}


def _choice_cell_text(rules: Any, truth: dict[str, Any], key: str) -> str:
    chosen = _chosen(truth, key)
    options = option_labels(rules, key)
    boxes = [f"{'☒' if value in chosen else '☐'} {text}" for value, text in options.items()]
    return "\n".join(boxes) if rules.fields[key].kind == "thematique" else "    ".join(boxes)


def _write_cell(cell: Any, text: str, *, justify: bool) -> None:
    """One paragraph per line of the answer; a blank line stays an empty paragraph."""
    cell.text = ""
    lines = text.split("\n")
    cell.paragraphs[0].add_run(lines[0])
    for line in lines[1:]:
        cell.add_paragraph(line)
    if justify:
        for paragraph in cell.paragraphs:
            paragraph.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY


def filled_docx(rules: Any, truth: dict[str, Any], *, blank: Path) -> bytes:
    """The project's blank DOCX (``mailbot template --format docx``) filled as the truth says."""
    layout = truth["layout"]
    document = Document(blank)
    normal = document.styles["Normal"]
    normal.font.name = layout["font"]
    normal.font.size = Pt(layout["font_size"])
    rows = [row for table in document.tables for row in table.rows]
    label_width = Cm(layout["label_width_cm"])
    value_width = Cm(17 - layout["label_width_cm"])
    for row, (key, rule) in zip(rows, rules.fields.items(), strict=True):
        row.cells[0].width, row.cells[1].width = label_width, value_width
        if layout["retyped_labels"] and rule.variants:
            row.cells[0].text = rule.variants[0]
        if str(rule.kind) in CHOICE_KINDS:
            _write_cell(row.cells[1], _choice_cell_text(rules, truth, key), justify=False)
        elif key in truth["written"]:
            _write_cell(row.cells[1], truth["written"][key], justify=layout["justify"])
    for paragraph in document.paragraphs:
        if paragraph.text.startswith("Fait à"):
            paragraph.text = "Fait à Béthune, le 4 novembre 2025"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def letter_docx(truth: dict[str, Any]) -> bytes:
    written = truth["written"]
    document = Document()
    document.styles["Normal"].font.name = truth["layout"]["font"]
    lines = [
        written.get("porteur_structure", ""),
        written.get("adresse", "62400 Béthune"),
        "",
        "Monsieur Olivier Gacquerre",
        "Maire de Béthune",
        "Hôtel de Ville, 62400 Béthune",
        "",
        "Béthune, le 4 novembre 2025",
        "",
        "Objet : demande de labellisation « Béthune Smart City »",
        "",
        "Monsieur le Maire,",
        "",
        "Nous avons l'honneur de solliciter le label Béthune Smart City pour notre action "
        f"« {written.get('intitule', '')} ». Vous trouverez ci-joint le dossier d'intention "
        "complété qui présente le projet, ses partenaires et son calendrier.",
        "",
        "Nous vous prions d'agréer, Monsieur le Maire, l'expression de notre haute considération.",
        "",
        written.get("contact_nom", ""),
    ]
    for line in lines:
        document.add_paragraph(line)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


class Office:
    """LibreOffice headless with its own profile, converting files in batches."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.profile = (work / "lo-profile").as_uri()

    def batch(self, jobs: list[Job]) -> None:
        """Export every job's documents in two LibreOffice runs (one start costs seconds)."""
        inbox, odts, pdfs = self.work / "batch-in", self.work / "batch-odt", self.work / "batch-pdf"
        inbox.mkdir(exist_ok=True)
        plain, through_odt, owners = [], [], {}
        for job in jobs:
            for name, data, via_odt in job.office_sources():
                stem = f"{job.id}__{name}"
                path = inbox / f"{stem}.docx"
                path.write_bytes(data)
                (through_odt if via_odt else plain).append(path)
                owners[stem] = (job, name)
        self.convert(through_odt, "odt", odts)
        self.convert(plain + sorted(odts.glob("*.odt")), "pdf", pdfs)
        for stem, (job, name) in owners.items():
            target = job.work / "pdf" / f"{name}.pdf"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(pdfs / f"{stem}.pdf", target)

    def convert(self, files: list[Path], target: str, outdir: Path) -> None:
        if not files:
            return
        outdir.mkdir(parents=True, exist_ok=True)
        run(
            "soffice",
            f"-env:UserInstallation={self.profile}",
            "--headless",
            "--convert-to",
            target,
            "--outdir",
            outdir,
            *files,
        )


# --------------------------------------------------------------------------
# pdftk and qpdf


def xfdf(rules: Any, truth: dict[str, Any]) -> str:
    values: dict[str, str] = {}
    for key, rule in rules.fields.items():
        kind = str(rule.kind)
        if kind == "criteria":
            for option in rules.criteria:
                values[f"criteres_{option}"] = "Yes" if option in _chosen(truth, key) else "Off"
        elif kind in ("category", "nature"):
            if truth["expected"].get(key):
                values[key] = truth["expected"][key]
        elif key in truth["written"]:
            values[key] = truth["written"][key]
    fields = "".join(
        f'<field name="{name}"><value>{escape(value)}</value></field>'
        for name, value in values.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xfdf xmlns="http://ns.adobe.com/xfdf/" xml:space="preserve">'
        f"<fields>{fields}</fields></xfdf>\n"
    )


def pdftk_fill(rules: Any, truth: dict[str, Any], work: Path, *, flatten: bool) -> Path:
    blank = blank_form("pdf", work.parent)
    data = work / f"{truth['id']}.xfdf"
    data.write_text(xfdf(rules, truth), encoding="utf-8")
    out = work / f"{truth['id']}-{'flat' if flatten else 'filled'}.pdf"
    options = ["flatten"] if flatten else []
    # Half the unflattened forms ask the viewer to draw the values (no appearances).
    if not flatten and truth["seed"] % 2:
        options = ["need_appearances"]
    run("pdftk", blank, "fill_form", data, "output", out, *options)
    return out


# --------------------------------------------------------------------------
# Scans and photos


def render_pages(pdf: Path, work: Path, *, dpi: int, gray: bool) -> list[Path]:
    prefix = work / f"{pdf.stem}-page"
    run("pdftoppm", "-r", str(dpi), "-gray" if gray else "-png", pdf, prefix)
    return sorted(work.glob(f"{prefix.name}-*.p?m")) + sorted(work.glob(f"{prefix.name}-*.png"))


def scan(pdf: Path, out: Path, *, seed: int, work: Path) -> None:
    """Printed and scanned: grey, slightly rotated, blurred, noisy, JPEG in a PDF."""
    rng = random.Random(seed)
    jpegs = []
    for page in render_pages(pdf, work, dpi=SCAN_DPI, gray=True):
        jpeg = page.with_suffix(".jpg")
        run(
            "convert", "-seed", str(rng.randint(1, 10**6)), page,
            "-background", "white", "-rotate", f"{rng.uniform(-1.2, 1.2):.2f}",
            "-blur", f"0x{rng.uniform(0.3, 0.7):.2f}",
            "-attenuate", f"{rng.uniform(0.2, 0.45):.2f}", "+noise", "Gaussian",
            "-density", str(SCAN_DPI), "-units", "PixelsPerInch",
            "-quality", str(JPEG_QUALITY), jpeg,
        )  # fmt: skip
        jpegs.append(jpeg)
    run("img2pdf", "-o", out, *jpegs)


def photo(pdf: Path, outdir: Path, *, stem: str, seed: int, work: Path) -> list[Path]:
    """Each page photographed with a phone: perspective, uneven light, table around, JPEG."""
    rng = random.Random(seed)
    outs = []
    for number, page in enumerate(render_pages(pdf, work, dpi=PHOTO_DPI, gray=False), 1):
        width, height = round(8.27 * PHOTO_DPI), round(11.69 * PHOTO_DPI)
        jitter = [rng.randint(10, 70) for _ in range(8)]
        corners = (
            f"0,0 {jitter[0]},{jitter[1]} "
            f"{width},0 {width - jitter[2]},{jitter[3]} "
            f"{width},{height} {width - jitter[4]},{height - jitter[5]} "
            f"0,{height} {jitter[6]},{height - jitter[7]}"
        )
        light = f"{rng.choice([0, width])},{rng.choice([0, height])}"
        out = outdir / f"{stem}_{number}.jpg"
        run(
            "convert", page, "-resize", f"{width}x{height}!",
            "-virtual-pixel", "background", "-background", "#6e5b47",
            "-distort", "Perspective", corners,
            "(", "+clone", "-sparse-color", "Barycentric",
            f"{light} gray100 {width - int(light.split(',')[0])},{height // 2} gray62",
            ")", "-compose", "Multiply", "-composite",
            "-blur", f"0x{rng.uniform(0.4, 0.9):.2f}", "-quality", str(JPEG_QUALITY), out,
        )  # fmt: skip
        outs.append(out)
    return outs


# --------------------------------------------------------------------------
# Producers: truth -> files in its directory


class Job:
    """What one dossier needs: its truth, its output directory, the shared tools."""

    def __init__(
        self, truth: dict[str, Any], *, rules: Any, work: Path, office: Office, files: Path
    ) -> None:
        self.truth, self.rules, self.office = truth, rules, office
        self.id = truth["id"]
        self.work = work / self.id
        self.work.mkdir(parents=True, exist_ok=True)
        self.out = files / self.id
        title = strip_accents(truth["written"].get("intitule", "projet"))
        self.slug = re.sub(r"\W+", "_", title)[:40].strip("_")

    @property
    def wants_letter(self) -> bool:
        return self.truth["letter"] != "none"

    def office_pdf(self, data: bytes, name: str, *, via_odt: bool = False) -> Path:
        ready = self.work / "pdf" / f"{name}.pdf"
        if ready.exists():  # made by the batch (``Office.batch``)
            return ready
        docx = self.work / f"{name}.docx"
        docx.write_bytes(data)
        if via_odt:
            self.office.convert([docx], "odt", self.work)
            docx = self.work / f"{name}.odt"
        self.office.convert([docx], "pdf", self.work / "pdf")
        return self.work / "pdf" / f"{name}.pdf"

    def filled_docx(self) -> bytes:
        return filled_docx(self.rules, self.truth, blank=blank_form("docx", self.work.parent))

    @property
    def table_name(self) -> str:
        return f"Dossier_intention_{self.slug}"

    def letter_pdf(self) -> Path:
        return self.office_pdf(letter_docx(self.truth), "Courrier_Maire")

    def table_pdf(self, *, via_odt: bool = False) -> Path:
        data = self.filled_docx()
        return self.office_pdf(data, self.table_name, via_odt=via_odt)

    def office_sources(self) -> list[tuple[str, bytes, bool]]:
        """(name, DOCX, through ODT) of every document LibreOffice must export for this job."""
        producer, wanted = self.truth["producer"], []
        source = self.truth["layout"]["source"]
        if producer in ("writer_docx_pdf", "scan_table") or source == "table":
            wanted.append((self.table_name, self.filled_docx(), False))
        if producer == "writer_odt_pdf":
            wanted.append((self.table_name, self.filled_docx(), True))
        if self.wants_letter and producer != "word_docx":
            wanted.append(("Courrier_Maire", letter_docx(self.truth), False))
        return wanted

    def keep(self, path: Path, name: str | None = None) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        target = self.out / (name or path.name)
        shutil.copyfile(path, target)
        return target

    def keep_letter(self) -> None:
        if self.wants_letter:
            self.keep(self.letter_pdf())


def writer_docx_pdf(job: Job) -> None:
    job.keep(job.table_pdf())
    job.keep_letter()


def writer_odt_pdf(job: Job) -> None:
    job.keep(job.table_pdf(via_odt=True))
    job.keep_letter()


def word_docx(job: Job) -> None:
    job.out.mkdir(parents=True, exist_ok=True)
    (job.out / f"Dossier_intention_{job.slug}.docx").write_bytes(job.filled_docx())
    if job.wants_letter:
        (job.out / "Courrier_Maire.docx").write_bytes(letter_docx(job.truth))


def pdftk_filled(job: Job) -> None:
    job.keep(pdftk_fill(job.rules, job.truth, job.work, flatten=False), "dossier_intention.pdf")
    job.keep_letter()


def pdftk_flattened(job: Job) -> None:
    job.keep(pdftk_fill(job.rules, job.truth, job.work, flatten=True), "dossier_intention.pdf")
    job.keep_letter()


def qpdf_rewritten(job: Job) -> None:
    filled = pdftk_fill(job.rules, job.truth, job.work, flatten=False)
    out = job.work / "rewritten.pdf"
    extra = ["--compress-streams=y", "--recompress-flate"] if job.truth["seed"] % 2 else []
    run("qpdf", "--object-streams=generate", "--linearize", *extra, filled, out)
    job.keep(out, "dossier_intention.pdf")
    job.keep_letter()


def _scanned(job: Job, source: Path) -> None:
    job.out.mkdir(parents=True, exist_ok=True)
    if job.truth["letter"] == "first_page":
        both = job.work / "letter-and-dossier.pdf"
        run("pdftk", job.letter_pdf(), source, "cat", "output", both)
        scan(both, job.out / "scan_candidature.pdf", seed=job.truth["seed"], work=job.work)
        return
    scan(source, job.out / "scan_dossier.pdf", seed=job.truth["seed"], work=job.work)
    if job.wants_letter:
        scan(
            job.letter_pdf(), job.out / "scan_courrier.pdf", seed=-job.truth["seed"], work=job.work
        )


def scan_table(job: Job) -> None:
    _scanned(job, job.table_pdf())


def scan_form(job: Job) -> None:
    _scanned(job, pdftk_fill(job.rules, job.truth, job.work, flatten=True))


def phone_photo(job: Job) -> None:
    if job.truth["layout"]["source"] == "form":
        source = pdftk_fill(job.rules, job.truth, job.work, flatten=True)
    else:
        source = job.table_pdf()
    job.out.mkdir(parents=True, exist_ok=True)
    photo(
        source,
        job.out,
        stem=f"IMG_2025110{job.truth['seed'] % 10}",
        seed=job.truth["seed"],
        work=job.work,
    )
    job.keep_letter()


def gs_printed(job: Job) -> None:
    """The filled form "printed to PDF" (Ghostscript pdfwrite): fields drawn into the page."""
    flat = pdftk_fill(job.rules, job.truth, job.work, flatten=True)
    out = job.work / "printed.pdf"
    run(
        "gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pdfwrite", "-dPrinted=true",
        f"-sOutputFile={out}", flat,
    )  # fmt: skip
    job.keep(out, f"Dossier_intention_{job.slug}.pdf")
    job.keep_letter()


PRODUCERS: dict[str, Callable[[Job], None]] = {
    "writer_docx_pdf": writer_docx_pdf,
    "writer_odt_pdf": writer_odt_pdf,
    "word_docx": word_docx,
    "pdftk_filled": pdftk_filled,
    "pdftk_flattened": pdftk_flattened,
    "qpdf_rewritten": qpdf_rewritten,
    "scan_table": scan_table,
    "scan_form": scan_form,
    "phone_photo": phone_photo,
    "gs_printed": gs_printed,
}


# --------------------------------------------------------------------------
# What really happened in the rendered text


def pdf_pages_text(pdf: Path) -> list[str]:
    """Each page's text as pdfplumber lays it out (pdftotext would join hyphenated wraps)."""
    with pdfplumber.open(pdf) as document:
        return [page.extract_text() or "" for page in document.pages]


def observed_traps(truth: dict[str, Any], pages: list[str]) -> list[str]:
    """The traps visible in the text layer of the rendered dossier (before any scan)."""
    text = "\n".join(pages)
    found = set()
    if re.search(r"(Nord-|Nord-Pas-|Pas-de-|Hauts-|Hauts-de-)\n", text):
        found.add("hyphen_wrap_at_line_end")
    if re.search(r"^\s*(signature\.|Fait à (?!Béthune, le|…))", text, re.MULTILINE):
        found.add("stop_word_at_line_start")
    if re.search(r"^\s*\S*\n\s*\n", text):
        found.add("blank_line_in_text_layer")
    words = truth["written"].get("description", "").split()
    flat = [" ".join(page.split()) for page in pages]
    if words:
        head, tail = " ".join(words[:5]), " ".join(words[-4:])
        where = [
            next((n for n, page in enumerate(flat) if part in page), None) for part in (head, tail)
        ]
        if None not in where and where[0] != where[1]:
            found.add("description_split_across_pages")
    if "Date de réalisation ou date prévisionnelle" not in text.replace("\n", " "):
        found.add("date_label_wrapped")
    return sorted(found)


def render(job: Job) -> dict[str, Any]:
    truth = job.truth
    if job.out.exists():
        shutil.rmtree(job.out)
    PRODUCERS[truth["producer"]](job)
    text_source = next(
        (
            p
            for p in sorted(job.work.rglob("*.pdf"))
            if "Dossier" in p.name or "flat" in p.name or "filled" in p.name
        ),
        None,
    )
    pages = pdf_pages_text(text_source) if text_source else []
    return {
        "producer": truth["producer"],
        "files": sorted(p.name for p in job.out.iterdir()),
        "observed_traps": observed_traps(truth, pages) if pages else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="truth numbers to render (default: all)")
    parser.add_argument("--new-truths", action="store_true", help="redraw every truth file")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="corpus directory (truth/ in, files/ out)"
    )
    args = parser.parse_args()
    truth_dir, manifest_path = args.corpus / "truth", args.corpus / "manifest.json"
    rules = load_config(REPO / "config", environ={}).rules
    if args.new_truths:
        for path in sorted(truth_dir.glob("*.json")):
            path.unlink()
        print(f"{len(write_truths(truth_dir, rules=rules))} truth files written")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    paths = sorted(truth_dir.glob("*.json"))
    if args.ids:
        paths = [p for p in paths if p.stem in args.ids]
    work = Path(tempfile.mkdtemp(prefix="reading-corpus-"))
    office = Office(work)
    known = {p.stem for p in truth_dir.glob("*.json")}
    jobs = [
        Job(json.loads(path.read_text()), rules=rules, work=work, office=office,
            files=args.corpus / "files")
        for path in paths
    ]  # fmt: skip
    try:
        office.batch(jobs)
        for job in jobs:
            manifest[job.id] = render(job)
            print(job.id, job.truth["producer"], manifest[job.id]["files"], flush=True)
            # Written after each dossier: an interrupted run keeps what it made.
            kept = {k: v for k, v in sorted(manifest.items()) if k in known}
            manifest_path.write_text(json.dumps(kept, ensure_ascii=False, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
