"""The staff digest, end to end: mail polled from Dovecot, replies through aiosmtpd, real database.

Every section is checked against data the service made itself from real messages (a complete
and an incomplete candidature, a follow-up completing a dossier, a message to review, a reply
suppressed by the per-sender cap, a reply refused by the SMTP server, a server message the
ledger forgot), and the HTML is rendered in a real headless Chromium.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from sqlmodel import col, delete, func, select

from mailbot.app import App
from mailbot.cli import main as cli_main
from mailbot.config import load_config
from mailbot.digest import (
    EMPTY_LINE,
    build_digest,
    check_templates,
    digest_due,
    print_digest,
    queue_digest,
)
from mailbot.errors import ConfigError
from mailbot.intake import poll_all
from mailbot.smtp import send_outbox
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Dossier, Event, Message, Outbox, Sighting
from tests.fixtures import corpus
from tests.fixtures.config import REPO_ROOT, SHIPPED_CONFIG
from tests.fixtures.mail import make_mail

NB, DB = "n.bataillon", "d.berteloot"
STAFF = ("n.bataillon@ville-bethune.fr", "d.berteloot@ville-bethune.fr")
RULES = load_config(SHIPPED_CONFIG, environ={}).rules
ARTIFACTS = REPO_ROOT / "test-artifacts"
PARIS = ZoneInfo("Europe/Paris")

MARIE = "Marie Lefebvre <marie.lefebvre@jardins-perroy.fr>"
KARIM = "Karim Benali <k.benali@mobinord.fr>"
JP = "Jean-Pierre Dubois <jp.dubois@laposte.net>"
CLAIRE = "Claire Dumont <c.dumont@example.org>"

# What the applicants wrote in their dossiers and must never reach the digest.
PRIVATE_DATA = (
    "03 21 00 00 00",
    "+33321000000",
    "12 rue des Jardins",
    "+33 6 12 34 56 78",
    "+33612345678",
    "45 avenue de Lens",
    "06 98 76 54 32",
    "+33698765432",
    "3 allée des Tilleuls",
)


@pytest.fixture
def digest_app(service_env, service_app, smtp_server, monkeypatch):
    monkeypatch.setenv("MAILBOT_SMTP__HOST", smtp_server.host)
    monkeypatch.setenv("MAILBOT_SMTP__PORT", str(smtp_server.port))
    monkeypatch.setenv("MAILBOT_SMTP__SECURITY", "none")
    monkeypatch.setenv("MAILBOT_SMTP__USERNAME", "")
    service_app._config = None
    return service_app


def candidature(project: corpus.Project, sender: str, *, letter: bool = True) -> EmailMessage:
    attachments = [("dossier_intention.pdf", corpus.form_pdf(RULES, project), "application/pdf")]
    if letter:
        attachments.append(("courrier_maire.pdf", corpus.letter_pdf(project), "application/pdf"))
    return make_mail(
        subject="Candidature au label Béthune Smart City",
        sender=sender,
        to=("n.bataillon@ville-bethune.fr",),
        body="Bonjour,\nVeuillez trouver ci-joint notre dossier d'intention.\nCordialement",
        attachments=attachments,
    )


def poll(app: App) -> None:
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]


def reference_of(app: App, intitule: str) -> str:
    with session_scope(app.engine) as session:
        for dossier in session.exec(select(Dossier)).all():
            if dossier.fields.get("intitule") == intitule:
                return dossier.reference
    raise AssertionError(f"no dossier {intitule!r}")


@dataclass(frozen=True)
class Scenario:
    potager: str  # complete on arrival; its acknowledgement is refused by the SMTP server
    covoiturage: str  # incomplete, then completed by a follow-up; that reply is suppressed
    fete: str  # incomplete, still waiting for the letter
    review_subject: str
    unknown_uid: int
    unknown_subject: str


def make_scenario(app: App, dovecot, smtp_server, monkeypatch) -> Scenario:
    monkeypatch.setenv("MAILBOT_REPLIES__PER_SENDER_DAILY_CAP", "1")
    app._config = None
    dovecot.append(NB, candidature(corpus.POTAGER, MARIE))
    dovecot.append(NB, candidature(corpus.COVOITURAGE, KARIM, letter=False))
    dovecot.append(NB, candidature(corpus.FETE, JP, letter=False))
    poll(app)
    smtp_server.fail_next(1, "550 5.1.1 No such user", stage="RCPT")
    report = send_outbox(app)
    assert (report.sent, report.failed) == (2, 1), report
    potager = reference_of(app, corpus.POTAGER.raw["intitule"])
    covoiturage = reference_of(app, corpus.COVOITURAGE.raw["intitule"])
    fete = reference_of(app, corpus.FETE.raw["intitule"])

    dovecot.append(
        NB,
        make_mail(
            subject=f"Re: [{covoiturage}] le courrier pour notre candidature",
            sender=KARIM,
            body="Bonjour, voici le courrier adressé à Monsieur le Maire.",
            attachments=[
                ("courrier.pdf", corpus.letter_pdf(corpus.COVOITURAGE), "application/pdf")
            ],
        ),
    )
    review_subject = "Où en est le dossier BSC-2020-0999 ?"
    dovecot.append(
        NB,
        make_mail(
            subject=review_subject,
            sender=CLAIRE,
            body="Bonjour, pouvez-vous me dire où en est le dossier BSC-2020-0999 ?",
        ),
    )
    unknown_subject = "Invitation : réunion de quartier"
    unknown_uid = dovecot.append(
        NB,
        make_mail(
            subject=unknown_subject,
            sender="Comité des fêtes <comite@example.net>",
            body="Réunion jeudi à 18 h à la salle des fêtes. Venez nombreux !",
        ),
    )
    poll(app)
    send_outbox(app)
    # The ledger loses track of the invitation (as a bug or a restored backup would do):
    # its UID stays below the cursor, so reconciliation must notice it.
    with session_scope(app.engine) as session:
        sighting = session.exec(
            select(Sighting).where(Sighting.mailbox == NB, Sighting.uid == unknown_uid)
        ).one()
        message_pk = sighting.message_pk
        session.exec(delete(Sighting).where(col(Sighting.message_pk) == message_pk))
        session.exec(delete(Event).where(col(Event.message_pk) == message_pk))
        session.exec(delete(Message).where(col(Message.id) == message_pk))
    return Scenario(potager, covoiturage, fete, review_subject, unknown_uid, unknown_subject)


def rows_of_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "the CSV must start with a UTF-8 BOM"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


# --------------------------------------------------------------------------
# Sections


def test_every_section_from_real_mail(digest_app, dovecot, smtp_server, monkeypatch):
    scenario = make_scenario(digest_app, dovecot, smtp_server, monkeypatch)
    digest = build_digest(digest_app)
    sections = digest.sections
    assert not digest.empty

    new = {d["reference"]: d for d in sections["new_dossiers"]}
    assert set(new) == {scenario.potager, scenario.covoiturage, scenario.fete}
    potager = new[scenario.potager]
    assert potager["intitule"] == "Potager solidaire du quartier du Perroy"
    assert potager["porteur"] == "Association Les Jardins du Perroy"
    assert potager["thematique"] == "Habitat – Environnement"
    assert potager["status_label"] == "complet"
    assert potager["sender"] == "marie.lefebvre@jardins-perroy.fr"

    # Completed by the follow-up; the potager arrived complete and is not repeated here.
    assert [d["reference"] for d in sections["completed_dossiers"]] == [scenario.covoiturage]

    [waiting] = sections["incomplete_dossiers"]
    assert waiting["reference"] == scenario.fete
    assert waiting["days_waiting"] == 0
    assert waiting["missing"] == ["letter"]
    assert waiting["missing_text"] == ["le courrier officiel adressé à Monsieur le Maire"]

    [review] = sections["messages_to_review"]
    assert review["status"] == "needs_review"
    assert review["subject"] == scenario.review_subject
    assert review["sender"] == "c.dumont@example.org"
    # The reason is worded from its code (ReviewReason.UNKNOWN_DOSSIER, detail: the reference).
    assert review["reason_code"] == "unknown_dossier"
    assert review["reason"] == "le message cite un dossier inconnu : BSC-2020-0999"

    replies = {(r["dossier"], r["kind"]): r for r in sections["replies"]}
    assert set(replies) == {
        (scenario.potager, "acknowledgement"),
        (scenario.covoiturage, "completed"),
    }
    refused = replies[(scenario.potager, "acknowledgement")]
    assert refused["status"] == "failed"
    assert refused["reason_code"] == "refused"
    assert refused["reason"] == "refus définitif du serveur : 550 5.1.1 No such user"
    suppressed = replies[(scenario.covoiturage, "completed")]
    assert suppressed["status"] == "suppressed"
    assert suppressed["to"] == "k.benali@mobinord.fr"
    assert suppressed["reason_code"] == "sender_daily_cap"
    assert suppressed["reason"] == (
        "k.benali@mobinord.fr a déjà reçu 1 réponse aujourd'hui (plafond : 1)"
    )

    boxes = {b["mailbox"]: b for b in sections["reconciliation"]["mailboxes"]}
    assert sections["reconciliation"]["checked"] is True
    nb = boxes[NB]
    assert nb["reachable"] and nb["error"] is None and nb["reason"] is None
    assert nb["on_server"] == 6
    assert nb["unknown_count"] == 1
    [unknown] = nb["unknown"]
    assert unknown["uid"] == scenario.unknown_uid
    assert unknown["subject"] == scenario.unknown_subject
    assert unknown["sender"] == "comite@example.net"
    # The other mailbox was never written to: reachable, nothing to say.
    assert boxes[DB]["reachable"] and boxes[DB]["unknown_count"] == 0

    counts = sections["counts"]
    assert counts["open_total"] == 3
    thematiques = {t["key"]: t["count"] for t in counts["by_thematique"]}
    assert len(thematiques) == 7
    assert thematiques["habitat_environnement"] == 1
    assert thematiques["mobilite_transports"] == 1
    assert thematiques["loisirs_culture"] == 1
    assert sum(thematiques.values()) == 3
    criteria = {c["key"]: c["count"] for c in counts["by_criterion"]}
    assert criteria == {"collaborative": 2, "durable": 2, "innovante": 1}
    by_status = {s["status"]: s["count"] for s in counts["by_status"]}
    assert by_status == {"incomplete": 1, "complete": 2, "needs_review": 0}

    # The plain text names every reference and reason, in French.
    text = digest.text
    for reference in (scenario.potager, scenario.covoiturage, scenario.fete):
        assert reference in text
    assert "NOUVEAUX DOSSIERS (3)" in text
    assert "Manque : le courrier officiel adressé à Monsieur le Maire" in text
    assert f"Motif : {review['reason']}" in text
    assert "550 5.1.1 No such user" in text
    assert f"UID {scenario.unknown_uid}" in text
    assert "3 nouveaux dossiers" in digest.subject
    assert "1 message à vérifier" in digest.subject

    # The CSV lists the open dossiers, worded for staff.
    rows = rows_of_csv(digest.csv_bytes)
    assert {r["Référence"] for r in rows} == {
        scenario.potager,
        scenario.covoiturage,
        scenario.fete,
    }
    fete = next(r for r in rows if r["Référence"] == scenario.fete)
    assert fete["Statut"] == "incomplet"
    assert fete["Éléments manquants"] == "le courrier officiel adressé à Monsieur le Maire"
    assert "Loisirs – Culture" in fete.values()

    # No more personal data than staff need: no phone numbers, no postal addresses.
    for part in (digest.text, digest.html, digest.csv_bytes.decode("utf-8-sig")):
        for private in PRIVATE_DATA:
            assert private not in part
    header = set(rows[0])
    assert RULES.fields["contact_telephone"].label not in header
    assert RULES.fields["adresse"].label not in header
    assert RULES.fields["contact_email"].label in header

    # Sent to staff, the long accented subject arrives intact.
    assert queue_digest(digest_app) is not None
    assert send_outbox(digest_app).sent == 2
    for captured in smtp_server.wait_for(4)[2:]:
        assert captured.message["Subject"] == digest.subject


def test_digest_is_queued_once_per_day_sent_and_never_filed(
    digest_app, dovecot, smtp_server, monkeypatch
):
    dovecot.append(NB, candidature(corpus.POTAGER, MARIE))
    poll(digest_app)
    assert send_outbox(digest_app).sent == 1
    smtp_server.clear()
    reference = reference_of(digest_app, corpus.POTAGER.raw["intitule"])

    # The next 07:30 UTC (08:30 or 09:30 in Paris): the digest is due, and its 24 hours
    # cover the candidature just filed.
    now = datetime.now(UTC)
    morning = now.replace(hour=7, minute=30, second=0, microsecond=0)
    if morning <= now:
        morning += timedelta(days=1)
    day = morning.astimezone(PARIS).date()
    assert digest_due(digest_app, now=morning)
    row = queue_digest(digest_app, now=morning)
    assert row is not None
    assert row.kind == "digest"
    with session_scope(digest_app.engine) as session:
        rows = session.exec(select(Outbox).where(Outbox.kind == "digest")).all()
    assert sorted(r.to_addr for r in rows) == sorted(STAFF)
    assert {r.dedup_key for r in rows} == {f"digest:{day.isoformat()}:{to}" for to in STAFF}
    assert not digest_due(digest_app, now=morning + timedelta(hours=1))

    report = send_outbox(digest_app)
    assert report.sent == 2
    captured = smtp_server.wait_for(2)
    assert sorted(c.rcpt_tos[0] for c in captured) == sorted(STAFF)
    message = captured[0].message
    assert message["From"] == "Service Béthune Smart City <n.bataillon@ville-bethune.fr>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Mailbot-Loop"] == "bethune-smartcity"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Subject"] == rows[0].subject
    assert message["Subject"].startswith("Récapitulatif Béthune Smart City du ")
    assert "1 nouveau dossier" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert reference in text and reference in html
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename() == f"dossiers-en-cours-{day.isoformat()}.csv"
    data = attachment.get_payload(decode=True)
    assert [r["Référence"] for r in rows_of_csv(data)] == [reference]

    # A restart (a new App on the same database) does not send it again.
    again = App(digest_app.config_dir)
    try:
        assert queue_digest(again, now=morning + timedelta(hours=2)) is None
        assert not digest_due(again, now=morning + timedelta(hours=3))
        # Tomorrow at 07:59 local it is not yet due, at 08:00 it is.
        tomorrow = datetime.combine(day + timedelta(days=1), time(8, 0), tzinfo=PARIS)
        assert not digest_due(again, now=tomorrow - timedelta(minutes=1))
        assert digest_due(again, now=tomorrow)
        # The next digest starts where the one sent ends.
        assert build_digest(again, now=tomorrow, reconcile=False).since == morning
    finally:
        again.close()
    with session_scope(digest_app.engine) as session:
        assert (
            session.exec(
                select(func.count()).select_from(Outbox).where(Outbox.kind == "digest")
            ).one()
            == 2
        )

    # The digest reaching one of our own mailboxes is never filed nor answered.
    before = len(smtp_server.messages)
    dovecot.append(NB, captured[0].data)
    poll(digest_app)
    send_outbox(digest_app)
    with session_scope(digest_app.engine) as session:
        filed = session.exec(select(Message).where(Message.subject == message["Subject"])).one()
        assert filed.verdict == "auto_reply"
        assert filed.status == "ignored"
        assert filed.dossier_id is None
        assert len(session.exec(select(Dossier)).all()) == 1
    assert len(smtp_server.messages) == before


def test_nothing_to_report_gives_one_line_or_nothing(digest_app, dovecot, smtp_server, monkeypatch):
    now = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    digest = build_digest(digest_app, now=now)
    assert digest.empty
    assert digest.text == EMPTY_LINE + "\n"
    assert digest.subject.endswith(": rien de nouveau")
    assert EMPTY_LINE in digest.html
    assert queue_digest(digest_app, now=now) is not None
    assert send_outbox(digest_app).sent == 2
    [first, _second] = smtp_server.wait_for(2)
    assert first.message.get_body(preferencelist=("plain",)).get_content().strip() == EMPTY_LINE
    assert list(first.message.iter_attachments()) == []

    monkeypatch.setenv("MAILBOT_DIGEST__SKIP_WHEN_EMPTY", "true")
    digest_app._config = None
    tomorrow = now + timedelta(days=1)
    assert digest_due(digest_app, now=tomorrow)
    assert queue_digest(digest_app, now=tomorrow) is None
    # Skipped counts as done for the day: the scheduler does not try again.
    assert not digest_due(digest_app, now=tomorrow + timedelta(hours=1))
    with session_scope(digest_app.engine) as session:
        assert len(session.exec(select(Outbox)).all()) == 2
        [skipped] = session.exec(select(Event).where(Event.action == "digest.skipped")).all()
        assert skipped.details["date"] == "2026-01-16"


def test_unreachable_mailbox_is_reported_not_fatal(digest_app, dovecot, monkeypatch):
    from tests.fixtures.smtp import free_port

    monkeypatch.setenv("MAILBOT_MAILBOXES__1__PORT", str(free_port()))
    monkeypatch.setenv("MAILBOT_MAILBOXES__1__TIMEOUT_SECONDS", "5")
    digest_app._config = None
    digest = build_digest(digest_app)
    boxes = {b["mailbox"]: b for b in digest.sections["reconciliation"]["mailboxes"]}
    assert boxes[NB]["reachable"]
    assert not boxes[DB]["reachable"]
    assert "cannot connect" in boxes[DB]["error"]
    assert boxes[DB]["reason"] == "unreachable"
    assert not digest.empty
    assert "1 boîte injoignable" in digest.subject
    assert f"{DB} (INBOX) : injoignable" in digest.text

    # Without reconciliation the server is not contacted at all.
    quiet = build_digest(digest_app, reconcile=False)
    assert quiet.sections["reconciliation"] == {"checked": False, "mailboxes": []}
    assert quiet.empty


def test_print_digest_writes_nothing(digest_app, dovecot):
    dovecot.append(NB, candidature(corpus.FETE, JP, letter=False))
    poll(digest_app)

    def snapshot():
        with session_scope(digest_app.engine) as session:
            return {
                model.__name__: session.exec(select(func.count()).select_from(model)).one()
                for model in (Outbox, Event, Message, Sighting, Dossier)
            }

    before = snapshot()
    text = print_digest(digest_app)
    assert snapshot() == before
    reference = reference_of(digest_app, corpus.FETE.raw["intitule"])
    assert reference in text
    assert "Manque : le courrier officiel adressé à Monsieur le Maire" in text


@pytest.mark.parametrize(
    ("utc", "due"),
    [
        # Winter (UTC+1): 08:00 local is 07:00 UTC.
        (datetime(2026, 1, 15, 6, 59, tzinfo=UTC), False),
        (datetime(2026, 1, 15, 7, 0, tzinfo=UTC), True),
        # Summer time starts on 29 March 2026 (UTC+2): 08:00 local is 06:00 UTC.
        (datetime(2026, 3, 29, 5, 59, tzinfo=UTC), False),
        (datetime(2026, 3, 29, 6, 0, tzinfo=UTC), True),
        # A missed digest is due at any later hour of the day.
        (datetime(2026, 3, 29, 21, 30, tzinfo=UTC), True),
    ],
)
def test_due_at_the_configured_local_hour(service_app, utc, due):
    assert digest_due(service_app, now=utc) is due


def test_templates_are_checked_with_sample_data(config_dir, edit_config):
    check_templates(load_config(config_dir, environ={}))
    edit_config("templates/digest.html.j2", "{{ d.porteur or", "{{ d.no_such_key or")
    with pytest.raises(ConfigError) as caught:
        check_templates(load_config(config_dir, environ={}))
    [problem] = caught.value.problems
    assert problem.file.endswith("digest.html.j2")
    assert problem.line is not None
    assert "cannot render" in problem.message


# --------------------------------------------------------------------------
# HTML in a real browser


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CHROMIUM_MISSING = "Chromium is required for the HTML digest test (apt-get install chromium)"


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    if os.environ.get("CI"):
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    pytest.skip(CHROMIUM_MISSING)


def chromium(binary: str, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class TableRows(HTMLParser):
    """The text of every table row's cells, nested tables included (each row on its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._open: list[list[str]] = []
        self._in_cell: list[bool] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr":
            self._open.append([])
            self._in_cell.append(False)
        elif tag in ("td", "th") and self._open:
            self._open[-1].append("")
            self._in_cell[-1] = True

    def handle_endtag(self, tag):
        if tag == "tr" and self._open:
            self.rows.append([" ".join(c.split()) for c in self._open.pop()])
            self._in_cell.pop()

    def handle_data(self, data):
        if self._open and self._in_cell[-1]:
            self._open[-1][-1] += data


