"""RGPD tools end to end: retention purge, legal hold, access and erasure requests.

State is built the way production builds it: candidatures appended to the
test Dovecot, filed by ``poll_all`` into a real database and blob store; ages
are set by updating the rows. Runs on SQLite, and on PostgreSQL too when
``MAILBOT_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from typing import Any

import pytest
from sqlmodel import SQLModel, col, select

from mailbot.app import App
from mailbot.config import load_config
from mailbot.decisions import attach_message
from mailbot.intake import poll_all
from mailbot.privacy import (
    ERASED_TEXT,
    PrivacyError,
    erase_person,
    export_person,
    preview_erasure,
    purge,
    safe_filename,
    set_legal_hold,
)
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Dossier, Event, Message, Outbox, Piece, Sighting, utcnow
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.dovecot import free_port
from tests.fixtures.mail import as_bytes, make_mail

NB, DB = "n.bataillon", "d.berteloot"
ACTOR = "staff:nbataillon"
RULES = load_config(SHIPPED_CONFIG, environ={}).rules
MARIE = "marie.lefebvre@jardins-perroy.fr"
KARIM = "k.benali@mobinord.fr"
SOPHIE = "sophie.durand@quartier-montliebaut.fr"
# The same file sent by two applicants: one blob shared by two dossiers.
SHARED_CSV = ("budget_previsionnel.csv", b"poste;montant\nmateriel;1200\n", "text/csv")


@pytest.fixture(scope="module")
def documents() -> dict[str, bytes]:
    """Generated once per module: the PDF generators are slow and not deterministic."""
    return {
        "potager": corpus.form_pdf(RULES, corpus.POTAGER),
        "potager_letter": corpus.letter_pdf(corpus.POTAGER),
        "covoiturage": corpus.form_pdf(RULES, corpus.COVOITURAGE),
        "covoiturage_letter": corpus.letter_pdf(corpus.COVOITURAGE),
        "fete": corpus.form_pdf(RULES, corpus.FETE),
    }


@pytest.fixture
def app(db_url: str, service_app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    """The service over the test Dovecot, on each database back end."""
    monkeypatch.setenv("MAILBOT_DATABASE__URL", db_url)
    service_app._config = None
    return service_app


def reload(app: App, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app._config = None


def candidature(sender: str, form: bytes, *, letter: bytes | None = None, extra=(), **kw):
    attachments = [("dossier_intention.pdf", form, "application/pdf")]
    if letter is not None:
        attachments.append(("courrier_maire.pdf", letter, "application/pdf"))
    attachments.extend(extra)
    values: dict[str, Any] = {
        "subject": "Candidature au label Béthune Smart City",
        "sender": sender,
        "to": ("n.bataillon@ville-bethune.fr",),
        "body": "Bonjour,\nVeuillez trouver ci-joint notre dossier d'intention.\nCordialement",
        "attachments": attachments,
    }
    values.update(kw)
    return make_mail(**values)


def auto_reply(sender: str, **kw):
    return make_mail(
        subject="Absence du bureau",
        sender=sender,
        to=("n.bataillon@ville-bethune.fr",),
        body="Je suis absente jusqu'au 3 mars.",
        headers={"Auto-Submitted": "auto-replied"},
        **kw,
    )


def poll(app: App) -> None:
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]


def dossier_of(app: App, sender: str) -> Dossier:
    with session_scope(app.engine) as session:
        rows = session.exec(select(Dossier).where(Dossier.sender == sender)).all()
    assert len(rows) == 1, [d.reference for d in rows]
    return rows[0]


def get_dossier(app: App, reference: str) -> Dossier | None:
    with session_scope(app.engine) as session:
        return repo.get_dossier(session=session, reference=reference)


def age_dossier(app: App, reference: str, days: int) -> dt.datetime:
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        assert dossier is not None
        dossier.updated_at = utcnow() - dt.timedelta(days=days)
        session.add(dossier)
    return dossier.updated_at


def age_messages(app: App, days: int, *conditions: Any) -> int:
    with session_scope(app.engine) as session:
        rows = session.exec(select(Message).where(*conditions)).all()
        for message in rows:
            message.updated_at = utcnow() - dt.timedelta(days=days)
            session.add(message)
    return len(rows)


def rows(app: App, model: type[SQLModel], *conditions: Any) -> list[Any]:
    with session_scope(app.engine) as session:
        return list(session.exec(select(model).where(*conditions)).all())


def table_dump(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "nothing changed" checks."""
    with app.engine.connect() as connection:
        return {
            table.name: sorted(
                (tuple(repr(v) for v in row) for row in connection.execute(table.select())),
            )
            for table in SQLModel.metadata.sorted_tables
        }


