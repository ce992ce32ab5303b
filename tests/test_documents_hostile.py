"""Hostile attachments finish within the limits, with warnings and needs_review.

Each goes through ``extract_documents`` (the sandboxed child) and then the
readers, which must not raise either. Timings are printed.
"""

from __future__ import annotations

import time

import pytest

from mailbot.config import LimitsSettings, load_config
from parsers.checks import attachment_roles
from parsers.documents import extract_documents
from parsers.dossier import read_dossier
from parsers.letter import find_letter
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.corpus import attachment, hostile_files

# Small limits keep the suite fast; the shipped ones are 60 s / 1 GB / 60 s.
LIMITS = LimitsSettings(
    max_pdf_pages=20,
    parse_timeout_seconds=15,
    parse_memory_mb=768,
    parse_cpu_seconds=10,
    ocr_timeout_seconds=20,
)
RULES = load_config(SHIPPED_CONFIG).rules
HOSTILE = hostile_files(RULES)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_document(name, capsys):
    filename, build = HOSTILE[name]
    data = build()
    att = attachment(filename, data)
    started = time.monotonic()
    (doc,) = extract_documents([att], limits=LIMITS)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n{name}: {len(data):,} bytes read in {elapsed:.2f} s; {doc.warnings}")
    assert elapsed < LIMITS.parse_timeout_seconds + 5
    assert doc.needs_review
    assert doc.warnings
    assert doc.sha256 == att.sha256
    # The readers downstream take it in their stride.
    reading = read_dossier([doc], rules=RULES)
    letter = find_letter([doc], rules=RULES, dossier_sha256=reading.dossier_sha256)
    assert reading.dossier_sha256 is None and letter.letter_sha256 is None
    roles = attachment_roles([doc], dossier_sha256=None, letter_sha256=None)
    assert roles[att.sha256] in ("supporting", "ignored")


def test_hostile_documents_do_not_spoil_a_good_one():
    good = attachment("courrier.txt", b"Monsieur le Maire,\n")
    bad = [attachment(f, build()) for f, build in (HOSTILE["bomb"], HOSTILE["xref-loop"])]
    docs = extract_documents([bad[0], good, bad[1]], limits=LIMITS)
    assert docs[1].text == "Monsieur le Maire,\n" and not docs[1].needs_review
    assert docs[0].needs_review and docs[2].needs_review


def test_a_document_that_exhausts_memory_is_contained():
    # With a tight address-space limit the bomb kills or fails its own item only.
    limits = LIMITS.model_copy(update={"parse_memory_mb": 256})
    filename, build = HOSTILE["bomb"]
    good = attachment("note.txt", b"ok")
    docs = extract_documents([attachment(filename, build()), good], limits=limits)
    assert docs[0].needs_review and docs[0].warnings
    assert docs[1].text == "ok"
