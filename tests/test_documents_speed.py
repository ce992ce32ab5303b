"""Filled form pages are read the quick way (pdfium words, no table pass), to the same text."""

from __future__ import annotations

import pytest

import parsers.documents as documents
from mailbot.config import load_config
from mailbot.forms import blank_form_pdf
from parsers.documents import DocumentLimits, extract_document
from parsers.dossier import read_dossier
from parsers.letter import find_letter
from tests import corpus
from tests.corpus import POTAGER, attachment
from tests.fixtures.config import SHIPPED_CONFIG

LIMITS = DocumentLimits(max_pdf_pages=10, ocr_timeout_seconds=60)


@pytest.fixture(scope="module")
def rules():
    return load_config(SHIPPED_CONFIG, environ={}).rules


def _read(data: bytes):
    return extract_document(attachment("dossier.pdf", data), limits=LIMITS)


def test_filled_form_pages_skip_the_layout_pass_and_read_the_same(rules, monkeypatch):
    data = corpus.form_pdf(rules, POTAGER, appearances=False)
    quick = _read(data)
    assert quick.form_pages == tuple(range(1, len(quick.pages) + 1))
    monkeypatch.setattr(documents, "_filled_form_pages", lambda fields, widgets: frozenset())
    slow = _read(data)
    assert slow.form_pages == ()
    assert quick.pages == slow.pages
    assert quick.columns == slow.columns
    assert quick.column_rows == slow.column_rows
    for name, ff in slow.form_fields.items():
        assert quick.form_fields[name] == ff


def test_only_the_form_pages_are_quick_in_a_form_plus_annex(rules):
    data = corpus.combined_pdf(corpus.form_pdf(rules, POTAGER), corpus.letter_pdf(POTAGER))
    doc = _read(data)
    assert doc.form_pages and len(doc.pages) not in doc.form_pages
    assert "Monsieur le Maire" in doc.pages[-1]
    dossier = read_dossier([doc], rules=rules)
    assert dossier.fields["intitule"] == POTAGER.expected["intitule"]
    letter = find_letter([doc], rules=rules, dossier_sha256=dossier.dossier_sha256)
    assert letter.letter_sha256 == doc.sha256
    assert letter.page == len(doc.pages)


def test_a_blank_form_is_read_the_full_way(rules):
    assert _read(blank_form_pdf(rules)).form_pages == ()
