"""The reading corpus made by real tools (``tests/reading_corpus/``) and ``bench.accuracy`` over it.

The corpus must stay well-formed (each truth has its rendered files, its
values are what the project's normalisation gives for what the applicant
typed, the traps of issue 15 are in it) and the accuracy bench must run the
service's reading path end to end with figures that add up. The accuracy
goal itself (98 % per producer) is the parser's work, measured by the
bench, not asserted here.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from bench import accuracy
from mailbot.config import load_config
from parsers.normalize import normalize_value
from tests.fixtures.config import SHIPPED_CONFIG

RULES = load_config(SHIPPED_CONFIG, environ={}).rules
CORPUS = accuracy.CORPUS
DOSSIERS = accuracy.load_corpus()
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
CHOICES = {
    "categorie_label": RULES.categories,
    "porteur_nature": RULES.natures,
    "thematique": RULES.thematiques,
}
MAX_CORPUS_BYTES = 40 * 1024 * 1024


def test_the_corpus_has_80_dossiers_from_8_producers():
    producers = Counter(d.producer for d in DOSSIERS)
    assert len(DOSSIERS) >= 80
    assert len(producers) >= 8, producers
    assert set(accuracy.OCR_PRODUCERS) <= set(producers)
    assert all(count >= 5 for count in producers.values()), producers


def test_every_truth_has_its_rendered_files():
    for dossier in DOSSIERS:
        names = [path.name for path in dossier.files]
        assert names, f"{dossier.id}: no files (run scripts/make_reading_corpus.py)"
        assert MANIFEST[dossier.id]["files"] == names, dossier.id
        assert MANIFEST[dossier.id]["producer"] == dossier.producer
        assert all(path.suffix in (".pdf", ".docx", ".jpg") for path in dossier.files)
        letters = [name for name in names if "courrier" in name.lower()]
        if dossier.truth["letter"] == "separate":
            assert len(letters) == 1, dossier.id
        else:
            assert not letters, dossier.id
    assert set(MANIFEST) == {d.id for d in DOSSIERS}


def test_truths_name_the_form_fields_and_valid_choices():
    for dossier in DOSSIERS:
        written, expected = dossier.truth["written"], dossier.expected
        assert set(written) <= set(RULES.fields), dossier.id
        assert set(expected) <= set(RULES.fields), dossier.id
        for key, choices in CHOICES.items():
            if key in expected:
                assert expected[key] in choices, (dossier.id, key)
        assert expected["criteres"] and set(expected["criteres"]) <= set(RULES.criteria)
        assert dossier.truth["letter"] in ("separate", "first_page", "none")


def test_expected_values_are_the_normalised_written_values():
    for dossier in DOSSIERS:
        for key, text in dossier.truth["written"].items():
            kind = str(RULES.fields[key].kind)
            assert normalize_value(kind, text, RULES).value == dossier.expected[key], (
                dossier.id,
                key,
            )


def test_the_traps_of_issue_15_are_in_the_corpus():
    observed = Counter(trap for entry in MANIFEST.values() for trap in entry["observed_traps"])
    built = Counter(trap for d in DOSSIERS for trap in d.truth["traps"])
    for trap in (
        "hyphen_wrap_at_line_end",
        "stop_word_at_line_start",
        "description_split_across_pages",
    ):
        assert observed[trap] >= 1, (trap, observed)
    for trap in ("paragraphs", "long_words", "narrow_label_cells", "hyphen_wrap"):
        assert built[trap] >= 5, (trap, built)
    assert any("\n\n" in d.expected.get("description", "") for d in DOSSIERS)
    # Some dossiers really lack a piece: their notice is right, not false.
    assert any(d.truth["letter"] == "none" for d in DOSSIERS)


def test_the_committed_corpus_stays_small():
    size = sum(path.stat().st_size for d in DOSSIERS for path in d.files)
    assert size < MAX_CORPUS_BYTES, f"{size / 1e6:.1f} MB"


@pytest.mark.parametrize(
    ("expected", "found", "ocr", "same"),
    [
        ("Un.\n\nDeux trois.", "Un.\n\nDeux\ntrois.", False, True),  # a visual wrap is not content
        ("Un.\n\nDeux trois.", "Un.\nDeux trois.", False, False),  # a lost paragraph break is
        ("Un.\n\nDeux trois.", "Un. Deux trois.", False, False),
        ("Réseau électrique", "Reseau électrique", True, True),  # OCR may lose an accent
        ("Réseau électrique", "Reseau électrique", False, False),
    ],
)
def test_free_text_comparison(expected, found, ocr, same):
    assert accuracy.same_value(expected, found, kind="multiline", ocr=ocr) is same


def test_choice_and_key_comparison():
    assert accuracy.same_value(
        ["durable", "innovante"], ["innovante", "durable"], kind="criteria", ocr=False
    )
    assert not accuracy.same_value(["durable"], ["durable", "innovante"], kind="criteria", ocr=True)
    assert not accuracy.same_value("projet", None, kind="category", ocr=False)
    assert accuracy.same_value(12500, 12500, kind="amount", ocr=False)


@pytest.fixture(scope="module")
def handful() -> list[accuracy.DossierResult]:
    """The first dossier of four producers, one of them read by OCR."""
    firsts: dict[str, str] = {}
    for dossier in DOSSIERS:
        firsts.setdefault(dossier.producer, dossier.id)
    wanted = [firsts[p] for p in ("writer_docx_pdf", "word_docx", "pdftk_flattened", "scan_form")]
    return accuracy.run(ids=wanted)


def test_the_accuracy_bench_reads_each_dossier_through_the_service(handful):
    assert [r.producer for r in handful] == [
        "writer_docx_pdf",
        "word_docx",
        "pdftk_flattened",
        "scan_form",
    ]
    for result in handful:
        truth = next(d for d in DOSSIERS if d.id == result.id)
        assert result.checked >= len(truth.expected)
        assert 0 <= result.right <= result.checked
        assert result.right + len(result.misread) == result.checked
        assert result.verdict in ("candidature", "needs_review")
        if result.to_review:
            # Staff decide: neither a missing-pieces notice nor a plain acknowledgement.
            assert result.reply not in ("acknowledgement", "missing_pieces")
        else:
            assert result.reply in ("acknowledgement", "missing_pieces")
        if result.false_notice:
            assert result.reply == "missing_pieces" and set(result.missing) - set(
                result.expected_missing
            )
        if result.wrong_acknowledgement or result.acknowledged_incomplete:
            assert result.reply == "acknowledgement"
        assert result.expected_reply == (
            "missing_pieces" if result.expected_missing else "acknowledgement"
        )
    # The Word file is read from its table: at least its keys and choices come through.
    word = handful[1]
    assert word.right >= word.checked // 2


def test_the_accuracy_figures_add_up(handful):
    per, total = accuracy.summarise(handful)
    assert [f.producer for f in per] == [r.producer for r in handful]
    for name in (
        "dossiers",
        "right",
        "checked",
        "false_notices",
        "wrong_acknowledgements",
        "acknowledged_incomplete",
        "to_review",
    ):
        assert getattr(total, name) == sum(getattr(f, name) for f in per), name
    assert total.dossiers == len(handful)
    assert total.right <= total.checked
    assert sum(total.misread_fields.values()) == total.checked - total.right
    assert 0.0 <= total.accuracy <= 1.0


def test_the_json_output_carries_every_figure(monkeypatch, capsys):
    first = DOSSIERS[0].id
    monkeypatch.setattr(sys, "argv", ["bench.accuracy", "--json", first])
    accuracy.main()
    out = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in out["dossiers"]] == [first]
    total = out["total"]
    assert total["dossiers"] == 1 and total["right"] <= total["checked"]
    assert out["producers"][0]["producer"] == DOSSIERS[0].producer
