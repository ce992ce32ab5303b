"""`mailbot try FILE.eml --json`: the pipeline's verdict on saved mail, writing nothing."""

from __future__ import annotations

import json

import pytest

from mailbot.cli import main
from mailbot.config import load_config
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import as_bytes, make_mail

RULES = load_config(SHIPPED_CONFIG, environ={}).rules
KEYS = {
    "verdict",
    "message_id",
    "sender",
    "reference",
    "fields",
    "dossier_present",
    "letter_present",
    "attachments",
    "missing",
    "reply",
    "warnings",
}


@pytest.fixture
def try_json(config_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(message, *extra: str) -> dict:
        path = tmp_path / "saved.eml"
        path.write_bytes(as_bytes(message) if not isinstance(message, bytes) else message)
        code = main(["--config", str(config_dir), "try", str(path), "--json", *extra])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(captured.out)

    yield run
    # Nothing written anywhere: no database, no blob store, no var/ directory.
    assert not (config_dir.parent / "var").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config", "saved.eml"]


def candidature(*, letter: bool):
    attachments = [("dossier.pdf", corpus.form_pdf(RULES, corpus.POTAGER), "application/pdf")]
    if letter:
        attachments.append(("courrier.pdf", corpus.letter_pdf(corpus.POTAGER), "application/pdf"))
    return make_mail(
        subject="Candidature label Béthune Smart City",
        sender="Marie Lefebvre <marie.lefebvre@jardins-perroy.fr>",
        body="Bonjour, voici notre dossier d'intention et le courrier à Monsieur le Maire.",
        attachments=attachments,
    )


def test_complete_candidature(try_json):
    result = try_json(candidature(letter=True))
    assert set(result) >= KEYS
    assert result["verdict"] == "candidature"
    assert result["sender"] == "marie.lefebvre@jardins-perroy.fr"
    assert result["dossier_present"] and result["letter_present"]
    assert result["missing"] == []
    assert result["fields"]["intitule"] == "Potager solidaire du quartier du Perroy"
    assert result["fields"]["criteres"] == ["collaborative", "durable"]
    assert sorted(a["role"] for a in result["attachments"]) == ["dossier", "letter"]
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in result["attachments"])
    assert result["reply"]["kind"] == "acknowledgement"
    assert result["reply"]["to"] == "marie.lefebvre@jardins-perroy.fr"
    assert "Votre dossier est complet" in result["reply"]["text"]


def test_missing_letter(try_json):
    result = try_json(candidature(letter=False))
    assert result["verdict"] == "candidature"
    assert result["letter_present"] is False
    assert result["missing"] == ["letter"]
    assert result["reply"]["kind"] == "missing_pieces"
    assert "le courrier officiel adressé à Monsieur le Maire" in result["reply"]["text"]


def test_follow_up_and_auto_reply_get_no_reply(try_json):
    follow = try_json(make_mail(subject="Re: [BSC-2026-0007] pièces manquantes", body="Voici."))
    assert follow["verdict"] == "follow_up"
    assert follow["reference"] == "BSC-2026-0007"
    assert follow["reply"] is None
    auto = try_json(candidature(letter=True), "--mailbox", "d.berteloot")
    assert auto["verdict"] == "candidature"
    robot = make_mail(
        subject="Absence", body="Je suis absente", headers={"Auto-Submitted": "auto-replied"}
    )
    result = try_json(robot)
    assert result["verdict"] == "auto_reply" and result["reply"] is None
    assert any(step["hit"] and step["rule"] == "auto_submitted" for step in result["rule_trace"])


def test_unreadable_file_is_a_handled_error(config_dir, tmp_path, capsys):
    code = main(["--config", str(config_dir), "try", str(tmp_path / "absent.eml"), "--json"])
    assert code in (1, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_an_oversized_photo_beside_a_complete_dossier_does_not_block_it(try_json):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (8000, 6000), 1).save(buffer, format="PNG")
    message = candidature(letter=True)
    message.add_attachment(buffer.getvalue(), maintype="image", subtype="png", filename="site.png")
    result = try_json(message)
    assert result["verdict"] == "candidature"
    assert result["missing"] == []
    assert result["reply"]["kind"] == "acknowledgement"
    assert any("site.png" in w or "pixels" in w for w in result["warnings"]), result["warnings"]


def test_an_unreadable_file_where_the_letter_may_be_goes_to_review(try_json):
    message = candidature(letter=False)
    message.add_attachment(
        b"%PDF-1.7\n garbage", maintype="application", subtype="pdf", filename="courrier.pdf"
    )
    result = try_json(message)
    assert result["verdict"] == "needs_review"
    assert result["reply"] is None
