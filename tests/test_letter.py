"""Finding the official letter to the mayor."""

from __future__ import annotations

import pytest

from mailbot.config import load_config
from mailbot.forms import blank_form_pdf
from parsers.documents import DocumentLimits, DocumentText, extract_document
from parsers.dossier import read_dossier
from parsers.letter import find_letter, score_letter_text
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import COVOITURAGE, POTAGER, attachment

RULES = load_config(SHIPPED_CONFIG).rules
LETTER = "\n".join(corpus.letter_lines(POTAGER))
FORM_PAGE = """Intitulé de l'action ou du projet : Potager
Thématique : Déchets
Critère(s) Smart City : ☒ Durable
Nom de la structure ou du porteur : Asso"""


def doc(name: str, *pages: str, sha: str | None = None) -> DocumentText:
    return DocumentText(
        sha256=sha or name.encode().hex().ljust(64, "0")[:64],
        filename=name,
        kind="pdf",
        pages=pages,
    )


def test_a_separate_letter():
    letter = doc("courrier.pdf", LETTER)
    found = find_letter([doc("photo.pdf", "Le jardin en été"), letter], rules=RULES)
    assert found.letter_sha256 == letter.sha256 and found.page is None
    assert found.score >= RULES.letter.threshold
    assert {"addressed_to_mayor", "mayor_name", "label_request", "signature_block"} <= set(
        found.reasons
    )
    assert "filename" in found.reasons
    assert found.candidates[0][0] == letter.sha256


def test_scores_are_the_configured_weights():
    score, reasons = score_letter_text("Monsieur le Maire, veuillez agréer…", RULES)
    weights = {s.name: s.weight for s in RULES.letter.signs}
    assert reasons == ("addressed_to_mayor", "signature_block")
    assert score == weights["addressed_to_mayor"] + weights["signature_block"]


def test_no_letter():
    found = find_letter([doc("dossier.pdf", FORM_PAGE)], rules=RULES)
    assert found.letter_sha256 is None and found.page is None


def test_letter_as_first_page_of_the_dossier():
    combined = doc("candidature.pdf", LETTER, FORM_PAGE, FORM_PAGE)
    found = find_letter([combined], rules=RULES, dossier_sha256=combined.sha256)
    assert (found.letter_sha256, found.page) == (combined.sha256, 1)
    # Without being told which document is the dossier, its form pages give it away.
    assert find_letter([combined], rules=RULES).page == 1


def test_a_letterhead_with_contact_labels_is_still_a_letter():
    letterhead = "Téléphone : 03 21 00 00 00\nCourriel : contact@perroy.fr\nAdresse : 1 rue X\n"
    combined = doc("candidature.pdf", letterhead + LETTER, FORM_PAGE, FORM_PAGE)
    found = find_letter([combined], rules=RULES, dossier_sha256=combined.sha256)
    assert (found.letter_sha256, found.page) == (combined.sha256, 1)


def test_one_page_document_with_letterhead_then_form():
    letterhead = "Téléphone : 03 21 00 00 00\nCourriel : contact@perroy.fr\n"
    both = DocumentText(
        sha256="c" * 64,
        filename="tout.docx",
        kind="docx",
        pages=(letterhead + LETTER + "\n" + FORM_PAGE,),
    )
    found = find_letter([both], rules=RULES, dossier_sha256=both.sha256)
    assert found.letter_sha256 == both.sha256 and found.page is None


def test_letter_after_the_dossier_pages():
    combined = doc("candidature.pdf", FORM_PAGE, FORM_PAGE, LETTER)
    found = find_letter([combined], rules=RULES, dossier_sha256=combined.sha256)
    assert (found.letter_sha256, found.page) == (combined.sha256, 3)


def test_a_dossier_page_that_merely_mentions_the_mayor_is_not_a_letter():
    # The generated form's own instructions name "Monsieur le Maire", the
    # label and the request: on a form page that is no letter.
    blank = extract_document(
        attachment("dossier.pdf", blank_form_pdf(RULES)), limits=DocumentLimits()
    )
    assert score_letter_text(blank.pages[0], RULES)[0] >= RULES.letter.threshold
    reading = read_dossier([blank], rules=RULES)
    assert (
        find_letter([blank], rules=RULES, dossier_sha256=reading.dossier_sha256).letter_sha256
        is None
    )
    # Nor is a cover page addressed to the mayor without a letter's closing.
    cover = (
        "Dossier de candidature au label Béthune Smart City\n"
        "À l'attention de Monsieur le Maire\nDemande de labellisation"
    )
    dossier = doc("dossier.pdf", cover, FORM_PAGE, FORM_PAGE)
    found = find_letter([dossier], rules=RULES, dossier_sha256=dossier.sha256)
    assert found.letter_sha256 is None
    # The same cover page as a file of its own reaches the threshold: it is a letter.
    alone = doc("page_de_garde.pdf", cover)
    assert find_letter([alone], rules=RULES).letter_sha256 == alone.sha256


def test_a_dated_request_to_the_mayor_inside_the_dossier_counts():
    page = "Monsieur le Maire,\nPar la présente, demande de labellisation.\nBéthune, le 3 mars 2026"
    dossier = doc("dossier.pdf", page, FORM_PAGE)
    found = find_letter([dossier], rules=RULES, dossier_sha256=dossier.sha256)
    assert found.page == 1


def test_file_names_only_break_ties():
    text = "Monsieur le Maire,\nJe vous prie d'agréer mes salutations distinguées."
    a = doc("annexe.pdf", text)
    b = doc("lettre_maire.pdf", text)
    assert find_letter([a, b], rules=RULES).letter_sha256 == b.sha256
    # A name alone does not make a letter.
    weak = doc("courrier_maire.pdf", "Monsieur le Maire")
    assert find_letter([weak], rules=RULES).letter_sha256 is None


def test_the_strongest_candidate_wins():
    weak = doc("note.pdf", "Monsieur le Maire, veuillez agréer nos salutations distinguées.")
    strong = doc("scan.pdf", LETTER)
    assert find_letter([weak, strong], rules=RULES).letter_sha256 == strong.sha256


def test_letter_as_word_document_and_as_word_file_with_the_dossier():
    letter = extract_document(
        attachment("lettre.docx", corpus.letter_docx(COVOITURAGE)), limits=DocumentLimits()
    )
    assert find_letter([letter], rules=RULES).letter_sha256 == letter.sha256
    both = extract_document(
        attachment("candidature.docx", corpus.letter_and_dossier_docx(RULES, POTAGER)),
        limits=DocumentLimits(),
    )
    reading = read_dossier([both], rules=RULES)
    found = find_letter([both], rules=RULES, dossier_sha256=reading.dossier_sha256)
    assert reading.dossier_sha256 == found.letter_sha256 == both.sha256


@pytest.mark.parametrize("text", ["", "Bonjour, voici notre projet."])
def test_documents_without_signs(text):
    assert find_letter([doc("x.pdf", text)], rules=RULES).letter_sha256 is None
