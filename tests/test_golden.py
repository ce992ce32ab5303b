"""Golden mails: ``mailbot try --json`` on every ``tests/golden/NAME.eml`` equals ``NAME.json``.

The mails are real clients' output (mutt, neomutt) or built to the exact MIME shape of
Outlook, Gmail, Apple Mail, Thunderbird and of robots (bounces from four MTAs, vacation
replies, a list digest, a newsletter, a calendar invitation); ``tests/golden/README.md``
says where each comes from and ``scripts/make_golden.py`` rebuilds them.

The command runs in-process through the CLI entry point (``mailbot.cli.main``), against a
copy of the shipped ``config/`` and no database, so what is compared is exactly what an
admin would see. One thing is normalised, and only it: the reply that ``try`` previews
carries the placeholder reference ``BSC-<this year>-0000``, whose year comes from the clock;
it is written ``BSC-YYYY-0000`` in the expected files. Everything else (Message-IDs,
hashes, sizes, rule trace) is fixed by the committed ``.eml`` files.

After an intended change of behaviour, regenerate the expectations and review the diff::

    MAILBOT_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mailbot.cli import main
from tests.fixtures.config import SHIPPED_CONFIG, use_test_authentication

GOLDEN = Path(__file__).parent / "golden"
MAILS = sorted(GOLDEN.glob("*.eml"))
REGENERATE = os.environ.get("MAILBOT_REGEN_GOLDEN") == "1"
PLACEHOLDER_REFERENCE = re.compile(r"\bBSC-\d{4}-0000\b")


def normalised(result: dict[str, Any]) -> dict[str, Any]:
    """``try --json`` output with the clock's year taken out of the previewed reply."""
    reply = result.get("reply")
    if reply:
        result = {
            **result,
            "reply": {
                key: PLACEHOLDER_REFERENCE.sub("BSC-YYYY-0000", value)
                if isinstance(value, str)
                else value
                for key, value in reply.items()
            },
        }
    return result


def as_text(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@pytest.fixture(scope="module")
def golden_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the shipped config for the module; ``try`` writes nothing beside it."""
    target = tmp_path_factory.mktemp("golden") / "config"
    shutil.copytree(SHIPPED_CONFIG, target)
    use_test_authentication(target)
    return target


def try_json(config: Path, mail: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``mailbot --config CONFIG try MAIL --json``, in-process."""
    code = main(["--config", str(config), "try", str(mail), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_there_are_enough_golden_mails_and_each_has_its_expectation():
    assert len(MAILS) >= 20
    expected = {path.with_suffix(".json").name for path in MAILS}
    present = {path.name for path in GOLDEN.glob("*.json")}
    assert present == expected or REGENERATE, (
        f"missing: {sorted(expected - present)}; orphans: {sorted(present - expected)}"
    )


@pytest.mark.parametrize("mail", MAILS, ids=[path.stem for path in MAILS])
def test_try_json_matches_the_golden_file(mail: Path, golden_config: Path, capsys):
    actual = as_text(normalised(try_json(golden_config, mail, capsys)))
    expected_path = mail.with_suffix(".json")
    if REGENERATE:
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), f"no {expected_path.name}: run with MAILBOT_REGEN_GOLDEN=1"
    assert actual == expected_path.read_text(encoding="utf-8")
    # try wrote nothing: no database, no blob store, no var/ directory beside the config.
    assert not (golden_config.parent / "var").exists()


def test_normalisation_touches_only_the_placeholder_year():
    result = {
        "verdict": "candidature",
        "message_id": "<BSC-2026-0000@example.org>",
        "reply": {"kind": "acknowledgement", "subject": "[BSC-2031-0000] Bien reçu", "text": None},
    }
    assert normalised(result) == {
        "verdict": "candidature",
        "message_id": "<BSC-2026-0000@example.org>",
        "reply": {"kind": "acknowledgement", "subject": "[BSC-YYYY-0000] Bien reçu", "text": None},
    }
    assert normalised({"reply": None}) == {"reply": None}