def test_html_digest_in_headless_chromium(digest_app, dovecot, smtp_server, monkeypatch, tmp_path):
    binary = find_chromium()
    scenario = make_scenario(digest_app, dovecot, smtp_server, monkeypatch)
    digest = build_digest(digest_app)
    html = digest.html

    # Self-contained and script-free: inline styles only, no external resources.
    lowered = html.lower()
    for forbidden in ("<script", "<style", "<link", "src=", "url(", "http://", "https://"):
        assert forbidden not in lowered, forbidden
    assert " class=" not in lowered

    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "digest.html"
    page.write_text(html, encoding="utf-8")

    parser = TableRows()
    parser.feed(chromium(binary, tmp_path, "--dump-dom", page.as_uri()))
    assert "script" not in parser.tags
    rows = parser.rows

    def row_with(*texts: str) -> list[str]:
        for row in rows:
            if all(any(t in cell for cell in row) for t in texts):
                return row
        raise AssertionError(f"no table row holds {texts!r}")

    assert ["Référence", "Intitulé", "Porteur", "Thématique", "Statut"] in rows
    row_with(scenario.potager, "Potager solidaire du quartier du Perroy", "complet")
    row_with(scenario.covoiturage, "Covoit'Béthune", "Mobilité – Transports")
    row_with(scenario.fete, "le courrier officiel adressé à Monsieur le Maire")
    row_with(scenario.review_subject, "dossier", "BSC-2020-0999")
    row_with(scenario.potager, "accusé de réception", "550 5.1.1 No such user")
    row_with(scenario.covoiturage, "dossier complet", "non envoyée")
    row_with(str(scenario.unknown_uid), scenario.unknown_subject, "comite@example.net")
    row_with("Habitat – Environnement", "1")
    row_with("Collaborative", "2")

    screenshot = ARTIFACTS / "digest.png"
    screenshot.unlink(missing_ok=True)
    chromium(
        binary,
        tmp_path,
        f"--screenshot={screenshot}",
        "--window-size=1000,2000",
        "--hide-scrollbars",
        page.as_uri(),
    )
    assert screenshot.stat().st_size > 10_000
    with Image.open(screenshot) as image:
        assert image.format == "PNG"
        assert image.size == (1000, 2000)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 100, "the page looks blank"
    by_colour = {colour: count for count, colour in colours}
    # The header band in the city's blue is drawn (styles applied, not raw text).
    assert by_colour.get((0, 88, 124), 0) > 20_000
    # Mostly background and white, but not a single colour.
    assert max(by_colour.values()) < 0.9 * 1000 * 2000