def dossier_state(app: App, reference: str) -> dict[str, Any]:
    """Everything hanging on one dossier, as plain values (to compare before/after)."""
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        assert dossier is not None
        messages = session.exec(
            select(Message).where(Message.dossier_id == dossier.id).order_by(Message.id)
        ).all()
        ids = [m.id for m in messages]

        def dump(items):
            return [item.model_dump() for item in items]

        return {
            "dossier": dossier.model_dump(),
            "messages": dump(messages),
            "sightings": dump(
                session.exec(
                    select(Sighting).where(col(Sighting.message_pk).in_(ids)).order_by(Sighting.id)
                ).all()
            ),
            "pieces": dump(
                session.exec(
                    select(Piece).where(Piece.dossier_id == dossier.id).order_by(Piece.id)
                ).all()
            ),
            "outbox": dump(
                session.exec(
                    select(Outbox).where(Outbox.dossier_id == dossier.id).order_by(Outbox.id)
                ).all()
            ),
            "events": dump(
                session.exec(
                    select(Event).where(Event.dossier_id == dossier.id).order_by(Event.id)
                ).all()
            ),
        }


def blobs_of(state: dict[str, Any]) -> set[str]:
    return {m["raw_blob"] for m in state["messages"] if m["raw_blob"]} | {
        p["blob_sha256"] for p in state["pieces"]
    }


