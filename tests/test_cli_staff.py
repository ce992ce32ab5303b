"""Staff commands over a real database: list, show, set-status, export, db upgrade, health."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from mailbot import cli
from mailbot.app import App
from mailbot.cli import main
from parsers.reasons import ReplyHold, ReviewReason
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Message

FIELDS = {
    "intitule": "=Potager solidaire du Perroy",
    "thematique": "habitat_environnement",
    "criteres": ["collaborative", "durable"],
    "porteur_structure": "Association du Perroy",
    "budget": 12500,
}


@pytest.fixture
def app_with_dossier(config_dir, secrets_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MAILBOT_CONFIG", str(config_dir))
    app = App(str(config_dir))
    with session_scope(app.engine) as session:
        repo.create_dossier(
            session=session,
            year=2026,
            sender="alice@example.org",
            sender_name="Alice Martin",
            fields=FIELDS,
            missing=["letter"],
            status="incomplete",
            received_at=datetime(2026, 3, 15, 9, 30, tzinfo=UTC),
            actor="system",
        )
    yield app
    app.close()


def test_default_sqlite_database_created_on_first_use(config_dir, secrets_env, capsys):
    assert main(["--config", str(config_dir), "dossiers", "list"]) == 0
    assert "no dossiers" in capsys.readouterr().out
    assert (config_dir.parent / "var" / "mailbot.sqlite3").exists()
    assert main(["--config", str(config_dir), "db", "upgrade"]) == 0
    assert "already at revision" in capsys.readouterr().out


def test_list_show_and_set_status(app_with_dossier, capsys):
    assert main(["dossiers", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["reference"] == "BSC-2026-0001"
    assert entry["status"] == "incomplete"
    assert entry["missing"] == ["letter"]
    assert entry["received_at"] == "2026-03-15T09:30:00+00:00"

    assert main(["dossiers", "show", "bsc-2026-0001", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fields"]["criteres"] == ["collaborative", "durable"]
    assert [e["action"] for e in shown["events"]] == ["dossier.created"]

    os.environ["MAILBOT_STAFF_USER"] = "nbataillon"
    try:
        assert main(["dossiers", "set-status", "BSC-2026-0001", "accepted", "--note", "Jury"]) == 0
    finally:
        del os.environ["MAILBOT_STAFF_USER"]
    assert "incomplete -> accepted" in capsys.readouterr().out
    assert main(["dossiers", "show", "BSC-2026-0001", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "accepted"
    change = shown["events"][-1]
    assert change["actor"] == "staff:nbataillon"
    assert change["action"] == "dossier.status_changed"

    assert main(["dossiers", "set-status", "BSC-2026-0001", "bogus"]) == 2
    assert main(["dossiers", "show", "BSC-2026-9999"]) == 1
    assert "no dossier" in capsys.readouterr().err
    assert main(["dossiers", "list", "--status", "accepted", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_exports_hold_every_field(app_with_dossier, tmp_path, capsys):
    rules = app_with_dossier.config.rules
    csv_path, xlsx_path = tmp_path / "d.csv", tmp_path / "d.xlsx"
    assert main(["dossiers", "export", "--format", "csv", "-o", str(csv_path)]) == 0
    assert main(["dossiers", "export", "--format", "xlsx", "-o", str(xlsx_path)]) == 0
    capsys.readouterr()

    text = csv_path.read_bytes().decode("utf-8-sig")
    header, row = list(csv.reader(io.StringIO(text), delimiter=";"))
    for field in rules.fields.values():
        assert field.label in header
    record = dict(zip(header, row, strict=True))
    assert record["Référence"] == "BSC-2026-0001"
    assert record["Statut"] == "incomplet"
    assert record[rules.fields["criteres"].label] == "collaborative, durable"
    # A value starting with "=" must not become a formula.
    assert record[rules.fields["intitule"].label] == "'=Potager solidaire du Perroy"

    sheet = load_workbook(xlsx_path).active
    values = [[c.value for c in r] for r in sheet.iter_rows()]
    assert values[0][: len(header)] == header
    assert values[1][0] == "BSC-2026-0001"
    assert str(values[1][header.index(rules.fields["budget"].label)]) == "12500"


def test_health(app_with_dossier, capsys):
    assert main(["health"]) == 0
    heartbeat = app_with_dossier.config.resolve_path("var/heartbeat")
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    heartbeat.touch()
    assert main(["health"]) == 0
    old = time.time() - 7200
    os.utime(heartbeat, (old, old))
    assert main(["health"]) == 1
    assert "heartbeat" in capsys.readouterr().err


def test_template_command_writes_the_blank_forms(config_dir, tmp_path, capsys):
    from docx import Document
    from pypdf import PdfReader

    pdf, docx = tmp_path / "dossier.pdf", tmp_path / "dossier.docx"
    assert main(["--config", str(config_dir), "template", "--format", "pdf", "-o", str(pdf)]) == 0
    assert main(["--config", str(config_dir), "template", "--format", "docx", "-o", str(docx)]) == 0
    fields = PdfReader(pdf).get_fields()
    for key in ("intitule", "description", "contact_email", "categorie_label", "thematique"):
        assert key in fields
    assert {"criteres_collaborative", "criteres_durable", "criteres_innovante"} <= set(fields)
    cells = {c.text for t in Document(docx).tables for r in t.rows for c in r.cells}
    assert any("Intitulé de l'action ou du projet" in text for text in cells)
    assert main(["--config", str(config_dir), "template", "--format", "odt", "-o", "x"]) == 2


def test_messages_and_replies_show_their_reason_in_french(app_with_dossier, capsys, monkeypatch):
    monkeypatch.setattr(cli.out, "width", 250)  # tables are not cut to a terminal's width
    with session_scope(app_with_dossier.engine) as session:
        dossier = repo.get_dossier(session=session, reference="BSC-2026-0001")
        message = Message(
            dedup_key="sha:1",
            sha256="1" * 64,
            size=10,
            sender="claire@example.org",
            subject="Où en est le dossier BSC-2020-0999 ?",
            verdict="follow_up",
            status="needs_review",
            reason=ReviewReason.UNKNOWN_DOSSIER,
            error="BSC-2020-0999",
        )
        session.add(message)
        repo.enqueue_outgoing(
            session=session,
            dedup_key="completed:1:1",
            kind="completed",
            mailbox="n.bataillon",
            from_addr="n.bataillon@ville-bethune.fr",
            to_addr="alice@example.org",
            subject="Dossier complet",
            message_id="<completed-1@ville-bethune.fr>",
            raw=b"raw",
            dossier=dossier,
            status="suppressed",
            suppressed_reason=ReplyHold.SENDER_DAILY_CAP,
            suppressed_details={"count": 3, "cap": 3},
        )

    assert main(["messages", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["reason"] == "unknown_dossier"
    assert entry["reason_label"] == "le message cite un dossier inconnu : BSC-2020-0999"
    assert (entry["status_label"], entry["verdict_label"]) == ("à vérifier", "suite d'un dossier")
    assert main(["messages", "list"]) == 0
    table = capsys.readouterr().out
    assert "Motif" in table and "dossier inconnu" in table and "à vérifier" in table

    assert main(["dossiers", "show", "BSC-2026-0001", "--json"]) == 0
    [reply] = json.loads(capsys.readouterr().out)["replies"]
    assert reply["suppressed_reason"] == "sender_daily_cap"
    assert reply["reason_label"] == (
        "alice@example.org a déjà reçu 3 réponses aujourd'hui (plafond : 3)"
    )
    assert main(["dossiers", "show", "BSC-2026-0001"]) == 0
    shown = capsys.readouterr().out
    assert "incomplet" in shown and "non envoyée" in shown and "plafond" in shown
