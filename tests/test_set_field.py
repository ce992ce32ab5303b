"""`mailbot dossiers set-field` and the back-office "corriger" form: one service, audited."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections.abc import Iterator

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from mailbot.app import App
from mailbot.cli import main
from mailbot.staff import add_staff
from mailbot.web.app import create_app
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Event, Outbox, OutboxKind
from tests.fixtures import corpus
from tests.fixtures.web import LOGIN, MARIE, PASSWORD, candidature, file_mail

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def file_without(app: App, key: str, *, uid: int) -> str:
    """A candidature whose dossier d'intention leaves ``key`` blank: incomplete."""
    project = dataclasses.replace(
        corpus.POTAGER, raw={k: v for k, v in corpus.POTAGER.raw.items() if k != key}
    )
    rules = app.config.rules
    filed = file_mail(
        app,
        candidature(
            MARIE,
            [
                ("dossier_intention.pdf", corpus.form_pdf(rules, project), "application/pdf"),
                ("courrier_maire.pdf", corpus.letter_pdf(project), "application/pdf"),
            ],
        ),
        uid=uid,
    )
    assert filed.dossier_reference
    return filed.dossier_reference


@pytest.fixture
def app(config_dir, secrets_env, monkeypatch) -> Iterator[App]:
    monkeypatch.setenv("MAILBOT_CONFIG", str(config_dir))
    monkeypatch.setenv("MAILBOT_STAFF_USER", "nbataillon")
    application = App(str(config_dir))
    yield application
    application.close()


def shown(reference: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["dossiers", "show", reference, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def completed_replies(app: App, reference: str) -> list[Outbox]:
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        assert dossier is not None
        return list(
            session.exec(
                select(Outbox).where(
                    Outbox.dossier_id == dossier.id, Outbox.kind == OutboxKind.COMPLETED
                )
            ).all()
        )


def test_set_field_normalises_audits_and_completes_once(app, capsys):
    reference = file_without(app, "lieu", uid=1)
    before = shown(reference, capsys)
    assert before["status"] == "incomplete"
    assert "field:lieu" in before["missing"]

    assert main(["dossiers", "set-field", reference, "lieu", "  Quartier   du Perroy "]) == 0
    said = capsys.readouterr().out
    assert '"Quartier du Perroy"' in said and "status: complete" in said
    assert "reply queued" in said
    after = shown(reference, capsys)
    assert after["status"] == "complete"
    assert after["fields"]["lieu"] == "Quartier du Perroy"
    assert "field:lieu" not in after["missing"]
    corrected = [e for e in after["events"] if e["action"] == "dossier.field_corrected"]
    assert corrected[0]["actor"] == "staff:nbataillon"
    assert corrected[0]["details"]["old"] is None
    assert corrected[0]["details"]["new"] == "Quartier du Perroy"
    assert len(completed_replies(app, reference)) == 1

    # Choices by printed label or key; the "completed" reply is not queued twice.
    thematique = app.config.rules.thematiques["habitat_environnement"].label
    assert main(["dossiers", "set-field", reference, "thematique", thematique.upper()]) == 0
    assert shown(reference, capsys)["fields"]["thematique"] == "habitat_environnement"
    assert main(["dossiers", "set-field", reference, "lieu", ""]) == 0
    assert shown(reference, capsys)["status"] == "incomplete"
    assert main(["dossiers", "set-field", reference, "lieu", "Perroy", "--note", "appel"]) == 0
    assert shown(reference, capsys)["status"] == "complete"
    assert len(completed_replies(app, reference)) == 1
    assert main(["dossiers", "set-field", reference, "lieu", "Perroy"]) == 0
    assert "nothing recorded" in capsys.readouterr().out

    # Refusals name what is valid; nothing is recorded.
    assert main(["dossiers", "set-field", reference, "couleur", "bleu"]) == 1
    error = capsys.readouterr().err
    assert "unknown field 'couleur'" in error and "thematique" in error
    assert main(["dossiers", "set-field", reference, "budget", "beaucoup"]) == 1
    assert "not a valid" in capsys.readouterr().err
    assert main(["dossiers", "set-field", reference, "thematique", "zzz"]) == 1
    assert "valid choices: " in capsys.readouterr().err
    assert main(["dossiers", "set-field", reference, "budget", "12 500 €"]) == 0
    assert shown(reference, capsys)["fields"]["budget"] == 12500
    assert main(["dossiers", "set-field", "BSC-2026-9999", "lieu", "x"]) == 1
    assert main(["dossiers", "set-field", reference, "date_realisation", "15 juin 2027"]) == 0
    assert shown(reference, capsys)["fields"]["date_realisation"].startswith("2027-06-15")


def test_the_corriger_form_uses_the_same_service_with_csrf(
    config_dir, secrets_env, monkeypatch, capsys
):
    application = App(str(config_dir))
    try:
        reference = file_without(application, "lieu", uid=1)
        add_staff(application, login=LOGIN, display_name=None, password=PASSWORD, actor="t")
        with TestClient(create_app(application), follow_redirects=False) as client:
            token = CSRF_RE.search(client.get("/login").text).group(1)
            client.post("/login", data={"login": LOGIN, "password": PASSWORD, "csrf_token": token})
            page = client.get(f"/dossiers/{reference}").text
            assert f'action="/dossiers/{reference}/field"' in page
            token = CSRF_RE.search(page).group(1)
            refused = client.post(
                f"/dossiers/{reference}/field", data={"champ": "lieu", "valeur": "Perroy"}
            )
            assert refused.status_code == 403
            done = client.post(
                f"/dossiers/{reference}/field",
                data={"champ": "lieu", "valeur": "Perroy", "note": "vu", "csrf_token": token},
            )
            assert done.status_code == 303
            page = client.get(f"/dossiers/{reference}").text
            assert "Le dossier est désormais complet" in page
            lieu = application.config.rules.fields["lieu"].label
            history = " ".join(page.split("Champ corrigé</span>", 1)[1].split())
            assert history.startswith(f": {lieu} — vide → Perroy"), history[:200]
            bad = client.post(
                f"/dossiers/{reference}/field",
                data={"champ": "couleur", "valeur": "x", "csrf_token": token},
            )
            assert bad.status_code == 303
            page = html.unescape(client.get(f"/dossiers/{reference}").text)
            assert "Correction non enregistrée : champ inconnu « couleur » (champs : " in page
            assert "unknown field" not in page
            for field, value, why in (
                ("budget", "beaucoup", "un montant en euros est attendu, par exemple 12 500 €"),
                ("thematique", "zzz", "choix possibles : "),
            ):
                label = application.config.rules.fields[field].label
                client.post(
                    f"/dossiers/{reference}/field",
                    data={"champ": field, "valeur": value, "csrf_token": token},
                )
                page = html.unescape(client.get(f"/dossiers/{reference}").text)
                assert (
                    f"Correction non enregistrée : « {value} » n'est pas une valeur reconnue "
                    f"pour « {label} » ({why}" in page
                )
                assert "not a valid" not in page and "not recognised" not in page
            thematiques = application.config.rules.thematiques.values()
            assert all(t.label in page for t in thematiques)  # the choices, by their label
        with session_scope(application.engine) as session:
            [event] = session.exec(
                select(Event).where(Event.action == "dossier.field_corrected")
            ).all()
            assert event.actor == f"staff:{LOGIN}"
            assert event.details["new"] == "Perroy"
        assert len(completed_replies(application, reference)) == 1
    finally:
        application.close()
