"""An erased person leaves nothing behind; what is kept expires as written.

End to end on the test Dovecot and the capturing SMTP server: one person is
seeded everywhere real mail spreads them (their candidature and follow-up,
our replies and their Sent copies, a digest listing their dossier, another
applicant's mail that copies and names them), ``mailbot erase-person
--yes`` runs through the real CLI, then every table (text columns and
decoded stored messages, every MIME part), every blob, the database file,
the log output and every IMAP folder are searched for the address, the
name and the phone number. A purge with the clock moved past each
retention period leaves nothing expired and nothing on legal hold removed.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import imaplib
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, col, select

from mailbot.app import App
from mailbot.cli import main
from mailbot.config import load_config
from mailbot.digest.schedule import send_digest
from mailbot.intake import poll_all
from mailbot.privacy import PrivacyError, erase_person, purge, set_legal_hold
from mailbot.smtp import send_outbox
from storage import repositories as repo
from storage.db import session_scope
from storage.models import (
    Dossier,
    DossierStatus,
    Event,
    Message,
    Outbox,
    OutboxKind,
    Piece,
    Sighting,
    utcnow,
)
from tests.fixtures import corpus
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import make_mail

NB, DB = "n.bataillon", "d.berteloot"
RULES = load_config(SHIPPED_CONFIG, environ={}).rules
MARIE = "marie.lefebvre@jardins-perroy.fr"
KARIM = "k.benali@mobinord.fr"
SOPHIE = "sophie.durand@quartier-montliebaut.fr"
# What names Marie: her address, her name, her phone number (any separators, +33 form).
NEEDLES = {
    "address": re.compile(re.escape(MARIE), re.IGNORECASE),
    "name": re.compile(r"lefebvre", re.IGNORECASE),
    "phone": re.compile(r"(?:0|\+\s?33\s?|0033\s?)3[\s.\-]?21[\s.\-]?00[\s.\-]?00[\s.\-]?00"),
}

# Sophie's list of volunteers names Marie (a text piece of another dossier).
VOLUNTEERS_CSV = (
    "nom;téléphone\nMarie Lefebvre;03 21 00 00 00\nPaul Henry;06 11 22 33 44\n".encode()
)
# The service's own loggers (the test SMTP server logs whole messages at DEBUG).
SERVICE_LOGGERS = ("mailbot", "parsers", "storage")


@pytest.fixture(scope="module")
def documents() -> dict[str, bytes]:
    return {
        "potager": corpus.form_pdf(RULES, corpus.POTAGER),
        "potager_letter": corpus.letter_pdf(corpus.POTAGER),
        "covoiturage": corpus.form_pdf(RULES, corpus.COVOITURAGE),
        "fete": corpus.form_pdf(RULES, corpus.FETE),
    }


@pytest.fixture
def app(replies_app: App, db_url: str, monkeypatch: pytest.MonkeyPatch) -> App:
    """The service with replies over SMTP and copies saved in n.bataillon's Sent folder,
    on each database back end."""
    monkeypatch.setenv("MAILBOT_DATABASE__URL", db_url)
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__SAVE_SENT", "true")
    monkeypatch.setenv("MAILBOT_STAFF_USER", "dpo")
    replies_app._config = None
    return replies_app


def candidature(sender: str, form: bytes, **kw: Any):
    values: dict[str, Any] = {
        "subject": "Candidature au label Béthune Smart City",
        "sender": sender,
        "to": ("n.bataillon@ville-bethune.fr",),
        "body": "Bonjour,\nVeuillez trouver ci-joint notre dossier d'intention.\nCordialement",
        "attachments": [("dossier_intention.pdf", form, "application/pdf")],
    }
    values.update(kw)
    return make_mail(**values)


def poll(app: App) -> None:
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]


def dossier_of(app: App, sender: str) -> Dossier:
    with session_scope(app.engine) as session:
        [dossier] = session.exec(select(Dossier).where(Dossier.sender == sender)).all()
    return dossier


def dossier_state(app: App, reference: str, *, raw: bool = True) -> dict[str, Any]:
    """A dossier and what hangs on it; ``raw=False`` leaves out the identity of the
    stored copies and text pieces (an erasure may redact them)."""
    with session_scope(app.engine) as session:
        dossier = repo.get_dossier(session=session, reference=reference)
        assert dossier is not None
        messages = session.exec(
            select(Message).where(Message.dossier_id == dossier.id).order_by(col(Message.id))
        ).all()
        dumped = [m.model_dump() for m in messages]
        pieces = [
            p.model_dump()
            for p in session.exec(
                select(Piece).where(Piece.dossier_id == dossier.id).order_by(col(Piece.id))
            ).all()
        ]
        if not raw:
            for m in dumped:
                for key in ("raw_blob", "sha256", "size", "headers", "updated_at"):
                    m.pop(key)
            for p in pieces:
                if p["content_type"].startswith("text/"):
                    p.pop("blob_sha256")
                    p.pop("size")
        return {
            # Redacting its pieces changes what the dossier's page shows: its
            # version (migration 0005) rises with it.
            "dossier": dossier.model_dump(exclude=None if raw else {"version"}),
            "messages": dumped,
            "pieces": pieces,
            "outbox": [
                o.model_dump(exclude={"raw"})
                for o in session.exec(
                    select(Outbox).where(Outbox.dossier_id == dossier.id).order_by(col(Outbox.id))
                ).all()
            ],
        }


# -- searching everywhere -----------------------------------------------------------


def decoded_texts(raw: bytes) -> list[str]:
    """The raw bytes, then every header and every part of a message, decoded."""
    texts = [raw.decode("latin-1"), raw.decode("utf-8", "replace")]
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # not a message: the raw text is all there is
        return texts
    for part in message.walk():
        for name, value in part.items():
            texts.append(f"{name}: {value}")
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        texts.append(payload.decode("latin-1"))
        texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return texts


def hits_in(texts: list[str], where: str) -> list[str]:
    return [
        f"{where}: {kind}"
        for kind, needle in NEEDLES.items()
        if any(needle.search(text) for text in texts)
    ]


def database_hits(app: App) -> list[str]:
    """Every value of every table; bytes as decoded messages."""
    hits: list[str] = []
    with app.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in connection.execute(table.select()).mappings():
                for name, value in row.items():
                    if isinstance(value, bytes):
                        texts = decoded_texts(value)
                    elif isinstance(value, (dict, list)):
                        texts = [json.dumps(value, ensure_ascii=False)]
                    else:
                        texts = [str(value)]
                    hits += hits_in(texts, f"{table.name}.{name}")
    return sorted(set(hits))


def blob_hits(app: App) -> list[str]:
    hits: list[str] = []
    for sha in app.blobs.iter_digests():
        hits += hits_in(decoded_texts(app.blobs.get(sha)), f"blob {sha[:12]}")
    return hits


def database_file_hits(app: App) -> list[str]:
    """The SQLite file and its journal, free pages included (plain bytes).

    (PostgreSQL's files are the server's: its VACUUM is what the erasure runs.)
    """
    if app.engine.dialect.name != "sqlite":
        return []
    path = Path(app.engine.url.database or "")
    hits: list[str] = []
    for suffix in ("", "-wal", "-journal"):
        file = path.with_name(path.name + suffix)
        if file.exists():
            data = file.read_bytes().decode("latin-1")
            hits += hits_in([data], file.name)
    return hits


def server_messages(dovecot, user: str) -> dict[str, list[bytes]]:
    """The raw bytes of every message of every folder of ``user``, over IMAP."""
    found: dict[str, list[bytes]] = {}
    for folder in dovecot.folders(user):
        with dovecot.mailbox_client(user, folder=None) as mailbox:
            mailbox.folder.set(folder, readonly=True)
            client: imaplib.IMAP4 = mailbox.client
            typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
            assert typ == "OK"
            found[folder] = [item[1] for item in data if isinstance(item, tuple)]
    return found


def imap_hits(dovecot) -> list[str]:
    hits: list[str] = []
    for user in (NB, DB):
        for folder, messages in server_messages(dovecot, user).items():
            for raw in messages:
                hits += hits_in(decoded_texts(raw), f"imap {user}/{folder}")
    return sorted(set(hits))


# -- erasure ------------------------------------------------------------------------


def seed_everywhere(app: App, dovecot, documents: dict[str, bytes]) -> dict[str, str]:
    """Marie in every place her data reaches; Karim and Sophie as other applicants."""
    dovecot.append(
        NB,
        candidature(
            f"Marie Lefebvre <{MARIE}>",
            documents["potager"],
            body="Bonjour,\nNotre dossier est joint.\nMarie Lefebvre\nTél. : 03 21 00 00 00",
        ),
    )
    dovecot.append(NB, candidature(f"Karim Benali <{KARIM}>", documents["covoiturage"]))
    poll(app)
    marie = dossier_of(app, MARIE)
    # Her follow-up, and an out-of-office reply.
    dovecot.append(
        NB,
        make_mail(
            subject=f"Re: {marie.reference}",
            sender=f"Marie Lefebvre <{MARIE}>",
            to=("n.bataillon@ville-bethune.fr",),
            body="Voici le courrier signé. Marie Lefebvre, 03.21.00.00.00",
            attachments=[("courrier.pdf", documents["potager_letter"], "application/pdf")],
        ),
    )
    dovecot.append(
        NB,
        make_mail(
            subject="Absence du bureau",
            sender=MARIE,
            to=("n.bataillon@ville-bethune.fr",),
            body="Je suis absente jusqu'au 3 mars. Marie Lefebvre",
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    # Another applicant copies her and names her in the body (encoded: UTF-8 text).
    dovecot.append(
        NB,
        candidature(
            f"Sophie Durand <{SOPHIE}>",
            documents["fete"],
            cc=(f"Marie Lefebvre <{MARIE}>",),
            body=(
                "Bonjour,\nNous candidatons en lien étroit avec Marie Lefebvre "
                "(présidente des Jardins du Perroy, tél. +33 3 21 00 00 00), en copie.\n"
                "Bien cordialement,\nSophie Durand"
            ),
            attachments=[
                ("dossier_intention.pdf", documents["fete"], "application/pdf"),
                (
                    "benevoles.csv",
                    VOLUNTEERS_CSV,
                    "text/csv",
                ),
            ],
        ),
    )
    poll(app)
    send_outbox(app)  # our replies, with their copies in the Sent folder
    send_digest(app)  # lists her dossier; its copy in the Sent folder too
    with session_scope(app.engine) as session:
        repo.record_event(
            session=session,
            actor="staff:nbataillon",
            action="staff.note",
            details={"text": "Appel de Marie Lefebvre le 3 mars (03 21 00 00 00)."},
        )
    return {
        "marie": marie.reference,
        "karim": dossier_of(app, KARIM).reference,
        "sophie": dossier_of(app, SOPHIE).reference,
    }


def test_erase_person_leaves_nothing_behind(app, dovecot, smtp_server, documents, caplog, capsys):
    for name in SERVICE_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    refs = seed_everywhere(app, dovecot, documents)
    # She is everywhere before: the checks below can find her.
    assert database_hits(app) and blob_hits(app) and imap_hits(dovecot)
    with session_scope(app.engine) as session:
        sent = session.exec(select(Outbox).where(Outbox.status == "sent")).all()
    digests = [o for o in sent if o.kind == OutboxKind.DIGEST]
    # A delivered digest keeps its row (when, to whom), not its body.
    assert digests and all(d.raw == b"" for d in digests)
    assert all(o.raw for o in sent if o.kind != OutboxKind.DIGEST)
    assert len(dovecot.uids(NB, "Sent")) == len(sent)
    karim_before = dossier_state(app, refs["karim"])
    sophie_before = dossier_state(app, refs["sophie"], raw=False)
    capsys.readouterr()

    assert main(["erase-person", MARIE.upper(), "--yes"]) == 0
    printed = capsys.readouterr()
    # The preview came first: server copies counted, Sophie's mail listed.
    assert "server copies to delete: 3 in the mail folders, 2 in the Sent folder" in printed.out
    assert f"(dossier {refs['sophie']})" in printed.out

    assert database_hits(app) == []
    assert blob_hits(app) == []
    assert database_file_hits(app) == []
    assert imap_hits(dovecot) == []
    service_log = [
        caplog.handler.format(r) for r in caplog.records if r.name.split(".")[0] in SERVICE_LOGGERS
    ]
    assert service_log  # the service did log, and none of it names her
    assert hits_in([*service_log, printed.out, printed.err], "logs and output") == []

    # The other applicants' dossiers are intact (Sophie's mail only lost Marie).
    assert dossier_state(app, refs["karim"]) == karim_before
    assert dossier_state(app, refs["sophie"], raw=False) == sophie_before
    with session_scope(app.engine) as session:
        assert repo.get_dossier(session=session, reference=refs["marie"]) is None
        [sophie_mail] = session.exec(select(Message).where(Message.sender == SOPHIE)).all()
        [tombstone] = session.exec(select(Event).where(Event.action == "person.erased")).all()
    stored = app.blobs.get(sophie_mail.raw_blob)
    redacted = "Nous candidatons en lien étroit avec [nom effacé]"
    assert any(redacted in text for text in decoded_texts(stored))
    [csv] = [
        p for p in dossier_state(app, refs["sophie"])["pieces"] if p["content_type"] == "text/csv"
    ]
    assert app.blobs.get(csv["blob_sha256"]).decode() == (
        "nom;téléphone\n[nom effacé];[téléphone effacé]\nPaul Henry;06 11 22 33 44\n"
    )
    assert tombstone.actor == "staff:dpo" and len(tombstone.details["email_hmac"]) == 64
    # Her mail left the INBOX; the others' (Sophie's redacted copy) stayed, and the ledger
    # follows the redacted copy's new UID.
    inbox = server_messages(dovecot, NB)["INBOX"]
    assert len(inbox) == 2
    assert any(stored == raw.replace(b"\r\n", b"\n") or stored == raw for raw in inbox)
    with session_scope(app.engine) as session:
        sightings = session.exec(
            select(Sighting).where(Sighting.message_pk == sophie_mail.id)
        ).all()
    assert [s.uid for s in sightings] == [max(dovecot.uids(NB))]
    # The next poll sees nothing new to file.
    poll(app)
    assert dossier_state(app, refs["sophie"], raw=False) == sophie_before


def test_erasure_refuses_a_missing_or_placeholder_tombstone_secret(app, monkeypatch):
    for value in (None, "changeme", " "):
        if value is None:
            monkeypatch.delenv("MAILBOT_TOMBSTONE_SECRET")
        else:
            monkeypatch.setenv("MAILBOT_TOMBSTONE_SECRET", value)
        with pytest.raises(PrivacyError, match="MAILBOT_TOMBSTONE_SECRET"):
            erase_person(app, MARIE, actor="staff:dpo")
    with session_scope(app.engine) as session:
        assert session.exec(select(Event)).all() == []
    # Demo mode has a key of its own.
    monkeypatch.setenv("MAILBOT_SERVICE__DEMO_MODE", "true")
    app._config = None
    assert erase_person(app, MARIE, actor="staff:dpo").email_hmac


def test_form_address_alone_is_listed_not_acted_on(app, dovecot, documents, capsys):
    # A stranger files a dossier typing Marie's address in the form's contact field.
    dovecot.append(NB, candidature("secretariat@jardins-perroy.fr", documents["potager"]))
    poll(app)
    office = dossier_of(app, "secretariat@jardins-perroy.fr")
    assert office.fields["contact_email"] == MARIE
    capsys.readouterr()

    assert main(["erase-person", MARIE, "--yes"]) == 0
    out = capsys.readouterr().out
    assert office.reference in out and "--include-form-addresses" in out
    with session_scope(app.engine) as session:
        assert repo.get_dossier(session=session, reference=office.reference) is not None
    assert main(["export-person", MARIE, "-o", str(Path(app.config.directory) / "x")]) == 0
    assert "NOT INCLUDED" in capsys.readouterr().out

    assert main(["erase-person", MARIE, "--yes", "--include-form-addresses"]) == 0
    with session_scope(app.engine) as session:
        assert repo.get_dossier(session=session, reference=office.reference) is None


# -- retention ------------------------------------------------------------------------


def test_purge_past_every_retention_period(app, dovecot, smtp_server, documents):
    refs = seed_everywhere(app, dovecot, documents)
    retention = app.config.settings.retention
    with session_scope(app.engine) as session:
        karim = repo.get_dossier(session=session, reference=refs["karim"])
        assert karim is not None
        karim.status = DossierStatus.ACCEPTED
        session.add(karim)
    set_legal_hold(app, refs["sophie"], True, actor="staff:dpo", note="recours")
    held_before = dossier_state(app, refs["sophie"])
    # An undelivered digest (a recipient refused) and a second delivered day.
    smtp_server.reject_recipient("d.berteloot@ville-bethune.fr")
    later = utcnow() + dt.timedelta(days=1)
    send_digest(app, now=later)

    longest = max(getattr(retention, f"{status.value}_days") for status in DossierStatus) + max(
        retention.ledger_days, retention.digest_days
    )
    now = utcnow() + dt.timedelta(days=longest + 2)
    report = purge(app, now=now, actor="staff:dpo")
    assert report.held == [refs["sophie"]]

    with session_scope(app.engine) as session:
        dossiers = session.exec(select(Dossier)).all()
        messages = session.exec(select(Message)).all()
        outbox = session.exec(select(Outbox)).all()
    # Nothing expired is left: only the held dossier and what hangs on it ...
    assert [d.reference for d in dossiers] == [refs["sophie"]]
    held_id = dossiers[0].id
    assert {m.dossier_id for m in messages} == {held_id}
    # ... and the last delivered digest (the next one starts where it ends), without body.
    digests = [o for o in outbox if o.kind == OutboxKind.DIGEST]
    assert [o.dossier_id for o in outbox if o.kind != OutboxKind.DIGEST] == [held_id]
    assert len(digests) == 1 and digests[0].status == "sent" and digests[0].raw == b""
    # Nothing on legal hold removed.
    assert dossier_state(app, refs["sophie"]) == held_before
    kept = {m.raw_blob for m in messages if m.raw_blob} | {
        p["blob_sha256"] for p in held_before["pieces"]
    }
    assert set(app.blobs.iter_digests()) == kept
    with session_scope(app.engine) as session:
        actions = {e.action for e in session.exec(select(Event)).all()}
    assert "digest.queued" not in actions and "dossier.purged" in actions
    # A second purge finds nothing more.
    again = purge(app, now=now, actor="staff:dpo")
    assert again.empty and again.held == [refs["sophie"]]


# -- logs -----------------------------------------------------------------------------


def test_logs_name_outbox_rows_never_recipients(app, dovecot, smtp_server, documents, caplog):
    for name in SERVICE_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    smtp_server.reject_recipient(MARIE)
    dovecot.append(NB, candidature(f"Marie Lefebvre <{MARIE}>", documents["potager"]))
    poll(app)
    assert send_outbox(app).failed == 1
    service_log = [r.getMessage() for r in caplog.records if r.name.startswith("mailbot.smtp")]
    # The call site names the row; the server's answer (which quotes the
    # address) is only safe once the CLI's filter is installed, below.
    assert any("outbox" in line and "failed" in line for line in service_log)
    assert not any(MARIE in line.split(": ", 1)[0] for line in service_log)

    # Every command's logging goes through mailbot.logredact.
    assert main(["purge", "--dry-run"]) == 0
    logging.getLogger("mailbot.test").error("refused: 550 <%s> unknown; Marie", MARIE)
    [record] = [r for r in caplog.records if r.name == "mailbot.test"]
    assert MARIE not in record.getMessage() and "<address>" in record.getMessage()
