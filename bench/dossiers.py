"""Dossiers: 100 complete candidatures polled and filed vs bare pdfplumber text extraction.

Run from the repository root:  .venv/bin/python -m bench.dossiers [--quick]

Each candidature is one e-mail with a 3-page dossier and the letter to the
mayor (each message its own project title and sender, so nothing is
deduplicated). Two corpora, measured separately:

- ``form``: the project's fillable form filled by another tool (2 pages,
  values in the form fields) followed by a page of free-text annex;
- ``text``: a text PDF (table layout) followed by two pages of annex.

mailbot: ``poll_mailbox`` over the 100 messages with a fresh database
(fetch, parse, classify, sandboxed document reading, dossier fields, letter,
filing with blobs, dossier, pieces, acknowledgement queued). Baseline:
``pdfplumber.open`` + ``extract_text`` of every page of the same 200
attachments, in this process. Interleaved rounds; medians.
"""

from __future__ import annotations

import dataclasses
import io
import time

import pdfplumber

from bench import harness
from bench.harness import NB, Figure
from mailbot.config import load_config
from mailbot.intake import poll_mailbox
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import as_bytes, make_mail

ANNEX = (
    "Annexe — présentation détaillée du projet. Le projet associe les habitants, les "
    "associations du quartier et les services de la Ville. Les ateliers ont lieu chaque "
    "semaine ; les résultats sont partagés lors des réunions du conseil de quartier. "
) * 6


def annex_pdf(pages: int, n: int) -> bytes:
    page = corpus._Page()
    for index in range(pages):
        if index:
            page.canvas.showPage()
            page.y = page.height - page.margin
        page.text(f"Annexe {index + 1} au dossier n°{n}", bold=True, size=13)
        page.gap(8)
        for _ in range(4):
            page.text(ANNEX)
            page.gap(6)
    return page.finish()


def project(n: int) -> corpus.Project:
    base = corpus.POTAGER
    raw = dict(base.raw, intitule=f"{base.raw['intitule']} (édition {n})")
    expected = dict(base.expected, intitule=raw["intitule"])
    return dataclasses.replace(base, raw=raw, expected=expected)


def candidature(rules, n: int, kind: str) -> tuple[bytes, list[bytes]]:
    p = project(n)
    if kind == "form":
        dossier = corpus.combined_pdf(corpus.form_pdf(rules, p), annex_pdf(1, n))
    else:
        labels = corpus.printed_labels(rules)
        dossier = corpus.combined_pdf(
            corpus.text_table_pdf(rules, p, labels=labels, style="glyph"), annex_pdf(2, n)
        )
    letter = corpus.letter_pdf(p)
    msg = make_mail(
        subject=f"Candidature au label Béthune Smart City – {p.raw['intitule']}",
        sender=f"Porteur {n} <porteur{n}.{kind}@example.org>",
        body=(
            "Bonjour,\n\nVeuillez trouver ci-joint notre dossier d'intention pour le label "
            "Béthune Smart City ainsi que le courrier adressé à Monsieur le Maire.\n\n"
            f"Cordialement,\nPorteur {n}"
        ),
        attachments=[
            ("dossier_intention.pdf", dossier, "application/pdf"),
            ("courrier_maire.pdf", letter, "application/pdf"),
        ],
    )
    return as_bytes(msg), [dossier, letter]


def build(count: int, kind: str) -> tuple[list[bytes], list[bytes]]:
    rules = load_config(SHIPPED_CONFIG, environ={}).rules
    messages, files = [], []
    for n in range(1, count + 1):
        raw, pdfs = candidature(rules, n, kind)
        messages.append(raw)
        files.extend(pdfs)
    return messages, files


def bare(files: list[bytes]) -> float:
    start = time.perf_counter()
    for data in files:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            for page in pdf.pages:
                page.extract_text()
                page.close()
    return time.perf_counter() - start


def mailbot_poll(srv: harness.Servers, name: str, count: int) -> tuple[float, object]:
    st = harness.stage(srv, name)
    try:
        mailbox = st.app.config.settings.mailbox(NB)
        st.app.engine  # noqa: B018 - create and migrate the database outside the timing
        start = time.perf_counter()
        report = poll_mailbox(st.app, mailbox)
        elapsed = time.perf_counter() - start
    finally:
        st.close()
    assert report.error is None and report.new == count, report.summary()
    return elapsed, report


def reset_inbox(srv: harness.Servers, messages: list[bytes]) -> None:
    srv.dovecot.reset()
    srv.dovecot.fill_maildir(NB, messages)


def run(srv: harness.Servers, *, quick: bool = False, count: int = 100):
    rounds = 1 if quick else 3
    count = min(count, 25) if quick else count
    figures = []
    for kind in ("form", "text"):
        messages, files = build(count, kind)
        reset_inbox(srv, messages)
        # Warm-up: the sandbox's forkserver starts once per process (about 1 s).
        bare(files[:2])
        base, ours = [bare(files)], []
        report = None
        for index in range(rounds):
            elapsed, report = mailbot_poll(srv, f"dossiers-{kind}-{index}", count)
            ours.append(elapsed)
            base.append(bare(files))
        b, o = harness.median(base), harness.median(ours)
        goal = 1.0 if kind == "form" else 1.3
        figures.append(
            Figure(
                "3 dossiers",
                f"{count} candidatures, {kind} dossier (3 p.) + letter; "
                f"{report.filed} filed, {report.needs_review} to review",
                f"{b:.2f} s",
                f"{o:.2f} s",
                f"{o / b:.2f}",
                f"<= {goal:g}",
                o / b <= goal,
            )
        )
    srv.dovecot.reset()
    return figures


def main() -> None:
    harness.main(run, __doc__, default_count=100)


if __name__ == "__main__":
    main()
