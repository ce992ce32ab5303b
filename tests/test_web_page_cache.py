"""The kept dossier page bodies (``mailbot.web.page_cache``) and the version that keys them.

A page served from a kept body must be exactly the page the templates would
render now: every kind of change the page shows (a field set, a decision, a
message attached, a reply sent, the legal hold, a piece consulted, a new
mailbox) must be on the next view. The database raises ``dossier.version``
by triggers (migration 0005); the tests below go through the real writers
and would see a stale page if any table's trigger were missing, and check
each trigger directly, on SQLite and PostgreSQL, with plain SQL.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from mailbot import decisions
from mailbot.app import App
from mailbot.privacy.legal_hold import set_legal_hold
from mailbot.smtp import send_outbox
from mailbot.staff import add_staff, remove_staff
from mailbot.web import labels
from mailbot.web.app import create_app
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Dossier, Message, Outbox
from tests.fixtures.web import CSRF_RE, LOGIN, PASSWORD, Office, log_in, office_in


@pytest.fixture(scope="module")
def office(tmp_path_factory) -> Iterator[Office]:
    with office_in(tmp_path_factory.mktemp("page-cache")) as seeded:
        yield seeded


def _client(office: Office, login: str = LOGIN, password: str = PASSWORD) -> TestClient:
    client = TestClient(create_app(office.app), follow_redirects=False)
    log_in(client, login, password)
    return client


@pytest.fixture
def client(office: Office) -> Iterator[TestClient]:
    with _client(office) as test_client:
        yield test_client


def _page(client: TestClient, reference: str) -> str:
    response = client.get(f"/dossiers/{reference}")
    assert response.status_code == 200, response.status_code
    return html.unescape(response.text)


def _version(engine: Engine, reference: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT version FROM dossier WHERE reference = :r"), {"r": reference}
        ).scalar_one()


def test_a_kept_page_is_the_page_the_templates_render(office, client):
    pages = client.app.state.office.pages
    first = client.get(f"/dossiers/{office.potager}")  # read and rendered by the templates
    assert pages.shell is not None and len(pages._bodies) == 1
    second = client.get(f"/dossiers/{office.potager}")  # from the kept body
    assert first.status_code == second.status_code == 200
    assert second.text == first.text
    # The session did not change: its cookie is not signed and set again.
    assert "set-cookie" not in second.headers
    assert second.headers["content-type"] == first.headers["content-type"]
    for name in ("content-security-policy", "x-frame-options", "cache-control"):
        assert second.headers[name] == first.headers[name]
    for slot in (pages.token_slot, pages.login_slot, pages.title_slot, pages.body_slot):
        assert slot not in second.text
    assert f"<title>{office.potager} — Béthune Smart City</title>" in second.text
    assert f'<span class="who">{LOGIN}</span>' in second.text
    # Applicant text stays escaped in a kept page.
    hostile = client.get(f"/dossiers/{office.hostile}")
    again = client.get(f"/dossiers/{office.hostile}")
    assert again.text == hostile.text and "<script" not in again.text


def test_each_session_gets_its_own_csrf_token_in_a_kept_page(office):
    add_staff(office.app, login="b.second", display_name=None, password=PASSWORD, actor="test")
    with _client(office) as one, _client(office, login="b.second") as other:
        other.app.state.office = one.app.state.office  # one back-office, one cache
        one_page = one.get(f"/dossiers/{office.potager}").text
        other_page = other.get(f"/dossiers/{office.potager}").text
        one_tokens = set(CSRF_RE.findall(one_page))
        other_tokens = set(CSRF_RE.findall(other_page))
        assert len(one_tokens) == len(other_tokens) == 1
        assert one_tokens != other_tokens
        assert '<span class="who">b.second</span>' in other_page
        assert "b.second" not in one_page
        # The token of the kept page is the session's: its form is accepted.
        response = other.post(
            f"/dossiers/{office.potager}/hold",
            data={"conservation": "non", "csrf_token": other_tokens.pop(), "note": ""},
        )
        assert response.status_code == 303
        notice_page = _page(other, office.potager)
        assert "conservation légale levée" in notice_page  # the notice, once
        assert "conservation légale levée" not in _page(other, office.potager)


def test_a_removed_account_is_turned_away_from_a_kept_page(office):
    add_staff(office.app, login="c.leaving", display_name=None, password=PASSWORD, actor="test")
    with _client(office, login="c.leaving") as client:
        assert _page(client, office.potager) == _page(client, office.potager)
        remove_staff(office.app, login="c.leaving", actor="test")
        response = client.get(f"/dossiers/{office.potager}")
        assert response.status_code == 303 and response.headers["location"] == "/login"


def test_an_unknown_dossier_is_404_and_a_page_without_session_303(office, client):
    assert client.get("/dossiers/BSC-2026-9999").status_code == 404
    _page(client, office.potager)  # kept
    with TestClient(create_app(office.app), follow_redirects=False) as stranger:
        response = stranger.get(f"/dossiers/{office.potager}")
        assert response.status_code == 303 and response.headers["location"] == "/login"


# --------------------------------------------------------------------------
# every kind of change is on the next view


def _set_field(office: Office, client: TestClient) -> str:
    decisions.set_field(
        office.app,
        reference=office.potager,
        key="intitule",
        value="Potager partagé renommé",
        actor="staff:test",
        note=None,
    )
    return "Potager partagé renommé"


def _decide(office: Office, client: TestClient) -> str:
    decisions.decide_status(
        office.app,
        reference=office.potager,
        status="accepted",
        actor="staff:test",
        note="retenu par le jury de décembre",
    )
    return "retenu par le jury de décembre"


def _attach(office: Office, client: TestClient) -> str:
    decisions.attach_message(
        office.app,
        message_pk=office.follow_up,
        reference=office.potager,
        actor="staff:test",
        note=None,
    )
    return "potager.jpg"


def _legal_hold(office: Office, client: TestClient) -> str:
    set_legal_hold(office.app, office.potager, True, actor="staff:test", note="contentieux")
    return "Lever la conservation légale"


def _piece_viewed(office: Office, client: TestClient) -> str:
    page = client.get(f"/dossiers/{office.potager}").text
    piece = re.search(rf"/dossiers/{office.potager}/pieces/(\d+)", page).group(1)
    assert client.get(f"/dossiers/{office.potager}/pieces/{piece}").status_code == 200
    return "Pièces consultées 1 fois"


def _seen_in_another_mailbox(office: Office, client: TestClient) -> str:
    with session_scope(office.app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=office.potager)
        message = session.exec(
            sa.select(Message).where(Message.dossier_id == dossier.id)  # type: ignore[arg-type]
        ).first()[0]
        repo.add_sighting(
            session=session,
            message=message,
            mailbox="smartcity.archives",
            folder="INBOX",
            uidvalidity=7,
            uid=70,
            seen_at=datetime.now(UTC),
        )
    return "smartcity.archives"


CHANGES: dict[str, Callable[[Office, TestClient], str]] = {
    "field set": _set_field,
    "status decided": _decide,
    "message attached": _attach,
    "legal hold": _legal_hold,
    "piece consulted": _piece_viewed,
    "seen in another mailbox": _seen_in_another_mailbox,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_is_on_the_next_view(office, client, change):
    before = _page(client, office.potager)
    assert _page(client, office.potager) == before  # now kept
    version = _version(office.app.engine, office.potager)
    shown = CHANGES[change](office, client)
    assert shown not in before
    assert _version(office.app.engine, office.potager) > version
    assert shown in _page(client, office.potager)


def test_a_reply_sent_is_on_the_next_view(office, client, smtp_server, monkeypatch):
    with session_scope(office.app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=office.hostile)
        queued = session.exec(
            sa.select(Outbox.id).where(Outbox.dossier_id == dossier.id, Outbox.status == "queued")  # type: ignore[arg-type]
        ).all()
    assert queued, "the seeded dossier has a reply waiting"
    before = _page(client, office.hostile)
    assert _page(client, office.hostile) == before
    sent = f"<td>{labels.label(labels.REPLY_STATUS, 'sent')}"
    assert sent not in before
    monkeypatch.setenv("MAILBOT_SMTP__HOST", smtp_server.host)
    monkeypatch.setenv("MAILBOT_SMTP__PORT", str(smtp_server.port))
    monkeypatch.setenv("MAILBOT_SMTP__SECURITY", "none")
    monkeypatch.setenv("MAILBOT_SMTP__USERNAME", "")
    app = App(str(office.config_dir))
    try:
        assert send_outbox(app).sent >= 1
    finally:
        app.close()
    assert sent in _page(client, office.hostile)


# --------------------------------------------------------------------------
# the triggers themselves, on each backend


def test_every_table_the_page_shows_raises_the_version(engine: Engine) -> None:
    """Plain SQL on each table (no application code): the triggers of migration 0005."""
    with session_scope(engine) as session:
        dossier = repo.create_dossier(
            session=session,
            year=2026,
            sender="a@example.org",
            sender_name=None,
            fields={},
            missing=[],
            status="incomplete",
            received_at=datetime.now(UTC),
            actor="system",
        )
        other = repo.create_dossier(
            session=session,
            year=2026,
            sender="b@example.org",
            sender_name=None,
            fields={},
            missing=[],
            status="incomplete",
            received_at=datetime.now(UTC),
            actor="system",
        )
        dossier_id, other_id = dossier.id, other.id

    def versions() -> tuple[int, int]:
        with engine.connect() as connection:
            rows = dict(connection.execute(sa.text("SELECT id, version FROM dossier")).all())
        return rows[dossier_id], rows[other_id]

    def insert_message(session) -> None:
        repo.add_message(
            session=session,
            message=Message(
                dedup_key="k1",
                sha256="ab",
                size=1,
                sender="a@example.org",
                verdict="candidature",
                status="filed",
                dossier_id=dossier_id,
            ),
        )

    def message_of(session) -> Message:
        return session.exec(sa.select(Message).where(Message.dedup_key == "k1")).first()[0]  # type: ignore[arg-type]

    def insert_piece(session) -> None:
        dossier = session.get(Dossier, dossier_id)
        repo.add_piece(
            session=session,
            dossier=dossier,
            message=message_of(session),
            blob_sha256="cd" * 32,
            filename="f.pdf",
            content_type="application/pdf",
            size=1,
            role="dossier",
        )

    def insert_sighting(session) -> None:
        repo.add_sighting(
            session=session,
            message=message_of(session),
            mailbox="m",
            folder="INBOX",
            uidvalidity=1,
            uid=1,
            seen_at=datetime.now(UTC),
        )

    def insert_outbox(session) -> None:
        session.add(
            Outbox(
                dedup_key="r1",
                kind="acknowledgement",
                dossier_id=dossier_id,
                mailbox="m",
                from_addr="x@example.org",
                to_addr="a@example.org",
                subject="s",
                message_id="<m@x>",
                raw=b"x",
                status="queued",
            )
        )

    def insert_event(session) -> None:
        repo.record_event(
            session=session,
            actor="test",
            action="test.done",
            dossier=session.get(Dossier, dossier_id),
            details={},
        )

    # Rows inserted through the ORM (no code of ours bumps anything), changed
    # and removed with plain SQL.
    steps = [
        ("dossier update", "UPDATE dossier SET status_note = 'vu' WHERE id = :d", True),
        ("message insert", insert_message, True),
        ("message update", "UPDATE message SET subject = 't' WHERE dedup_key = 'k1'", True),
        ("piece insert", insert_piece, True),
        ("piece update", "UPDATE piece SET filename = 'g.pdf' WHERE dossier_id = :d", True),
        ("sighting insert", insert_sighting, True),
        ("sighting update", "UPDATE sighting SET folder = 'Archive'", True),
        ("sighting delete", "DELETE FROM sighting", True),
        ("outbox insert", insert_outbox, True),
        ("outbox update", "UPDATE outbox SET status = 'sent' WHERE dedup_key = 'r1'", True),
        ("outbox delete", "DELETE FROM outbox WHERE dedup_key = 'r1'", True),
        ("event insert", insert_event, True),
        ("event update", "UPDATE event SET actor = 'other' WHERE action = 'test.done'", True),
        ("event delete", "DELETE FROM event WHERE action = 'test.done'", True),
        ("piece delete", "DELETE FROM piece WHERE dossier_id = :d", True),
        # A message moved to another dossier changes both pages.
        ("message moved", "UPDATE message SET dossier_id = :o WHERE dedup_key = 'k1'", "both"),
        ("message delete", "DELETE FROM message WHERE dedup_key = 'k1'", "other"),
    ]
    for what, statement, changes in steps:
        before = versions()
        if isinstance(statement, str):
            with engine.begin() as connection:
                connection.execute(sa.text(statement), {"d": dossier_id, "o": other_id})
        else:
            with session_scope(engine) as session:
                statement(session)
        after = versions()
        if changes == "other":
            assert after[1] > before[1] and after[0] == before[0], what
        elif changes == "both":
            assert after[0] > before[0] and after[1] > before[1], what
        else:
            assert after[0] > before[0] and after[1] == before[1], what
