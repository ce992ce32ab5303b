"""Reading accuracy on documents made by real tools: ``python -m bench.accuracy [--quick]``.

Each dossier of ``tests/reading_corpus/`` (made by
``scripts/make_reading_corpus.py``: LibreOffice, Word files, pdftk, qpdf,
scans, phone photos) is wrapped in an e-mail, as its applicant would send
it, and read by the service's own path: ``pipeline.Analyser`` with the
shipped ``config/``, and the reply ``mailbot try`` would queue
(``trial.report``). Nothing is stored and nothing is sent. Per producer it
prints:

- fields right / fields checked: every field the truth or the reading has,
  compared after the project's normalisation (keys, dates, amounts, e-mail
  and phone exactly; free text with spaces and line wraps collapsed but
  paragraph breaks kept; for scans and photos, free text with a folded
  similarity of at least 0.9, the project's OCR tolerance);
- false notices: a missing-pieces notice naming a piece or field the
  dossier has (the applicant is told something false);
- wrong acknowledgements: the dossier acknowledged as complete with a
  category, criteria or nature other than the truth's;
- acknowledged incomplete: acknowledged although the truth lacks a piece;
- to review: the message would go to staff review instead of a reply.

``--quick`` reads two dossiers per producer; ``--json`` prints every
figure and every misreading as JSON. Figures, not assertions: the goals
(issue 15) are 98 % of fields right per producer, no false notice, no
wrong acknowledgement, at most 5 % of dossiers to review.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from mailbot.config import Config, Verdict, load_config
from mailbot.pipeline import Analyser
from mailbot.trial import report
from parsers.checks import missing_pieces
from parsers.text import fold
from tests.fixtures.config import SHIPPED_CONFIG, TEST_AUTHENTICATION_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT / "tests" / "reading_corpus"
# Producers whose dossier is read by OCR (the project's tolerance for lost accents applies).
OCR_PRODUCERS = ("scan_table", "scan_form", "phone_photo")
TEXT_KINDS = ("text", "multiline")
CHOICE_KEYS = ("categorie_label", "criteres", "porteur_nature")
SENT_AT = dt.datetime(2025, 11, 4, 10, 30, tzinfo=dt.UTC)
_CONTENT_TYPES = {
    ".pdf": ("application", "pdf"),
    ".docx": ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ".jpg": ("image", "jpeg"),
}


@dataclass(frozen=True)
class CorpusDossier:
    """One truth file and the documents rendered from it."""

    id: str
    producer: str
    truth: dict[str, Any]
    files: tuple[Path, ...]

    @property
    def expected(self) -> dict[str, Any]:
        return self.truth["expected"]

    @property
    def letter_present(self) -> bool:
        return self.truth["letter"] != "none"


def load_corpus(root: Path = CORPUS, *, ids: Iterable[str] | None = None) -> list[CorpusDossier]:
    wanted = set(ids) if ids is not None else None
    dossiers = []
    for path in sorted((root / "truth").glob("*.json")):
        if wanted is not None and path.stem not in wanted:
            continue
        truth = json.loads(path.read_text(encoding="utf-8"))
        folder = root / "files" / truth["id"]
        files = tuple(sorted(folder.iterdir())) if folder.is_dir() else ()
        dossiers.append(CorpusDossier(truth["id"], truth["producer"], truth, files))
    return dossiers


def candidature_message(dossier: CorpusDossier, *, to: str) -> bytes:
    """The e-mail an applicant sends with these documents attached."""
    written = dossier.truth["written"]
    message = EmailMessage()
    sender = written.get("contact_email", "porteur.projet@example.org")
    message["From"] = f"{written.get('contact_nom', 'Porteur du projet')} <{sender}>"
    message["To"] = to
    message["Subject"] = "Candidature au label Béthune Smart City"
    message["Date"] = format_datetime(SENT_AT)
    message["Message-ID"] = make_msgid(idstring=f"accuracy.{dossier.id}", domain="example.org")
    message.set_content(
        "Bonjour,\n\nVeuillez trouver ci-joint notre dossier d'intention pour le label "
        "Béthune Smart City.\n\nCordialement,\n" + written.get("contact_nom", "")
    )
    for path in dossier.files:
        maintype, subtype = _CONTENT_TYPES[path.suffix.lower()]
        message.add_attachment(
            path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name
        )
    return message.as_bytes()


# --------------------------------------------------------------------------
# Comparison


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def same_value(expected: Any, found: Any, *, kind: str, ocr: bool) -> bool:
    """Equal after the project's normalisation (see the module docstring)."""
    if kind == "criteria" and expected is not None and found is not None:
        return sorted(expected) == sorted(found)
    if kind not in TEXT_KINDS or expected is None or found is None:
        return expected == found
    a, b = _paragraphs(str(expected)), _paragraphs(str(found))
    if a == b:
        return True
    if not ocr:
        return False
    joined_a, joined_b = fold("\n".join(a)), fold("\n".join(b))
    return difflib.SequenceMatcher(None, joined_a, joined_b).ratio() >= 0.9