# --------------------------------------------------------------------------
# Links to the back-office, reading warnings, decisions that change nothing


def seed_warned_dossier(app: App, *, status: str) -> str:
    """A dossier with a piece the reading warned about, made through the repository."""
    with session_scope(app.engine) as session:
        dossier = repo.create_dossier(
            session=session,
            year=2026,
            sender="marie.lefebvre@jardins-perroy.fr",
            sender_name="Marie Lefebvre",
            fields={"intitule": "Potager solidaire du quartier du Perroy"},
            missing=[],
            status=status,
            received_at=datetime.now(UTC) - timedelta(minutes=5),
            actor="system",
        )
        message, _new = repo.add_message(
            session=session,
            message=Message(
                dedup_key="warned",
                sha256="b" * 64,
                size=10,
                sender="marie.lefebvre@jardins-perroy.fr",
                subject="Candidature",
                verdict="candidature",
                status="filed",
                dossier_id=dossier.id,
            ),
        )
        repo.add_piece(
            session=session,
            dossier=dossier,
            message=message,
            blob_sha256="c" * 64,
            filename="dossier.pdf",
            content_type="application/pdf",
            size=10,
            role="dossier",
            warnings=["dossier.pdf: page 3 cut at 20,000 characters"],
        )
        return dossier.reference


