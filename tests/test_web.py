"""The back-office over a real database filled by the real pipeline (Starlette TestClient).

Access (303 to /login without a session on every route, CSRF, throttle, the
SSO header only from a trusted proxy), escaping of applicant text, the
headers of served files, and every page and action.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from mailbot import decisions, wording
from mailbot.app import App
from mailbot.errors import RefusedError
from mailbot.smtp import send_outbox
from mailbot.staff import add_staff, remove_staff
from mailbot.web import labels
from mailbot.web.app import create_app
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Dossier, Event, Message, Outbox
from tests.fixtures.config import SHIPPED_CONFIG, TEST_SECRETS, use_test_authentication
from tests.fixtures.dovecot import free_port
from tests.fixtures.web import (
    HOSTILE_FILE,
    LOGIN,
    PASSWORD,
    Office,
    csrf_of,
    log_in,
    office_in,
    seed_office,
)


@pytest.fixture(scope="module")
def office(tmp_path_factory) -> Iterator[Office]:
    with office_in(tmp_path_factory.mktemp("office")) as seeded:
        yield seeded


def fresh_app(office: Office, monkeypatch: pytest.MonkeyPatch, **settings: str) -> App:
    """An App over the seeded database with ``[web]`` overrides (``KEY=value``)."""
    for key, value in settings.items():
        monkeypatch.setenv(f"MAILBOT_WEB__{key.upper()}", value)
    return App(str(office.config_dir))


@pytest.fixture
def client(office: Office) -> Iterator[TestClient]:
    with TestClient(create_app(office.app), follow_redirects=False) as test_client:
        yield test_client


def events(office: Office, action: str) -> list[Event]:
    with session_scope(office.app.engine) as session:
        return list(session.exec(select(Event).where(Event.action == action)).all())


def piece_ids(office: Office, reference: str) -> dict[str, int]:
    with session_scope(office.app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        assert dossier is not None
        return {p.filename: p.id for p in repo.list_pieces(session=session, dossier=dossier)}


# --------------------------------------------------------------------------
# access


def test_every_page_and_file_without_a_session_answers_303_to_login(office, client):
    pieces = piece_ids(office, office.potager)
    gets = [
        "/",
        "/dossiers",
        "/dossiers?q=potager",
        f"/dossiers/{office.potager}",
        f"/dossiers/{office.potager}/pieces/{pieces['dossier_intention.pdf']}",
        f"/messages/{office.review_message}/raw",
        "/review",
        "/replies",
        "/no-such-page",
        "/dossiers/BSC-2026-0001/pieces/99/nothing",
    ]
    posts = [
        f"/dossiers/{office.potager}/status",
        f"/dossiers/{office.potager}/hold",
        f"/review/{office.review_message}/retry",
        f"/review/{office.review_message}/dismiss",
        f"/review/{office.follow_up}/attach",
        "/logout",
    ]
    with session_scope(office.app.engine) as session:
        before = repo.get_dossier(session=session, reference=office.potager).status
    for path in gets:
        response = client.get(path)
        assert (response.status_code, response.headers.get("location")) == (303, "/login"), path
    for path in posts:
        response = client.post(path, data={"statut": "accepted"})
        assert (response.status_code, response.headers.get("location")) == (303, "/login"), path
    assert client.get("/static/style.css").status_code == 200
    with session_scope(office.app.engine) as session:
        assert repo.get_dossier(session=session, reference=office.potager).status == before


def test_login_form_then_a_signed_strict_httponly_session(office, client):
    page = client.get("/login")
    assert page.status_code == 200
    for field in ('name="login"', 'name="password"', 'type="password"'):
        assert field in page.text
    token = csrf_of(page.text)
    wrong = client.post("/login", data={"login": LOGIN, "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    assert "Identifiant ou mot de passe incorrect" in wrong.text
    response = client.post(
        "/login", data={"login": LOGIN.upper(), "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert client.get("/dossiers").status_code == 200
    assert any(e.actor == f"staff:{LOGIN}" for e in events(office, "staff.login"))
    assert any(e.details["login"] == LOGIN for e in events(office, "staff.login_failed"))

    logout_token = csrf_of(client.get("/dossiers").text)
    assert client.post("/logout", data={"csrf_token": logout_token}).status_code == 303
    assert client.get("/dossiers").status_code == 303
    assert events(office, "staff.logout")[-1].actor == f"staff:{LOGIN}"


def test_cookie_is_secure_when_base_url_is_https(office, monkeypatch):
    app = fresh_app(office, monkeypatch, base_url="https://mailbot.ville-bethune.fr")
    with TestClient(
        create_app(app), base_url="https://testserver", follow_redirects=False
    ) as https_client:
        log_in(https_client)
        assert https_client.get("/dossiers").status_code == 200
        token = csrf_of(https_client.get("/login").text)
        response = https_client.post(
            "/login", data={"login": LOGIN, "password": PASSWORD, "csrf_token": token}
        )
        assert "secure" in response.headers["set-cookie"].lower()
    app.close()


def test_forms_without_their_csrf_token_are_refused(office, client):
    client.get("/login")
    refused = client.post("/login", data={"login": LOGIN, "password": PASSWORD})
    assert refused.status_code == 403
    assert client.get("/dossiers").status_code == 303  # not logged in
    log_in(client)
    for data in ({"statut": "rejected"}, {"statut": "rejected", "csrf_token": "forged"}):
        response = client.post(f"/dossiers/{office.potager}/status", data=data)
        assert response.status_code == 403
        assert "Action refusée" in response.text
    assert client.post("/logout", data={}).status_code == 403
    with session_scope(office.app.engine) as session:
        assert repo.get_dossier(session=session, reference=office.potager).status != "rejected"


def test_login_attempts_are_limited_per_login_and_per_address(office, monkeypatch):
    app = fresh_app(
        office, monkeypatch, login_attempts_per_login="3", login_attempts_per_address="5"
    )
    web_app = create_app(app)
    with TestClient(web_app, follow_redirects=False) as attacker:
        token = csrf_of(attacker.get("/login").text)

        def attempt(login: str, password: str) -> int:
            data = {"login": login, "password": password, "csrf_token": token}
            return attacker.post("/login", data=data).status_code

        assert [attempt(LOGIN, f"guess {n}") for n in range(3)] == [401, 401, 401]
        assert attempt(LOGIN, PASSWORD) == 429  # even the right password, for now
        # Other logins from the same address: two more failures reach the address limit.
        assert [attempt("someone", "x"), attempt("other", "y")] == [401, 401]
        assert attempt("third", "z") == 429
    # From another address the account is still locked (per login).
    with TestClient(web_app, client=("192.0.2.7", 4000), follow_redirects=False) as colleague:
        token = csrf_of(colleague.get("/login").text)
        data = {"login": LOGIN, "password": PASSWORD, "csrf_token": token}
        assert colleague.post("/login", data=data).status_code == 429
    app.close()


def test_sso_header_is_honoured_only_from_a_trusted_proxy(office, monkeypatch):
    app = fresh_app(
        office,
        monkeypatch,
        trusted_user_header="X-Remote-User",
        trusted_proxies='["10.0.0.1"]',
    )
    web_app = create_app(app)
    header = {"X-Remote-User": LOGIN}
    with TestClient(web_app, client=("10.0.0.1", 4000), follow_redirects=False) as proxy:
        assert proxy.get("/dossiers", headers=header).status_code == 200
    with TestClient(web_app, client=("10.0.0.1", 4000), follow_redirects=False) as proxy:
        assert proxy.get("/dossiers", headers={"X-Remote-User": "stranger"}).status_code == 303
        assert proxy.get("/review").status_code == 303  # no header and no session
    with TestClient(web_app, client=("10.0.0.2", 4000), follow_redirects=False) as direct:
        assert direct.get("/dossiers", headers=header).status_code == 303
    sso = [e for e in events(office, "staff.login") if e.details.get("method") == "sso"]
    assert sso and sso[-1].actor == f"staff:{LOGIN}"
    app.close()


def test_a_removed_account_loses_its_session(office, client):
    add_staff(office.app, login="temp", display_name=None, password=PASSWORD, actor="staff:root")
    log_in(client, "temp")
    assert client.get("/dossiers").status_code == 200
    remove_staff(office.app, login="temp", actor="staff:root")
    assert client.get("/dossiers").status_code == 303


def test_session_secret_is_generated_once_and_kept_private(office, monkeypatch, tmp_path):
    secret_file = office.config_dir.parent / "var" / "web-session-secret"
    assert secret_file.exists()  # written when the first client was built
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    first = secret_file.read_text()
    create_app(office.app)
    assert secret_file.read_text() == first
    # A configured variable wins; one too short is refused at start.
    app = fresh_app(office, monkeypatch, session_secret_env="MAILBOT_WEB_SECRET")
    monkeypatch.setenv("MAILBOT_WEB_SECRET", "short")
    with pytest.raises(Exception, match="MAILBOT_WEB_SECRET"):
        create_app(app)
    monkeypatch.setenv("MAILBOT_WEB_SECRET", "x" * 40)
    with TestClient(create_app(app), follow_redirects=False) as other:
        log_in(other)
    app.close()


# --------------------------------------------------------------------------
# pages


def test_dossier_list_filters_searches_sorts_and_counts(office, client):
    log_in(client)
    page = client.get("/dossiers").text
    for reference in (office.potager, office.hostile):
        assert f">{reference}</a>" in page  # in full
    assert "Habitat – Environnement" in page
    assert "Incomplet" in page

    found = client.get("/dossiers", params={"q": "perroy"}).text
    assert office.potager in found and office.hostile not in found
    assert (
        client.get("/dossiers", params={"q": office.hostile.lower()}).text.count(
            f">{office.hostile}</a>"
        )
        == 1
    )
    by_sender = client.get("/dossiers", params={"q": "mobinord"}).text
    assert office.hostile in by_sender and office.potager not in by_sender
    by_box = client.get("/dossiers", params={"boite": "d.berteloot"}).text
    assert office.hostile in by_box and office.potager not in by_box
    by_theme = client.get("/dossiers", params={"thematique": "habitat_environnement"}).text
    assert office.potager in by_theme and office.hostile not in by_theme
    none = client.get("/dossiers", params={"statut": "rejected"}).text
    assert "Aucun dossier ne correspond" in none
    oldest = client.get("/dossiers", params={"tri": "reference"}).text
    assert oldest.index(office.potager) < oldest.index(office.hostile)
    newest = client.get("/dossiers", params={"tri": "recus"}).text
    assert newest.index(f">{office.hostile}<") < newest.index(f">{office.potager}<")
    # Counts per status: the four filed dossiers, two incomplete, two to check.
    assert re.search(r"Tous <b>4</b>", page)
    assert re.search(r"À vérifier <b>2</b>", page)
    # Search text is data, not SQL.
    assert client.get("/dossiers", params={"q": "%' OR 1=1 --"}).status_code == 200


def test_dossier_page_shows_fields_evidence_pieces_messages_replies_history(office, client):
    log_in(client)
    page = client.get(f"/dossiers/{office.potager.lower()}")
    assert page.status_code == 200
    text = page.text
    assert "Potager solidaire du quartier du Perroy" in text
    assert "12\u202f500 €" in text  # amount as staff read it
    assert "Collaborative, Durable" in text  # choices by their label
    # The evidence of each field, in French: where it was read, what, how sure.
    assert "<b>Lu dans</b> champ « intitule » du formulaire dossier_intention.pdf" in text
    assert "<b>Couche</b> formulaire PDF" in text and "Lecture sûre" in text
    for english in ("<b>source</b>", "<b>layer</b>", "form field", "text layer", "0.9"):
        assert english not in text, english
    assert "dossier_intention.pdf" in text and "courrier_maire.pdf" in text
    assert '<iframe class="preview" src="/dossiers/' in text  # the PDF shown in the page
    assert "Candidature au label Béthune Smart City" in text  # the message
    assert "Accusé de réception" in text or "Pièces manquantes" in text  # the reply
    assert "Dossier créé" in text  # the history
    assert client.get("/dossiers/BSC-2026-9999").status_code == 404
    assert client.get("/no-such-page").status_code == 404  # with a session: a real 404


def test_dossier_page_reads_while_filing_holds_the_write_lock(office, client):
    """A page only reads: on SQLite it takes no write lock, so filing mail never stalls it."""
    log_in(client)  # (logging in writes its audit event)
    assert office.app.engine.dialect.name == "sqlite"
    writer = sqlite3.connect(office.app.engine.url.database, timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # as the poller does while it files a message
    try:
        page = client.get(f"/dossiers/{office.potager}")
        assert page.status_code == 200
        assert "Potager solidaire du quartier du Perroy" in page.text
    finally:
        writer.rollback()
        writer.close()


@pytest.mark.parametrize(
    ("source", "worded"),
    [
        ("form field 'intitule' in dossier.pdf", "champ « intitule » du formulaire dossier.pdf"),
        ("form checkboxes 'criteres_*' in f.pdf", "cases à cocher du formulaire f.pdf"),
        (
            "line 'Budget : 12 500 €' on page 2 of d.pdf",
            "ligne « Budget : 12 500 € », page 2 de d.pdf",
        ),
        (
            "ocr line 'Lieu : Béthune' on page 1 of scan.pdf",
            "ligne lue par OCR « Lieu : Béthune », page 1 de scan.pdf",
        ),
        ("table row on page 1 of d.pdf", "ligne de tableau, page 1 de d.pdf"),
        ("docx table in dossier.docx", "tableau du document Word, dossier.docx"),
        ("two-column row on page 3 of d.pdf", "ligne à deux colonnes, page 3 de d.pdf"),
        ("OCR of scan.jpg", "lecture optique (OCR) de scan.jpg"),
    ],
)
def test_evidence_sources_are_worded_in_french(source, worded):
    assert wording.evidence_source(source) == worded


def test_every_doubt_the_reader_gives_has_its_french_label():
    """The doubts are phrases of parsers/dossier/reading.py: each one has its label."""
    import parsers.dossier.reading as reading

    text = Path(reading.__file__).read_text(encoding="utf-8")
    body = text[text.index("def _tick_doubt") : text.index("def _ticked_value")]
    doubts = re.findall(r'return "([^"]+)"', body)
    doubts += re.findall(r'doubt = "([^"]+)"', text)
    assert len(doubts) >= 7
    for doubt in doubts:
        label = wording.doubt_label(doubt)
        assert not label.startswith(wording.UNWORDED_DOUBT), doubt


def test_applicant_text_and_file_names_are_rendered_inert(office, client):
    log_in(client)
    for path in ("/dossiers", f"/dossiers/{office.hostile}", "/dossiers?q=jardin"):
        text = client.get(path).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "<b>Arts</b>" not in text
    detail = client.get(f"/dossiers/{office.hostile}").text
    assert "&lt;script&gt;alert(&#39;intitule&#39;)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in detail
    csp = client.get(f"/dossiers/{office.hostile}").headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp  # no script would run anyway


def test_files_are_served_sandboxed_pdf_inline_others_as_downloads(office, client):
    log_in(client)
    potager = piece_ids(office, office.potager)
    pdf = client.get(f"/dossiers/{office.potager}/pieces/{potager['dossier_intention.pdf']}")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline;")
    assert pdf.headers["x-content-type-options"] == "nosniff"
    assert pdf.headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'self'" in pdf.headers["content-security-policy"]
    assert pdf.content.startswith(b"%PDF-")
    download = client.get(
        f"/dossiers/{office.potager}/pieces/{potager['dossier_intention.pdf']}?telecharger=1"
    )
    assert download.headers["content-disposition"].startswith("attachment;")

    hostile = piece_ids(office, office.hostile)
    csv_file = client.get(f"/dossiers/{office.hostile}/pieces/{hostile[HOSTILE_FILE]}")
    assert csv_file.status_code == 200
    assert csv_file.headers["content-type"] == "application/octet-stream"
    disposition = csv_file.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "<" not in disposition
    assert "filename*=UTF-8''%3Cimg%20src%3Dx" in disposition
    assert "sandbox" in csv_file.headers["content-security-policy"]
    assert csv_file.content == b"poste;montant\nmateriel;1200\n"
    # A piece is only reachable through its own dossier.
    assert (
        client.get(f"/dossiers/{office.potager}/pieces/{hostile[HOSTILE_FILE]}").status_code == 404
    )
    viewed = events(office, "piece.viewed")
    assert viewed and viewed[-1].actor == f"staff:{LOGIN}"

    raw = client.get(f"/messages/{office.review_message}/raw")
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert b"Candidature au label" in raw.content


def test_status_decision_and_legal_hold_go_through_the_service_and_are_audited(
    office, client, monkeypatch
):
    called = []
    real = decisions.decide_status

    def spy(*args, **kwargs):
        called.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(decisions, "decide_status", spy)
    log_in(client)
    token = csrf_of(client.get(f"/dossiers/{office.potager}").text)
    response = client.post(
        f"/dossiers/{office.potager}/status",
        data={"statut": "accepted", "note": "Jury du 2 décembre <unanime>", "csrf_token": token},
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert "statut « Labellisé » enregistré" in page
    assert "Jury du 2 décembre &lt;unanime&gt;" in page
    assert called and called[0]["actor"] == f"staff:{LOGIN}"
    with session_scope(office.app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=office.potager)
        assert dossier.status == "accepted"
        change = session.exec(
            select(Event)
            .where(Event.dossier_id == dossier.id, Event.action == "dossier.status_changed")
            .order_by(Event.id.desc())
        ).first()
    assert change.actor == f"staff:{LOGIN}"
    assert change.details == {
        "old": "complete",
        "new": "accepted",
        "note": "Jury du 2 décembre <unanime>",
    }
    # A status staff may not set is refused by the service, not by the page.
    bogus = client.post(
        f"/dossiers/{office.potager}/status", data={"statut": "needs_review", "csrf_token": token}
    )
    refused = html.unescape(client.get(bogus.headers["location"]).text)
    assert (
        "Décision non enregistrée : « à vérifier » n'est pas une décision possible ; "
        "décisions possibles : complet, labellisé, refusé, retiré" in refused
    )
    assert "is not one of" not in refused

    for wanted, expected in (("oui", True), ("non", False)):
        client.post(
            f"/dossiers/{office.potager}/hold",
            data={"conservation": wanted, "note": "contentieux", "csrf_token": token},
        )
        with session_scope(office.app.engine) as session:
            held = repo.get_dossier(session=session, reference=office.potager).legal_hold
        assert held is expected
    holds = events(office, "dossier.legal_hold_set") + events(office, "dossier.legal_hold_cleared")
    assert {e.actor for e in holds} == {f"staff:{LOGIN}"}


def test_review_queue_retry_and_dismiss(office, client):
    log_in(client)
    page = client.get("/review").text
    assert f"/review/{office.review_message}/retry" in page
    assert "eve@example.org" in page
    token = csrf_of(page)
    retried = client.post(f"/review/{office.review_message}/retry", data={"csrf_token": token})
    assert retried.status_code == 303
    assert "traité à nouveau" in client.get("/review").text
    assert events(office, "message.retried")[-1].actor == f"staff:{LOGIN}"

    dismissed = client.post(
        f"/review/{office.review_message}/dismiss",
        data={"note": "illisible, rappeler", "csrf_token": token},
    )
    assert dismissed.status_code == 303
    after = client.get("/review").text
    assert f"Message {office.review_message} écarté" in after
    assert f"/review/{office.review_message}/retry" not in after
    with session_scope(office.app.engine) as session:
        assert session.get(Message, office.review_message).status == "ignored"
    [event] = events(office, "message.dismissed")
    assert event.actor == f"staff:{LOGIN}" and event.details["note"] == "illisible, rappeler"
    again = client.post(f"/review/{office.review_message}/dismiss", data={"csrf_token": token})
    refused = html.unescape(client.get(again.headers["location"]).text)
    assert (
        f"Message non écarté : le message n° {office.review_message} est « ignoré » : "
        "seuls les messages en échec ou à vérifier peuvent être écartés" in refused
    )
    retried_again = client.post(
        f"/review/{office.review_message}/retry", data={"csrf_token": token}
    )
    refused = html.unescape(client.get(retried_again.headers["location"]).text)
    assert f"Nouvel essai impossible : le message n° {office.review_message} est « ignoré »" in (
        refused
    )
    assert "only failed" not in refused


def test_review_queue_attaches_a_follow_up_as_the_cli_does(office, client):
    """A message citing a dossier from another sender: listed, then attached by staff."""
    log_in(client)
    page = client.get("/review").text
    follow_ups = page[page.index('id="suites"') : page.index('id="messages"')]
    assert f"/review/{office.follow_up}/attach" in follow_ups
    assert "voisine@perroy-quartier.fr" in follow_ups
    # Why it waits, with what staff can do on this page (not a command to type).
    worded = html.unescape(follow_ups)
    assert "rattachez-le au dossier avec le bouton « Rattacher »" in worded
    assert "mailbot messages attach" not in worded
    assert f'name="reference" value="{office.potager}"' in follow_ups  # the cited dossier
    token = csrf_of(page)
    with session_scope(office.app.engine) as session:
        filed_pk = session.exec(
            select(Message.id).where(Message.status == "filed").order_by(Message.id)
        ).first()

    # Refused as the CLI refuses (its English words), worded in French on the page;
    # nothing changes.
    refusals = {
        (office.follow_up, "BSC-2026-9999"): (
            "no dossier 'BSC-2026-9999'",
            "aucun dossier ne porte la référence BSC-2026-9999",
        ),
        (filed_pk, office.potager): (
            "only needs_review or failed messages can be attached",
            f"le message n° {filed_pk} est « enregistré » : seuls les messages à vérifier "
            "ou en échec peuvent être rattachés à un dossier",
        ),
    }
    for (message_pk, reference), (english, french) in refusals.items():
        with pytest.raises(RefusedError, match=re.escape(english)):
            decisions.attach_message(
                office.app, message_pk=message_pk, reference=reference, actor="staff:cli"
            )
        response = client.post(
            f"/review/{message_pk}/attach", data={"reference": reference, "csrf_token": token}
        )
        assert response.status_code == 303 and response.headers["location"] == "/review"
        notice = html.unescape(client.get("/review").text)
        assert f"Message {message_pk} non rattaché : {french}" in notice
        assert english not in notice and "only needs_review" not in notice
    no_token = client.post(f"/review/{office.follow_up}/attach", data={"reference": office.potager})
    assert no_token.status_code == 403
    assert events(office, "message.attached") == []

    response = client.post(
        f"/review/{office.follow_up}/attach",
        data={
            "reference": office.potager.lower(),
            "note": "photos via une voisine",
            "csrf_token": token,
        },
    )
    assert response.status_code == 303
    after = client.get("/review").text
    assert f"Message {office.follow_up} rattaché au dossier {office.potager}." in after
    assert f"/review/{office.follow_up}/attach" not in after
    with session_scope(office.app.engine) as session:
        message = session.get(Message, office.follow_up)
        dossier = repo.get_dossier(session=session, reference=office.potager)
        assert message.status == "filed" and message.dossier_id == dossier.id
    [event] = events(office, "message.attached")
    assert event.actor == f"staff:{LOGIN}" and event.details["note"] == "photos via une voisine"
    dossier_page = client.get(f"/dossiers/{office.potager}").text
    assert "potager.jpg" in dossier_page and "Message rattaché au dossier" in dossier_page


def test_review_queue_shows_uncertain_readings_with_their_evidence_in_french(office, client):
    log_in(client)
    page = client.get("/review").text
    readings = page[page.index('id="lectures"') :]
    assert f"/dossiers/{office.uncertain}" in readings
    readings = re.sub(r"[ \n]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", readings)))
    assert office.potager not in readings  # read without doubt
    assert "Catégorie de label demandée" in readings
    assert "plusieurs cases lues comme cochées là où une seule est attendue" in readings
    assert "Lu dans ligne « Catégorie de label demandée : ☒ 1 - Initiative réalisée ☒" in readings
    assert "page 1 de dossier.pdf" in readings
    assert "Texte lu ☒ 1 - Initiative réalisée ☒ 2 - Projet" in readings
    assert "Lecture incertaine (40\u202f%)" in readings
    for english in ("several", "line '", " of dossier.pdf", "0.4", "uncertain", "source"):
        assert english not in readings, english

    # The reasons of the waiting messages are in French too.
    # (A candidature read with doubt is filed as a dossier to check, listed
    # above; a message kept for review with that reason is worded so.)
    queue = html.unescape(page[: page.index('id="lectures"')])
    doubtful = {
        "reason": "dossier_uncertain",
        "error": None,
        "warnings": ["several options ticked where one is expected"],
    }
    assert labels.review_reason(office.app.config.rules, doubtful).startswith(
        "le dossier d'intention a été lu avec un doute"
    )
    unreadable = {
        "reason": "unreadable_attachment",
        "error": None,
        "warnings": ["no dossier found; unreadable attachment(s) may hold it: dossier.pdf"],
    }
    assert labels.review_reason(office.app.config.rules, unreadable).endswith(
        " : aucun dossier lu ; pièce(s) illisible(s) qui pourrai(en)t le contenir : dossier.pdf"
    )
    for english in ("several options", "is not the applicant", "no dossier found", "line '"):
        assert english not in queue, english

    detail = html.unescape(client.get(f"/dossiers/{office.uncertain}").text)
    [row] = re.findall(r'<tr class="[^"]*uncertain">.*?</tr>', detail, re.DOTALL)
    assert "Catégorie de label demandée" in row and "À vérifier" in row
    assert "plusieurs cases lues comme cochées là où une seule est attendue" in row
    assert "Lecture incertaine (40\u202f%)" in row
    assert "several" not in detail and "<b>source</b>" not in detail


def test_replies_page_lists_undelivered_replies(office, client, monkeypatch):
    # Deliver to a port where nobody listens: the replies stay queued with their error.
    monkeypatch.setenv("MAILBOT_SMTP__HOST", "127.0.0.1")
    monkeypatch.setenv("MAILBOT_SMTP__PORT", str(free_port()))
    monkeypatch.setenv("MAILBOT_SMTP__SECURITY", "none")
    monkeypatch.setenv("MAILBOT_SMTP__USERNAME", "")
    app = App(str(office.config_dir))
    report = send_outbox(app)
    app.close()
    assert report.errors
    with session_scope(office.app.engine) as session:
        undelivered = session.exec(select(Outbox).where(Outbox.last_error.is_not(None))).all()
    assert undelivered
    log_in(client)
    page = html.unescape(client.get("/replies").text)
    assert undelivered[0].to_addr in page
    assert "En attente d'envoi" in page
    assert "échec de l'envoi : " in page  # the reason, worded by mailbot.wording


def test_pages_count_queries_not_rows(office, client):
    """The list costs the same few queries whatever the number of dossiers shown."""
    import sqlalchemy as sa

    log_in(client)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(office.app.engine, "before_cursor_execute", count)
    try:
        client.get("/dossiers")
    finally:
        sa.event.remove(office.app.engine, "before_cursor_execute", count)
    with session_scope(office.app.engine) as session:
        dossiers = len(session.exec(select(Dossier)).all())
    assert dossiers >= 3
    assert len(statements) <= 5  # session check, total, page, counts, mailboxes


def test_mailbot_web_serves_the_login_page(office, tmp_path):
    port = free_port()
    env = {**os.environ, **TEST_SECRETS, "MAILBOT_CONFIG": str(office.config_dir)}
    command = [sys.executable, "-m", "mailbot.cli", "web", "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as page:
                    body = page.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert 'name="login"' in body and 'name="password"' in body
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.postgres
def test_pages_and_search_on_postgresql(postgres_url, tmp_path, monkeypatch):
    config_dir = tmp_path / "config"
    shutil.copytree(SHIPPED_CONFIG, config_dir)
    use_test_authentication(config_dir)
    for name, value in TEST_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAILBOT_DATABASE__URL", postgres_url)
    office = seed_office(config_dir)
    try:
        with TestClient(create_app(office.app), follow_redirects=False) as client:
            log_in(client)
            for params, present, absent in (
                ({"q": "PERROY"}, office.potager, office.hostile),
                ({"q": "mobinord"}, office.hostile, office.potager),
                ({"thematique": "habitat_environnement"}, office.potager, office.hostile),
                ({"boite": "d.berteloot"}, office.hostile, office.potager),
                ({"q": "50%_"}, "Aucun dossier ne correspond", office.potager),
            ):
                page = client.get("/dossiers", params=params).text
                assert present in page and absent not in page, params
            assert re.search(r"Tous <b>4</b>", client.get("/dossiers").text)
            for path in (f"/dossiers/{office.potager}", "/review", "/replies"):
                assert client.get(path).status_code == 200, path
            # The dossier page kept on PostgreSQL too (checked in the worker
            # thread), and a decision is on the next view.
            assert not client.app.state.office.pages.inline
            kept = client.get(f"/dossiers/{office.potager}").text
            assert kept == client.get(f"/dossiers/{office.potager}").text
            decisions.set_field(
                office.app,
                reference=office.potager,
                key="intitule",
                value="Potager renommé sur PostgreSQL",
                actor="staff:test",
            )
            assert (
                "Potager renommé sur PostgreSQL" in client.get(f"/dossiers/{office.potager}").text
            )
            # The uncertain reading is found in PostgreSQL's JSON text too.
            review = client.get("/review").text
            assert "plusieurs cases lues comme cochées" in html.unescape(review)
    finally:
        office.app.close()