# --------------------------------------------------------------------------
# One dossier


@dataclass
class DossierResult:
    id: str
    producer: str
    checked: int
    right: int
    misread: list[dict[str, Any]]
    verdict: str | None
    reply: str | None  # the reply kind ("acknowledgement", "missing_pieces", …), None: no reply
    expected_reply: str
    missing: list[str]
    expected_missing: list[str]
    to_review: bool
    false_notice: bool
    wrong_acknowledgement: bool
    acknowledged_incomplete: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)


def measure(dossier: CorpusDossier, *, analyser: Analyser, config: Config) -> DossierResult:
    mailbox = config.settings.mailboxes[0]
    raw = candidature_message(dossier, to=mailbox.address or mailbox.username)
    started = time.perf_counter()
    analysis = analyser.analyse(raw, mailbox=mailbox.name)
    seconds = time.perf_counter() - started
    tried = report(config, analysis)
    reading = analysis.reading
    found = reading.fields if reading is not None else {}
    ocr = dossier.producer in OCR_PRODUCERS
    checked = right = 0
    misread = []
    for key, rule in config.rules.fields.items():
        expected, value = dossier.expected.get(key), found.get(key)
        if expected is None and value is None:
            continue
        checked += 1
        if same_value(expected, value, kind=str(rule.kind), ocr=ocr):
            right += 1
        else:
            misread.append({"field": key, "expected": expected, "read": value})
    expected_missing = missing_pieces(
        fields=dossier.expected,
        dossier_present=True,
        letter_present=dossier.letter_present,
        rules=config.rules,
    )
    reply = tried["reply"]["kind"] if tried["reply"] else None
    missing = list(reading.missing) if reading is not None else []
    wrong_choice = any(
        not same_value(
            dossier.expected.get(key),
            found.get(key),
            kind=str(config.rules.fields[key].kind),
            ocr=False,
        )
        for key in CHOICE_KEYS
    )
    return DossierResult(
        id=dossier.id,
        producer=dossier.producer,
        checked=checked,
        right=right,
        misread=misread,
        verdict=analysis.verdict if not analysis.failed else "error",
        reply=reply,
        expected_reply="missing_pieces" if expected_missing else "acknowledgement",
        missing=missing,
        expected_missing=list(expected_missing),
        to_review=analysis.failed
        or analysis.verdict == Verdict.NEEDS_REVIEW
        or bool(reading and reading.needs_review),
        false_notice=reply == "missing_pieces" and bool(set(missing) - set(expected_missing)),
        wrong_acknowledgement=reply == "acknowledgement" and wrong_choice,
        acknowledged_incomplete=reply == "acknowledgement" and bool(expected_missing),
        seconds=seconds,
        warnings=list(tried["warnings"]),
    )


# --------------------------------------------------------------------------
# Figures