def address_hits(app: App, address: str) -> list[str]:
    """table.column of every stored value containing ``address`` (case ignored)."""
    needle = address.lower()
    hits = []
    with app.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in connection.execute(table.select()).mappings():
                for name, value in row.items():
                    if isinstance(value, bytes):
                        text = value.decode("latin-1")
                    elif isinstance(value, (dict, list)):
                        text = json.dumps(value, ensure_ascii=False)
                    else:
                        text = str(value)
                    if needle in text.lower():
                        hits.append(f"{table.name}.{name}")
    return hits


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hmac_of(address: str) -> str:
    """The tombstone of an address under the tests' key (tests/fixtures/config.py)."""
    return hmac.new(b"test-tombstone-key", address.lower().encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------
# retention purge


def test_purge_by_status_dry_run_then_real(app, dovecot, documents, monkeypatch):
    dovecot.append(NB, candidature(MARIE, documents["potager"], extra=[SHARED_CSV]))
    dovecot.append(
        NB,
        candidature(
            KARIM,
            documents["covoiturage"],
            letter=documents["covoiturage_letter"],
            extra=[SHARED_CSV],
        ),
    )
    dovecot.append(NB, candidature(SOPHIE, documents["fete"]))
    poll(app)
    marie, karim, sophie = (dossier_of(app, a) for a in (MARIE, KARIM, SOPHIE))
    assert (marie.status, karim.status, sophie.status) == ("incomplete", "complete", "incomplete")
    # 400 days: past incomplete_days (365), within complete_days (1095).
    for dossier in (marie, karim, sophie):
        age_dossier(app, dossier.reference, 400)
    set_legal_hold(app, sophie.reference, True, actor=ACTOR, note="contentieux en cours")
    marie_state = dossier_state(app, marie.reference)
    karim_state = dossier_state(app, karim.reference)
    sophie_state = dossier_state(app, sophie.reference)
    shared = sha256(SHARED_CSV[1])
    assert shared in blobs_of(marie_state) & blobs_of(karim_state)
    marie_only = blobs_of(marie_state) - blobs_of(karim_state)
    assert len(marie_only) == 2  # her raw message and her dossier d'intention
    marie_bytes = sum(app.blobs.path_for(s).stat().st_size for s in marie_only)

    before, digests = table_dump(app), set(app.blobs.iter_digests())
    dry = purge(app, dry_run=True, actor=ACTOR)
    assert dry.dry_run
    assert dry.references == [marie.reference]
    assert dry.held == [sophie.reference]
    assert (dry.messages, dry.pieces, dry.blobs, dry.bytes) == (1, 2, 2, marie_bytes)
    assert dry.replies == len(marie_state["outbox"]) >= 1
    assert dry.dossiers[0].status == "incomplete" and dry.dossiers[0].retention_days == 365
    assert "would delete 1 dossiers" in dry.summary()
    assert json.loads(json.dumps(dry.as_dict()))["dossiers"][0]["reference"] == marie.reference
    assert table_dump(app) == before
    assert set(app.blobs.iter_digests()) == digests

    real = purge(app, actor=ACTOR)
    assert not real.dry_run
    assert (real.references, real.held) == (dry.references, dry.held)
    assert (real.messages, real.pieces, real.replies, real.events, real.sightings) == (
        dry.messages,
        dry.pieces,
        dry.replies,
        dry.events,
        dry.sightings,
    )
    assert (real.blobs, real.bytes) == (dry.blobs, dry.bytes)
    assert get_dossier(app, marie.reference) is None
    marie_messages = [m["id"] for m in marie_state["messages"]]
    assert rows(app, Message, col(Message.id).in_(marie_messages)) == []
    assert rows(app, Sighting, col(Sighting.message_pk).in_(marie_messages)) == []
    assert rows(app, Piece, Piece.dossier_id == marie.id) == []
    assert rows(app, Outbox, Outbox.dossier_id == marie.id) == []
    assert rows(app, Event, Event.dossier_id == marie.id) == []
    assert not any(app.blobs.exists(s) for s in marie_only)
    assert app.blobs.exists(shared)  # Karim's dossier still files it
    assert dossier_state(app, karim.reference) == karim_state
    assert dossier_state(app, sophie.reference)["pieces"] == sophie_state["pieces"]
    assert all(app.blobs.exists(s) for s in blobs_of(karim_state) | blobs_of(sophie_state))

    [audit] = rows(app, Event, Event.action == "dossier.purged")
    assert audit.dossier_id is None and audit.message_pk is None
    assert audit.actor == ACTOR
    assert audit.details["reference"] == marie.reference
    assert audit.details["counts"]["messages"] == 1
    assert audit.details["counts"]["pieces"] == 2
    assert "@" not in json.dumps(audit.details)
    assert "Potager" not in json.dumps(audit.details)
    # Nothing left to do: a second run deletes nothing and writes no audit entry.
    again = purge(app, actor=ACTOR)
    assert again.empty and again.held == [sophie.reference]
    assert len(rows(app, Event, Event.action == "dossier.purged")) == 1

    # Lifting the hold does not restart the retention clock: the next purge takes it.
    set_legal_hold(app, sophie.reference, False, actor=ACTOR)
    assert purge(app, actor=ACTOR).references == [sophie.reference]
    assert get_dossier(app, sophie.reference) is None

    # complete_days = 0 keeps complete dossiers forever.
    later = utcnow() + dt.timedelta(days=3 * 365)
    reload(app, monkeypatch, MAILBOT_RETENTION__COMPLETE_DAYS="0")
    assert purge(app, now=later, actor=ACTOR).references == []
    monkeypatch.delenv("MAILBOT_RETENTION__COMPLETE_DAYS")
    app._config = None
    assert purge(app, now=later, actor=ACTOR).references == [karim.reference]
    # The last dossier filing the shared file is gone: so is the file.
    assert not app.blobs.exists(shared)
    assert rows(app, Piece) == [] and rows(app, Outbox) == []


def test_purge_ledger_rows_of_mail_without_content(app, dovecot, documents, monkeypatch):
    # Server copies on: mail that was not for us must stay in the staff mailbox anyway.
    reload(app, monkeypatch, MAILBOT_RETENTION__DELETE_SERVER_COPIES="true")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    too_old_uid = dovecot.append(NB, make_mail(subject="Vieux message", date=old), date=old)
    poll(app)  # first pass: older than the backlog window, recorded as skipped
    ignored_uid = dovecot.append(NB, auto_reply(KARIM))
    recent_uid = dovecot.append(NB, auto_reply(SOPHIE))
    dovecot.append(NB, candidature(MARIE, documents["potager"]))
    poll(app)
    [skipped] = rows(app, Message, Message.status == "skipped")
    ignored = rows(app, Message, Message.status == "ignored")
    assert len(ignored) == 2 and all(m.raw_blob is None for m in ignored)
    old_ignored = next(m for m in ignored if m.sender == KARIM)
    # 100 days: past ledger_days (90); the candidature's message too, but it has a dossier.
    assert age_messages(app, 100, col(Message.id).in_([skipped.id, old_ignored.id])) == 2
    assert age_messages(app, 100, Message.sender == MARIE) == 1
    uids = dovecot.uids(NB)

    dry = purge(app, dry_run=True, actor=ACTOR)
    assert (dry.ledger_messages, dry.messages, dry.references, dry.blobs) == (2, 2, [], 0)
    assert dry.server_copies == 0

    report = purge(app, actor=ACTOR)
    assert (report.ledger_messages, report.messages, report.sightings) == (2, 2, 2)
    remaining = rows(app, Message)
    assert sorted(m.sender for m in remaining) == sorted([MARIE, SOPHIE])
    assert rows(app, Sighting, col(Sighting.uid).in_([too_old_uid, ignored_uid])) == []
    assert len(rows(app, Sighting, Sighting.uid == recent_uid)) == 1
    [audit] = rows(app, Event, Event.action == "messages.purged")
    assert audit.details["ledger_messages"] == 2 and audit.dossier_id is None
    assert dovecot.uids(NB) == uids
    assert report.server == []


def test_purge_quarantined_mail_without_dossier(app, dovecot, monkeypatch):
    reload(app, monkeypatch, MAILBOT_RETENTION__DELETE_SERVER_COPIES="true")
    stray = make_mail(
        subject="Re: dossier BSC-2020-0099",
        sender=SOPHIE,
        to=("n.bataillon@ville-bethune.fr",),
        body="Voici les pièces demandées.",
    )
    uid = dovecot.append(NB, stray)
    poll(app)
    [message] = rows(app, Message)
    assert (message.status, message.dossier_id) == ("needs_review", None)
    assert message.raw_blob and app.blobs.exists(message.raw_blob)
    age_messages(app, 364, Message.id == message.id)
    assert purge(app, actor=ACTOR).empty  # needs_review_days = 365
    age_messages(app, 366, Message.id == message.id)

    report = purge(app, actor=ACTOR)
    assert (report.quarantine_messages, report.messages, report.blobs) == (1, 1, 1)
    assert rows(app, Message) == [] and rows(app, Sighting) == []
    assert not app.blobs.exists(message.raw_blob)
    assert [(s.mailbox, s.deleted) for s in report.server] == [(NB, 1)]
    assert uid not in dovecot.uids(NB)


def test_purge_deletes_server_copies(app, dovecot, documents, monkeypatch):
    reload(app, monkeypatch, MAILBOT_RETENTION__DELETE_SERVER_COPIES="true")
    application = candidature(MARIE, documents["potager"], cc=("d.berteloot@ville-bethune.fr",))
    marie_nb = dovecot.append(NB, application)
    marie_db = dovecot.append(DB, application)
    karim_nb = dovecot.append(NB, candidature(KARIM, documents["covoiturage"]))
    other_nb = dovecot.append(NB, auto_reply(SOPHIE))
    trashed_nb = dovecot.append(NB, auto_reply(KARIM))
    poll(app)
    # Marked deleted by its owner, not expunged yet: a purge expunges only its own UIDs.
    with dovecot.mailbox_client(NB) as mailbox:
        status, _data = mailbox.client.uid("STORE", str(trashed_nb), "+FLAGS", r"(\Deleted)")
        assert status == "OK"
    marie = dossier_of(app, MARIE)
    [message] = rows(app, Message, Message.dossier_id == marie.id)
    assert len(rows(app, Sighting, Sighting.message_pk == message.id)) == 2
    age_dossier(app, marie.reference, 400)

    dry = purge(app, dry_run=True, actor=ACTOR)
    assert dry.server_copies == 2 and dry.server == []
    assert dovecot.uids(NB) == [marie_nb, karim_nb, other_nb, trashed_nb]
    assert dovecot.uids(DB) == [marie_db]

    report = purge(app, actor=ACTOR)
    assert report.references == [marie.reference]
    by_mailbox = {s.mailbox: s for s in report.server}
    assert set(by_mailbox) == {NB, DB}
    assert all(
        (s.planned, s.deleted, s.not_found, s.error) == (1, 1, 0, None) for s in report.server
    )
    assert dovecot.uids(NB) == [karim_nb, other_nb, trashed_nb]
    assert dovecot.uids(DB) == []


def test_server_copies_left_when_uidvalidity_changed_or_server_down(
    app, dovecot, documents, monkeypatch
):
    reload(app, monkeypatch, MAILBOT_RETENTION__DELETE_SERVER_COPIES="true")
    application = candidature(MARIE, documents["potager"])
    dovecot.append(NB, application)
    dovecot.append(DB, application)
    poll(app)
    marie = dossier_of(app, MARIE)
    age_dossier(app, marie.reference, 400)
    # d.berteloot's INBOX is rebuilt (same mail, new UIDVALIDITY): the old UIDs mean nothing.
    dovecot.recreate_folder(DB, keep_messages=True)
    # n.bataillon's server cannot be reached.
    reload(app, monkeypatch, MAILBOT_MAILBOXES__0__PORT=str(free_port()))

    report = purge(app, actor=ACTOR)
    assert report.references == [marie.reference]
    assert get_dossier(app, marie.reference) is None  # the database purge went through
    by_mailbox = {s.mailbox: s for s in report.server}
    assert by_mailbox[NB].error and by_mailbox[NB].deleted == 0
    assert (by_mailbox[DB].deleted, by_mailbox[DB].not_found, by_mailbox[DB].error) == (0, 1, None)
    assert len(dovecot.uids(NB)) == 1
    assert len(dovecot.uids(DB)) == 1
    assert NB in report.summary()


def test_purge_finds_moved_copies_by_message_id_and_hash(app, dovecot, documents, monkeypatch):
    reload(
        app,
        monkeypatch,
        MAILBOT_RETENTION__DELETE_SERVER_COPIES="true",
        MAILBOT_MAILBOXES__0__ON_FILED="move",
        MAILBOT_MAILBOXES__0__PROCESSED_FOLDER="Traites",
    )
    application = candidature(MARIE, documents["potager"])
    dovecot.append(NB, application)
    poll(app)
    assert dovecot.uids(NB) == []
    [moved_uid] = dovecot.uids(NB, "Traites")
    # Another message reusing the Message-ID (different bytes) must survive.
    impostor = make_mail(subject="Autre", message_id=application["Message-ID"])
    impostor_uid = dovecot.append(NB, impostor, folder="Traites")
    marie = dossier_of(app, MARIE)
    age_dossier(app, marie.reference, 400)

    report = purge(app, actor=ACTOR)
    [copies] = report.server
    assert (copies.mailbox, copies.deleted, copies.not_found, copies.error) == (NB, 1, 0, None)
    assert dovecot.uids(NB, "Traites") == [impostor_uid]
    assert moved_uid != impostor_uid


# --------------------------------------------------------------------------
# legal hold


def test_legal_hold_is_audited_and_keeps_updated_at(app, dovecot, documents):
    dovecot.append(NB, candidature(MARIE, documents["potager"]))
    poll(app)
    marie = dossier_of(app, MARIE)
    aged = age_dossier(app, marie.reference, 10)
    result = set_legal_hold(app, marie.reference.lower(), True, actor=ACTOR, note="réquisition")
    assert (result.reference, result.hold, result.changed) == (marie.reference, True, True)
    dossier = get_dossier(app, marie.reference)
    assert dossier.legal_hold is True
    assert dossier.updated_at == aged
    assert set_legal_hold(app, marie.reference, True, actor=ACTOR).changed is False
    set_legal_hold(app, marie.reference, False, actor=ACTOR)
    assert get_dossier(app, marie.reference).legal_hold is False
    events = rows(app, Event, Event.dossier_id == marie.id, col(Event.action).like("%legal_hold%"))
    assert [(e.action, e.actor) for e in events] == [
        ("dossier.legal_hold_set", ACTOR),
        ("dossier.legal_hold_set", ACTOR),
        ("dossier.legal_hold_cleared", ACTOR),
    ]
    assert events[0].details["note"] == "réquisition"
    with pytest.raises(PrivacyError):
        set_legal_hold(app, "BSC-1999-0001", True, actor=ACTOR)
    with pytest.raises(PrivacyError):
        set_legal_hold(app, marie.reference, True, actor="")


# --------------------------------------------------------------------------
# access request

HOSTILE_NAMES = [
    "../../../etc/passwd",
    "..\\..\\Windows\\win.ini",
    "/etc/shadow",
    ".htaccess",
    "..",
    "CON",
    "Lettre officielle – été 🙂.pdf",
    "a" * 300 + ".pdf",
    "",
    None,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_safe_filename(name):
    safe = safe_filename(name, counter=7)
    assert re.fullmatch(r"0007-[A-Za-z0-9][A-Za-z0-9._-]*", safe), safe
    assert ".." not in safe and "/" not in safe and "\\" not in safe
    assert len(safe) <= 85
    if name and name.endswith(".pdf"):
        assert safe.endswith(".pdf")


def test_export_person(app, dovecot, documents, tmp_path):
    first = candidature(MARIE, documents["potager"], extra=[SHARED_CSV])
    dovecot.append(NB, first)
    poll(app)
    marie = dossier_of(app, MARIE)
    letter = make_mail(
        subject=f"Re: dossier {marie.reference}",
        sender=f"Marie Lefebvre <{MARIE.upper()}>",
        to=("n.bataillon@ville-bethune.fr",),
        body="Voici le courrier.",
        attachments=[("courrier_maire.pdf", documents["potager_letter"], "application/pdf")],
    )
    dovecot.append(NB, letter)
    dovecot.append(NB, auto_reply(MARIE))
    dovecot.append(NB, candidature(KARIM, documents["covoiturage"], extra=[SHARED_CSV]))
    poll(app)
    # Names stored from other sources (zip members, older versions) are data, never paths.
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=marie.reference)
        message = session.exec(select(Message).where(Message.dossier_id == dossier.id)).first()
        for number, name in enumerate(HOSTILE_NAMES):
            data = f"piece {number}".encode()
            repo.add_piece(
                session=session,
                dossier=dossier,
                message=message,
                blob_sha256=app.blobs.put(data),
                filename=name,
                content_type="application/octet-stream",
                size=len(data),
                role="supporting",
            )
    karim = dossier_of(app, KARIM)
    state = dossier_state(app, marie.reference)
    out = tmp_path / "export" / "marie"

    report = export_person(app, "  Marie.LEFEBVRE@Jardins-Perroy.fr ", out)
    assert report.dossiers == [marie.reference]
    assert (report.messages, report.eml_files) == (3, 2)  # the auto-reply's content is not kept
    assert report.pieces == len(state["pieces"]) == 3 + len(HOSTILE_NAMES)
    assert report.replies == len(state["outbox"]) >= 1
    assert report.missing_blobs == []
    document = json.loads((out / "person.json").read_text(encoding="utf-8"))
    assert document["email"] == MARIE
    [exported] = document["dossiers"]
    assert exported["reference"] == marie.reference
    assert exported["fields"]["intitule"] == "Potager solidaire du quartier du Perroy"
    assert exported["status"] == "complete"
    subjects = {m["subject"] for m in document["messages"]}
    assert subjects == {first["Subject"], letter["Subject"], "Absence du bureau"}
    assert {m["verdict"] for m in document["messages"]} >= {
        "candidature",
        "follow_up",
        "auto_reply",
    }
    assert all(r["subject"] and r["created_at"] for r in document["replies"])
    assert any(e["action"] == "dossier.created" for e in document["events"])

    # The .eml files are the stored raw messages, byte for byte.
    for entry in document["messages"]:
        if entry["file"] is None:
            assert entry["content_kept"] is False
            continue
        data = (out / entry["file"]).read_bytes()
        assert data == app.blobs.get(entry["sha256"])
        assert sha256(data) == entry["sha256"]
    assert (out / document["messages"][0]["file"]).read_bytes() == as_bytes(first)
    # Each piece is the stored file; the original name is kept only as data.
    stored = {p["blob_sha256"]: p["filename"] for p in state["pieces"]}
    for piece in exported["pieces"]:
        data = (out / piece["file"]).read_bytes()
        assert sha256(data) == piece["sha256"]
        assert stored[piece["sha256"]] == piece["original_name"]
        assert re.fullmatch(
            r"pieces/BSC-\d{4}-\d{4}/\d{4}-[A-Za-z0-9][A-Za-z0-9._-]*", piece["file"]
        )
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(written) == len(report.files)
    root = out.resolve()
    assert all(p.resolve().is_relative_to(root) for p in written)
    assert not (tmp_path / "etc").exists() and not (out.parent / "etc").exists()
    readme = (out / "LISEZMOI.txt").read_text(encoding="utf-8")
    assert "données personnelles" in readme and "person.json" in readme
    # Nothing about someone else.
    everything = (out / "person.json").read_text(encoding="utf-8")
    assert KARIM not in everything.lower() and karim.reference not in everything

    with pytest.raises(PrivacyError):
        export_person(app, MARIE, out)  # not empty: never mixed with an older export
    with pytest.raises(PrivacyError):
        export_person(app, "not an address", tmp_path / "other")


# --------------------------------------------------------------------------
# erasure request


def test_erase_person(app, dovecot, documents):
    dovecot.append(NB, candidature(MARIE, documents["potager"], extra=[SHARED_CSV]))
    dovecot.append(NB, candidature(KARIM, documents["covoiturage"], extra=[SHARED_CSV]))
    poll(app)
    marie = dossier_of(app, MARIE)
    dovecot.append(
        NB,
        make_mail(
            subject=f"Re: {marie.reference}",
            sender=MARIE,
            to=("n.bataillon@ville-bethune.fr",),
            body="Voici le courrier.",
            attachments=[("courrier.pdf", documents["potager_letter"], "application/pdf")],
        ),
    )
    dovecot.append(NB, auto_reply(MARIE.upper()))
    # Her association's office files a second project naming her as contact.
    dovecot.append(
        DB,
        candidature(
            "secretariat@jardins-perroy.fr",
            documents["potager"],
            to=("d.berteloot@ville-bethune.fr",),
        ),
    )
    # Someone else's mail copying her, and a staff note naming her: they stay, without her.
    dovecot.append(
        NB,
        make_mail(
            subject="Lettre d'information de mars",
            sender="info@mairie-annezin.fr",
            cc=(MARIE,),
            body="Les nouvelles du mois.",
            headers={"Precedence": "bulk"},
        ),
    )
    poll(app)
    office = dossier_of(app, "secretariat@jardins-perroy.fr")
    assert office.fields["contact_email"] == MARIE
    karim = dossier_of(app, KARIM)
    with session_scope(app.engine) as session:
        repo.record_event(
            session=session,
            actor=ACTOR,
            action="staff.note",
            details={"text": f"Appel de Mme Lefebvre ({MARIE.title()}) le 3 mars."},
        )
    karim_before = dossier_state(app, karim.reference)
    marie_blobs = blobs_of(dossier_state(app, marie.reference)) | blobs_of(
        dossier_state(app, office.reference)
    )
    assert address_hits(app, MARIE)

    # The office's dossier names her only in its form: listed, not erased, until staff confirm.
    preview = preview_erasure(app, MARIE)
    assert preview.dossiers == [marie.reference] and preview.form_only == [office.reference]
    assert "--include-form-addresses" in preview.summary()
    assert preview_erasure(app, MARIE, include_form_addresses=True).dossiers == sorted(
        [marie.reference, office.reference]
    )
    report = erase_person(app, MARIE.title(), actor=ACTOR, include_form_addresses=True)
    assert report.dossiers == sorted([marie.reference, office.reference])
    assert report.refused == [] and report.complete
    assert report.messages == 4  # candidature, letter, auto-reply, the office's candidature
    assert report.scrubbed >= 2  # the newsletter's Cc and the staff note
    assert address_hits(app, MARIE) == []
    assert get_dossier(app, marie.reference) is None
    assert get_dossier(app, office.reference) is None

    [tombstone] = rows(app, Event, Event.action == "person.erased")
    assert tombstone.actor == ACTOR and tombstone.dossier_id is None
    assert tombstone.details["email_hmac"] == hmac_of(MARIE)
    assert "email_sha256" not in tombstone.details
    assert tombstone.details["dossiers"] == report.dossiers
    assert tombstone.details["counts"]["messages"] == 4

    # Blobs: hers are gone, the one Karim's dossier shares stays.
    shared = sha256(SHARED_CSV[1])
    assert app.blobs.exists(shared)
    assert not any(app.blobs.exists(s) for s in marie_blobs - {shared})
    assert report.blobs == len(marie_blobs - {shared})
    # Another person's dossier is untouched.
    assert dossier_state(app, karim.reference) == karim_before
    assert all(app.blobs.exists(s) for s in blobs_of(karim_before))
    [newsletter] = rows(app, Message, Message.sender == "info@mairie-annezin.fr")
    assert ERASED_TEXT in json.dumps(newsletter.headers, ensure_ascii=False)
    [note] = rows(app, Event, Event.action == "staff.note")
    assert note.details["text"] == f"Appel de Mme Lefebvre ({ERASED_TEXT}) le 3 mars."

    # She may apply again: filed as any new candidature, under a new reference.
    dovecot.append(NB, candidature(MARIE, documents["potager"]))
    poll(app)
    again = dossier_of(app, MARIE)
    assert again.reference not in (marie.reference, office.reference)
    assert again.status == "incomplete"


def test_erase_person_refuses_dossiers_on_legal_hold(app, dovecot, documents):
    dovecot.append(NB, candidature(MARIE, documents["potager"]))
    poll(app)
    held = dossier_of(app, MARIE)
    dovecot.append(NB, candidature(MARIE, documents["covoiturage"]))  # another project
    dovecot.append(NB, auto_reply(MARIE))
    poll(app)
    with session_scope(app.engine) as session:
        mine = session.exec(select(Dossier).where(Dossier.sender == MARIE)).all()
    [other] = [d for d in mine if d.reference != held.reference]
    set_legal_hold(app, held.reference, True, actor=ACTOR, note="recours")
    held_before = dossier_state(app, held.reference)

    report = erase_person(app, MARIE, actor=ACTOR)
    assert report.refused == [held.reference]
    assert report.dossiers == [other.reference]
    assert not report.complete and "REFUSED" in report.summary()
    # Nothing of the held dossier was touched, its address included.
    assert dossier_state(app, held.reference) == held_before
    assert all(app.blobs.exists(s) for s in blobs_of(held_before))
    assert get_dossier(app, other.reference) is None
    assert rows(app, Message, Message.status == "ignored") == []
    [tombstone] = rows(app, Event, Event.action == "person.erased")
    assert tombstone.details["refused"] == [held.reference]
    assert tombstone.details["dossiers"] == [other.reference]
    # A purge still leaves it alone.
    age_dossier(app, held.reference, 4000)
    assert purge(app, actor=ACTOR).held == [held.reference]


def test_requests_need_an_actor_and_an_address(app):
    with pytest.raises(PrivacyError):
        purge(app, actor="")
    with pytest.raises(PrivacyError):
        erase_person(app, "personne", actor=ACTOR)
    with pytest.raises(PrivacyError):
        erase_person(app, MARIE, actor=" ")
    # Nothing about an unknown person: still a tombstone, so the request is on record.
    report = erase_person(app, "inconnu@example.org", actor=ACTOR)
    assert report.dossiers == [] and report.messages == 0
    [tombstone] = rows(app, Event, Event.action == "person.erased")
    assert tombstone.details["email_hmac"] == hmac_of("inconnu@example.org")
    assert address_hits(app, "inconnu@example.org") == []


def test_erase_person_keeps_her_mail_in_someone_elses_dossier(app, dovecot, documents):
    dovecot.append(NB, candidature(KARIM, documents["covoiturage"]))
    poll(app)
    karim = dossier_of(app, KARIM)
    # A partner sends the letter for Karim's project.
    dovecot.append(
        NB,
        make_mail(
            subject=f"Re: dossier {karim.reference}",
            sender=MARIE,
            to=("n.bataillon@ville-bethune.fr",),
            body="Voici le courrier signé pour le projet de M. Benali.",
            attachments=[("courrier.pdf", documents["covoiturage_letter"], "application/pdf")],
        ),
    )
    poll(app)
    # Not Karim's address: her letter waits for staff, who attach it after checking.
    with session_scope(app.engine) as session:
        partner = session.exec(select(Message).where(Message.sender == MARIE)).one().id
    attach_message(app, message_pk=partner, reference=karim.reference, actor=ACTOR)
    before = dossier_state(app, karim.reference)
    assert MARIE in {m["sender"] for m in before["messages"]}

    report = erase_person(app, MARIE, actor=ACTOR)
    assert report.dossiers == [] and report.messages == 0
    assert report.other_dossiers == [karim.reference]
    assert karim.reference in report.summary()
    after = dossier_state(app, karim.reference)
    assert after["pieces"] == before["pieces"]
    assert [m["id"] for m in after["messages"]] == [m["id"] for m in before["messages"]]
    assert ERASED_TEXT in {m["sender"] for m in after["messages"]}
    # The pieces stay as they were; her message's stored copy is replaced by a redacted one.
    assert all(app.blobs.exists(p["blob_sha256"]) for p in before["pieces"])
    assert report.redacted_messages == 1 and report.others == [
        f"message {m['id']} (dossier {karim.reference})"
        for m in before["messages"]
        if m["sender"] == MARIE
    ]
    [mine] = [m for m in after["messages"] if m["sender"] == ERASED_TEXT]
    [old] = [m for m in before["messages"] if m["sender"] == MARIE]
    assert mine["raw_blob"] != old["raw_blob"] and not app.blobs.exists(old["raw_blob"])
    stored = app.blobs.get(mine["raw_blob"])
    assert MARIE.encode() not in stored and b"courrier.pdf" in stored
    # The server copy was replaced by the same redacted bytes.
    with dovecot.mailbox_client(NB) as mailbox:
        on_server = [m.obj.as_bytes() for m in mailbox.fetch(mark_seen=False)]
    assert len(on_server) == 2 and not any(MARIE.encode() in raw for raw in on_server)
    assert [m for m in on_server if b"courrier.pdf" in m] != []