def test_base_url_links_each_dossier_and_replaces_the_command(config_dir, secrets_env, monkeypatch):
    monkeypatch.setenv("MAILBOT_WEB__BASE_URL", "https://mailbot.ville-bethune.fr/")
    app = App(str(config_dir))
    try:
        reference = seed_warned_dossier(app, status="incomplete")
        digest = build_digest(app, reconcile=False)
    finally:
        app.close()
    url = f"https://mailbot.ville-bethune.fr/dossiers/{reference}"
    assert digest.sections["new_dossiers"][0]["url"] == url
    assert url in digest.text
    assert f'<a href="{url}"' in digest.html
    for part in (digest.text, digest.html):
        assert "mailbot dossiers show" not in part
        assert "https://mailbot.ville-bethune.fr/dossiers" in part
    # The reading warning, in French, with its dossier.
    [warning] = digest.sections["reading_warnings"]
    assert warning == {
        "dossier": reference,
        "dossier_url": url,
        "warning": "dossier.pdf : page 3 lue en partie seulement (trop longue)",
    }
    assert "AVERTISSEMENTS DE LECTURE (1)" in digest.text
    assert f"{reference} : dossier.pdf : page 3 lue en partie seulement" in digest.text
    assert "Avertissements de lecture" in digest.html
    assert "cut at" not in digest.text + digest.html