@dataclass
class Figures:
    producer: str
    dossiers: int = 0
    right: int = 0
    checked: int = 0
    false_notices: int = 0
    wrong_acknowledgements: int = 0
    acknowledged_incomplete: int = 0
    to_review: int = 0
    misread_fields: Counter[str] = field(default_factory=Counter)

    def add(self, result: DossierResult) -> None:
        self.dossiers += 1
        self.right += result.right
        self.checked += result.checked
        self.false_notices += result.false_notice
        self.wrong_acknowledgements += result.wrong_acknowledgement
        self.acknowledged_incomplete += result.acknowledged_incomplete
        self.to_review += result.to_review
        self.misread_fields.update(m["field"] for m in result.misread)

    @property
    def accuracy(self) -> float:
        return self.right / self.checked if self.checked else float("nan")


def summarise(results: Iterable[DossierResult]) -> tuple[list[Figures], Figures]:
    """Figures per producer (in corpus order) and for the whole corpus."""
    per: dict[str, Figures] = {}
    total = Figures("all producers")
    for result in results:
        per.setdefault(result.producer, Figures(result.producer)).add(result)
        total.add(result)
    return list(per.values()), total


def run(*, ids: Iterable[str] | None = None, quick: bool = False) -> list[DossierResult]:
    # The corpus mail carries no Authentication-Results: answered as in the tests.
    config = load_config(SHIPPED_CONFIG, environ=TEST_AUTHENTICATION_ENV)
    analyser = Analyser(config)
    dossiers = load_corpus(ids=ids)
    if quick:
        seen: Counter[str] = Counter()
        kept = []
        for dossier in dossiers:
            seen[dossier.producer] += 1
            if seen[dossier.producer] <= 2:
                kept.append(dossier)
        dossiers = kept
    return [measure(d, analyser=analyser, config=config) for d in dossiers]


def print_table(per: list[Figures], total: Figures) -> None:
    header = [
        "producer",
        "dossiers",
        "fields right",
        "%",
        "false notices",
        "wrong acks",
        "acked incomplete",
        "to review",
        "most misread fields",
    ]
    rows = [header]
    for fig in [*per, total]:
        rows.append(
            [
                fig.producer,
                str(fig.dossiers),
                f"{fig.right}/{fig.checked}",
                f"{100 * fig.accuracy:.1f}",
                str(fig.false_notices),
                str(fig.wrong_acknowledgements),
                str(fig.acknowledged_incomplete),
                str(fig.to_review),
                ", ".join(f"{k} {n}" for k, n in fig.misread_fields.most_common(4)),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two dossiers per producer")
    parser.add_argument("--json", action="store_true", help="every figure and misreading as JSON")
    parser.add_argument("--verbose", action="store_true", help="list every misreading")
    parser.add_argument("ids", nargs="*", help="dossier numbers (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = run(ids=args.ids or None, quick=args.quick)
    per, total = summarise(results)
    if args.json:
        out = {
            "producers": [_figures_json(f) for f in per],
            "total": _figures_json(total),
            "dossiers": [asdict(r) for r in results],
        }
        json.dump(out, sys.stdout, ensure_ascii=False, indent=1, default=str)
        print()
        return
    print(f"# reading accuracy, {len(results)} dossiers, quick={args.quick}")
    print_table(per, total)
    if args.verbose:
        for result in results:
            for item in result.misread:
                expected, read = _where_they_differ(item["expected"], item["read"])
                print(
                    f"{result.id} {result.producer:16} {item['field']:22} "
                    f"expected {expected} read {read}"
                )
            if result.reply != result.expected_reply:
                print(
                    f"{result.id} {result.producer:16} reply {result.reply} "
                    f"(expected {result.expected_reply}), missing {result.missing}"
                )


def _where_they_differ(expected: Any, read: Any, *, width: int = 36) -> tuple[str, str]:
    """Both values around their first difference (long texts differ deep inside)."""
    a, b = repr(expected), repr(read)
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), 0)
    start = max(0, start - width // 3)
    return a[start : start + width], b[start : start + width]


def _figures_json(fig: Figures) -> dict[str, Any]:
    data = {k: v for k, v in asdict(fig).items() if k != "misread_fields"}
    data["accuracy"] = round(fig.accuracy, 4) if fig.checked else None
    data["misread_fields"] = dict(fig.misread_fields.most_common())
    return data


if __name__ == "__main__":
    main()
