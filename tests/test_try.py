"""`mailbot try FILE.eml --json`: the pipeline's verdict on saved mail, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel, select

from mailbot.cli import main
from mailbot.config import load_config
from mailbot.intake import poll_all
from mailbot.trial import CHECKED_READ_ONLY, read_only_open_dossiers, try_message
from storage import repositories as repo
from storage.db import open_database, session_scope
from storage.models import Dossier, Message, utcnow
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


SENDER = "marie.lefebvre@jardins-perroy.fr"
SAME_SENDER = "same_sender_open_dossier"
NO_DATABASE = "no database configured: not checked"


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


# --------------------------------------------------------------------------
# The chain's second stage: the sender's open dossier, read from the database


def the_letter_alone():
    """The letter sent a week after a dossier without it, in a message of its own."""
    return make_mail(
        subject="Candidature label Smart City : le courrier",
        sender=f"Marie Lefebvre <{SENDER}>",
        body="Bonjour, voici le courrier adressé à Monsieur le Maire pour notre candidature.",
        attachments=[("courrier_maire.pdf", corpus.letter_pdf(corpus.POTAGER), "application/pdf")],
    )


def steps(rule_trace: list[dict]) -> list[tuple[str, bool]]:
    return [(step["rule"], step["hit"]) for step in rule_trace]


def database_state(engine: Engine, url: str) -> dict[str, object]:
    """Row counts of every table, and for SQLite the bytes of the database and its WAL."""
    with engine.connect() as connection:
        state: dict[str, object] = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            state[file.name] = file.read_bytes() if file.exists() else None
    return state


def test_without_a_database_try_says_it_did_not_check(try_json):
    result = try_json(the_letter_alone())
    assert result["verdict"] == "candidature"
    assert result["rule_trace"][-1] == {"rule": SAME_SENDER, "hit": False, "reason": NO_DATABASE}


def test_try_and_the_worker_agree_on_a_sender_with_an_open_dossier(
    service_app, dovecot, config_dir, tmp_path, capsys
):
    def try_cli(message) -> dict:
        path = tmp_path / "saved.eml"
        path.write_bytes(as_bytes(message))
        code = main(["--config", str(config_dir), "try", str(path), "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(captured.out)

    first = candidature(letter=False)
    dovecot.append("n.bataillon", first)
    assert all(r.error is None for r in poll_all(service_app))
    later = the_letter_alone()
    tried = try_cli(later)
    dovecot.append("n.bataillon", later)
    assert all(r.error is None for r in poll_all(service_app))

    with session_scope(service_app.engine) as session:
        [dossier] = session.exec(select(Dossier)).all()
        filed = session.exec(select(Message).where(Message.subject == later["Subject"])).one()
        assert filed.dossier_id == dossier.id
    assert dossier.status == "complete"
    assert (tried["verdict"], tried["reference"]) == ("follow_up", dossier.reference)
    assert (filed.verdict, filed.status) == ("follow_up", "filed")
    assert steps(tried["rule_trace"]) == steps(filed.rule_trace)
    assert filed.rule_trace[-1]["rule"] == SAME_SENDER and filed.rule_trace[-1]["hit"]
    # Same decision, same words; try also says where it looked.
    assert tried["rule_trace"][-1]["reason"] == (
        f"{filed.rule_trace[-1]['reason']}; {CHECKED_READ_ONLY}"
    )
    assert tried["rule_trace"][:-1] == filed.rule_trace[:-1]


def test_try_reads_the_database_and_writes_nothing(engine, db_url, config_dir):
    config = load_config(config_dir, environ={"MAILBOT_DATABASE__URL": db_url})
    with session_scope(engine) as session:
        dossier = repo.create_dossier(
            session=session,
            year=2026,
            sender=SENDER,
            sender_name="Marie Lefebvre",
            fields={"intitule": corpus.POTAGER.raw["intitule"]},
            missing=["letter"],
            status="incomplete",
            received_at=utcnow(),
            actor="test",
        )
    before = database_state(engine, db_url)

    result = try_message(config, as_bytes(the_letter_alone()))
    again = try_message(config, as_bytes(candidature(letter=True)))

    assert (result["verdict"], result["reference"]) == ("follow_up", dossier.reference)
    assert result["rule_trace"][-1]["hit"]
    assert result["rule_trace"][-1]["reason"].endswith(f"; {CHECKED_READ_ONLY}")
    # A new dossier for the same project joins it too: same intitulé.
    assert (again["verdict"], again["reference"]) == ("follow_up", dossier.reference)
    assert database_state(engine, db_url) == before


def test_the_read_only_look_up_refuses_to_write(engine, db_url, config_dir):
    config = load_config(config_dir, environ={"MAILBOT_DATABASE__URL": db_url})
    notes: list[str] = []
    with read_only_open_dossiers(config, notes=notes) as open_dossiers:
        assert open_dossiers is not None and notes == []
        assert open_dossiers.of_sender(SENDER) == ()
        with pytest.raises(DBAPIError):
            open_dossiers.session.execute(text("DELETE FROM dossiers"))


def test_a_database_nobody_has_open_is_read_as_it_is(config_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'mailbot.sqlite3'}"
    open_database(url).dispose()
    files = {path.name: path.read_bytes() for path in (tmp_path / "var").iterdir()}
    assert list(files) == ["mailbot.sqlite3"]
    config = load_config(config_dir, environ={"MAILBOT_DATABASE__URL": url})
    result = try_message(config, as_bytes(the_letter_alone()))
    reason = result["rule_trace"][-1]["reason"]
    assert reason == f"{SENDER!r} has no open dossier; {CHECKED_READ_ONLY}"
    # Not even an empty WAL or its index left beside it.
    assert {path.name: path.read_bytes() for path in (tmp_path / "var").iterdir()} == files


def test_a_database_file_that_does_not_exist_is_not_created(config_dir, tmp_path):
    path = tmp_path / "nowhere" / "mailbot.sqlite3"
    config = load_config(config_dir, environ={"MAILBOT_DATABASE__URL": f"sqlite:///{path}"})
    result = try_message(config, as_bytes(the_letter_alone()))
    assert result["rule_trace"][-1]["reason"] == NO_DATABASE
    assert not path.parent.exists()


def test_a_database_at_another_schema_is_not_checked(config_dir, tmp_path):
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")  # an empty file is an empty SQLite database
    config = load_config(config_dir, environ={"MAILBOT_DATABASE__URL": f"sqlite:///{path}"})
    result = try_message(config, as_bytes(the_letter_alone()))
    assert result["rule_trace"][-1]["reason"] == NO_DATABASE
    assert any("database not checked" in warning for warning in result["warnings"])
    assert path.read_bytes() == b""