def test_without_base_url_the_digest_names_the_command(config_dir, secrets_env):
    app = App(str(config_dir))
    try:
        reference = seed_warned_dossier(app, status="incomplete")
        digest = build_digest(app, reconcile=False)
    finally:
        app.close()
    assert digest.sections["new_dossiers"][0]["url"] is None
    assert "mailbot dossiers show RÉFÉRENCE" in digest.text
    assert "<a href" not in digest.html.split("Avertissements de lecture")[1].split("</table>")[0]
    assert reference in digest.text


def test_setting_the_status_a_dossier_has_is_not_a_completion(config_dir, secrets_env, capsys):
    app = App(str(config_dir))
    try:
        reference = seed_warned_dossier(app, status="complete")
        since = datetime.now(UTC) - timedelta(minutes=1)
        assert (
            cli_main(["--config", str(config_dir), "dossiers", "set-status", reference, "complete"])
            == 0
        )
        assert "nothing recorded" in capsys.readouterr().out
        # A row written before this rule (complete -> complete) is no completion either.
        with session_scope(app.engine) as session:
            dossier = repo.get_dossier(session=session, reference=reference)
            repo.record_event(
                session=session,
                actor="staff:someone",
                action="dossier.status_changed",
                dossier=dossier,
                details={"old": "complete", "new": "complete", "note": None},
            )
        digest = build_digest(app, since=since, reconcile=False)
    finally:
        app.close()
    assert digest.sections["completed_dossiers"] == []
    assert "DOSSIERS DEVENUS COMPLETS (0)" in digest.text
