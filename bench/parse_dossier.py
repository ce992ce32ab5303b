"""Parse time per dossier against bare pdfplumber text extraction of the same file.

Run from the repository root:  .venv/bin/python -m bench.parse_dossier [--rounds N]

For each document of a small corpus (fillable form filled by another tool,
text PDFs in several layouts, the letter), it times, in the same process and
interleaved so that machine noise hits both alike:
  - baseline: ``pdfplumber.open`` + ``extract_text`` of every page (the bare
    minimum a reader of the file must do);
  - mailbot: ``extract_documents`` (sandboxed child process, forms, tables,
    layout) + ``read_dossier`` + ``find_letter`` + ``missing_pieces``.
Prints the median of each and their ratio. Figures, not assertions: the
machines are shared and noisy. It also prints the CPU time of each side
over all rounds (mailbot: this process, the sandbox's forkserver and the
children it reaped), a ratio that a loaded machine moves much less than the
wall-clock one: with more runnable processes than cores, every hand-over
between the worker, the forkserver and a child waits for a time slice.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import time

import pdfplumber

from mailbot.config import load_config
from parsers.checks import missing_pieces
from parsers.documents import extract_documents
from parsers.dossier import read_dossier
from parsers.letter import find_letter
from parsers.types import Attachment
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG


def documents(rules) -> dict[str, bytes]:
    labels = corpus.printed_labels(rules)
    project = corpus.POTAGER
    return {
        "fillable form (values only in fields)": corpus.form_pdf(rules, project, appearances=False),
        "text PDF, table layout": corpus.text_table_pdf(
            rules, project, labels=labels, style="glyph"
        ),
        "text PDF, 'Label : value'": corpus.text_colon_pdf(
            rules, project, labels=labels, style="brackets"
        ),
        "text PDF, two columns": corpus.two_column_pairs_pdf(rules, project, labels=labels),
        "letter to the mayor": corpus.letter_pdf(project),
    }


def bare(data: bytes) -> None:
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            page.extract_text()
            page.close()


def full(data: bytes, name: str, config) -> None:
    attachment = Attachment(
        filename=f"{name}.pdf",
        content_type="application/pdf",
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    docs = extract_documents([attachment], limits=config.settings.limits)
    dossier = read_dossier(docs, rules=config.rules)
    letter = find_letter(docs, rules=config.rules, dossier_sha256=dossier.dossier_sha256)
    missing_pieces(
        fields=dossier.fields,
        dossier_present=dossier.dossier_sha256 is not None,
        letter_present=letter.letter_sha256 is not None,
        rules=config.rules,
    )


def forkserver_cpu() -> float:
    """CPU seconds of the sandbox's forkserver and of the children it reaped (0 if none)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    config = load_config(SHIPPED_CONFIG, environ={})
    docs = documents(config.rules)
    # The forkserver starts on the first call (about a second): not timed.
    full(docs["letter to the mayor"], "warm-up", config)
    print(f"{'document':42} {'pdfplumber':>11} {'mailbot':>9} {'ratio':>6} {'CPU ratio':>10}")
    for name, data in docs.items():
        base, ours = [], []
        base_cpu = ours_cpu = 0.0
        for _ in range(args.rounds):
            start, cpu = time.perf_counter(), time.process_time()
            bare(data)
            base.append(time.perf_counter() - start)
            base_cpu += time.process_time() - cpu
            start, cpu, children = time.perf_counter(), time.process_time(), forkserver_cpu()
            full(data, name, config)
            ours.append(time.perf_counter() - start)
            ours_cpu += time.process_time() - cpu + forkserver_cpu() - children
        b, o = statistics.median(base), statistics.median(ours)
        print(
            f"{name:42} {b * 1000:9.1f}ms {o * 1000:7.1f}ms {o / b:6.2f} "
            f"{ours_cpu / base_cpu:10.2f}"
        )


if __name__ == "__main__":
    main()
