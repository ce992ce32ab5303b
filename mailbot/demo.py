"""``mailbot demo``: the real service on embedded servers, with sample mail.

Needs only the Python set-up: two pymap IMAP servers (pure Python, one per
mailbox, on loopback) and an aiosmtpd server capturing what we send. Sample
mail goes into both mailboxes (a complete candidature, one without the
letter, one sent to both mailboxes, an auto-reply, a newsletter); the real
intake, filing and reply code runs on it; the applicant then answers the
missing-pieces notice with the letter; the dossiers, every reply and the
digest are printed. Everything lives in a throwaway directory unless
``--keep`` is given.

With ``--web`` the servers stay up afterwards and the back-office is served
on loopback, with a demo staff account, until Ctrl-C (or SIGTERM); the
throwaway directory is removed then.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas
from rich.console import Console
from rich.table import Column, Table

from mailbot import terminal
from mailbot.app import App
from mailbot.config import Config, Rules, load_config
from mailbot.errors import MailbotError
from mailbot.imap import MailboxClient

MAILBOXES = {"n.bataillon": "demo-nb", "d.berteloot": "demo-db"}
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config"


@dataclass
class _Capture:
    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise MailbotError(f"embedded IMAP server did not start on port {port}")


@contextlib.contextmanager
def _imap_servers(work: Path) -> Iterator[dict[str, int]]:
    """One pymap (in-memory) per mailbox; pymap's dict backend has a single user."""
    pymap = Path(sys.executable).parent / "pymap"
    processes, ports = [], {}
    try:
        for user, password in MAILBOXES.items():
            port = _free_port()
            log = (work / f"pymap-{user}.log").open("wb")
            command = [str(pymap), "--host", "127.0.0.1", "--port", str(port), "--no-tls"]
            command += ["dict", "--demo-user", user, "--demo-password", password]
            processes.append((subprocess.Popen(command, stdout=log, stderr=log), log))
            ports[user] = port
        for port in ports.values():
            _wait_port(port)
        yield ports
    finally:
        for process, log in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


# --------------------------------------------------------------------------
# Sample documents


def _filled_dossier(rules: Rules, values: dict[str, str]) -> bytes:
    from mailbot.forms import blank_form_pdf

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(blank_form_pdf(rules))))
    for page in writer.pages:
        writer.update_page_form_field_values(page, values, auto_regenerate=False)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _letter(structure: str, intitule: str, signatory: str) -> bytes:
    from mailbot.forms import FONT, register_fonts

    register_fonts()
    lines = [
        structure,
        "",
        "Monsieur Olivier Gacquerre",
        "Maire de Béthune",
        "Hôtel de Ville, 62400 Béthune",
        "",
        "Béthune, le 10 novembre 2026",
        "",
        "Objet : demande de labellisation « Béthune Smart City »",
        "",
        "Monsieur le Maire,",
        "",
        "Nous avons l'honneur de solliciter le label Béthune Smart City pour notre",
        f"action « {intitule} ». Vous trouverez ci-joint le dossier d'intention.",
        "",
        "Nous vous prions d'agréer, Monsieur le Maire, l'expression de notre haute",
        "considération.",
        "",
        signatory,
    ]
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    canvas.setFont(FONT, 11)
    y = A4[1] - 70
    for line in lines:
        canvas.drawString(60, y, line)
        y -= 16
    canvas.save()
    return buffer.getvalue()


PROJECTS = [
    {
        "intitule": "Potager solidaire du quartier du Perroy",
        "categorie_label": "/realisee",
        "thematique": "Habitat – Environnement",
        "criteres_collaborative": "/Yes",
        "criteres_durable": "/Yes",
        "justification_criteres": "Cultivé par les habitants, en permaculture.",
        "description": "Un jardin partagé de 800 m² ouvert à tous les habitants du Perroy.",
        "lieu": "Square Léon Blum, 62400 Béthune",
        "date_realisation": "15 mars 2026",
        "budget": "12 500 €",
        "porteur_structure": "Association Les Jardins du Perroy",
        "porteur_nature": "/associatif",
        "contact_nom": "Marie Lefebvre",
        "contact_email": "marie.lefebvre@jardins-perroy.example",
        "contact_telephone": "03 21 00 00 00",
    },
    {
        "intitule": "Appli de covoiturage des salariés de la zone Actiparc",
        "categorie_label": "/projet",
        "thematique": "Mobilité – Transports",
        "criteres_collaborative": "/Yes",
        "criteres_innovante": "/Yes",
        "justification_criteres": "Une application ouverte, co-construite avec les salariés.",
        "description": "Mise en relation des salariés pour partager leurs trajets.",
        "lieu": "Zone Actiparc, Béthune",
        "date_realisation": "septembre 2027",
        "maturite": "Prototype testé avec 40 salariés.",
        "porteur_structure": "Covoit'Béthune SAS",
        "porteur_nature": "/prive",
        "contact_nom": "Karim Benali",
        "contact_email": "karim@covoit-bethune.example",
    },
    {
        "intitule": "Fête des voisins connectée du Mont-Liébaut",
        "categorie_label": "/realisee",
        "thematique": "Entraide – Solidarité",
        "criteres_collaborative": "/Yes",
        "justification_criteres": "Organisée par et pour les habitants du quartier.",
        "description": "Une fête de quartier annoncée et organisée par une messagerie locale.",
        "lieu": "Quartier du Mont-Liébaut, Béthune",
        "date_realisation": "21 juin 2026",
        "porteur_structure": "Comité de quartier du Mont-Liébaut",
        "porteur_nature": "/associatif",
        "contact_nom": "Sophie Martin",
        "contact_email": "sophie.martin@mont-liebaut.example",
    },
]


def _mail(*, sender: str, to: list[str], subject: str, body: str, **extra) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="demo.example")
    for name, value in extra.get("headers", {}).items():
        message[name] = value
    if extra.get("in_reply_to"):
        message["In-Reply-To"] = extra["in_reply_to"]
        message["References"] = extra["in_reply_to"]
    message.set_content(body)
    for filename, data in extra.get("attachments", []):
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message


def sample_mail(rules: Rules) -> list[tuple[list[str], EmailMessage]]:
    """(mailboxes, message) pairs for the demo."""
    nb, db = "n.bataillon@ville-bethune.fr", "d.berteloot@ville-bethune.fr"
    potager, covoit, fete = PROJECTS
    return [
        (
            ["n.bataillon"],
            _mail(
                sender="Marie Lefebvre <marie.lefebvre@jardins-perroy.example>",
                to=[nb],
                subject="Candidature au label Béthune Smart City",
                body="Bonjour,\n\nVeuillez trouver ci-joint notre dossier d'intention et le "
                "courrier adressé à Monsieur le Maire.\n\nMarie Lefebvre",
                attachments=[
                    ("dossier_intention.pdf", _filled_dossier(rules, potager)),
                    (
                        "courrier_maire.pdf",
                        _letter(potager["porteur_structure"], potager["intitule"], "M. Lefebvre"),
                    ),
                ],
            ),
        ),
        (
            ["d.berteloot"],
            _mail(
                sender="Karim Benali <karim@covoit-bethune.example>",
                to=[db],
                subject="Dossier d'intention label Smart City",
                body="Bonjour,\n\nVoici notre dossier d'intention pour le label.\n\nKarim Benali",
                attachments=[("dossier_covoiturage.pdf", _filled_dossier(rules, covoit))],
            ),
        ),
        (
            ["n.bataillon", "d.berteloot"],
            _mail(
                sender="Sophie Martin <sophie.martin@mont-liebaut.example>",
                to=[nb, db],
                subject="Candidature label Béthune Smart City - Fête des voisins",
                body="Bonjour,\n\nCi-joint notre dossier et notre courrier.\n\nSophie Martin",
                attachments=[
                    ("dossier.pdf", _filled_dossier(rules, fete)),
                    ("lettre.pdf", _letter(fete["porteur_structure"], fete["intitule"], "S. M.")),
                ],
            ),
        ),
        (
            ["n.bataillon"],
            _mail(
                sender="Paul Durand <paul.durand@example.org>",
                to=[nb],
                subject="Réponse automatique : Absent du bureau",
                body="Je suis absent jusqu'au 2 décembre.",
                headers={"Auto-Submitted": "auto-replied"},
            ),
        ),
        (
            ["d.berteloot"],
            _mail(
                sender="La lettre de la Région <newsletter@region.example>",
                to=[db],
                subject="Les actualités de la semaine",
                body="Découvrez les actualités de la région.",
                headers={"List-Id": "<actus.region.example>", "Precedence": "bulk"},
            ),
        ),
    ]


# --------------------------------------------------------------------------
# The demo


def _append(config: Config, user: str, message: EmailMessage | bytes) -> None:
    """Drop ``message`` into ``user``'s INBOX, unread, as a sender's server would."""
    raw = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP_POLICY)
    with MailboxClient(config.settings.mailbox(user), MAILBOXES[user]) as client:
        client.append(raw, "INBOX", flags=())


# The back-office of ``--web`` listens here unless told otherwise (as ``mailbot web``).
DEMO_WEB_PORT = 8080
DEMO_LOGIN = "demo"


def run_demo(
    *,
    keep: bool = False,
    console: Console | None = None,
    web: bool = False,
    port: int | None = None,
) -> Path | None:
    console = console or Console(highlight=False)
    work = Path(tempfile.mkdtemp(prefix="mailbot-demo-"))
    config_dir = work / "config"
    shutil.copytree(SHIPPED_CONFIG, config_dir)
    capture = _Capture()
    smtp_port = _free_port()
    controller = Controller(capture, hostname="127.0.0.1", port=smtp_port)
    saved_env = dict(os.environ)
    app = None
    try:
        with _imap_servers(work) as ports:
            controller.start()
            env = {
                "MAILBOT_SERVICE__DEMO_MODE": "true",
                "MAILBOT_DATABASE__URL": f"sqlite:///{work / 'var' / 'mailbot.sqlite3'}",
                "MAILBOT_STORAGE__BLOB_DIR": str(work / "var" / "blobs"),
                "MAILBOT_SMTP__HOST": "127.0.0.1",
                "MAILBOT_SMTP__PORT": str(smtp_port),
                "MAILBOT_SMTP__SECURITY": "none",
                "MAILBOT_SMTP__USERNAME": "",
                "MAILBOT_SMTP_PASSWORD": "demo",
                # The sample mail carries no Authentication-Results: answer it.
                "MAILBOT_REPLIES__AUTH_POLICY": "reply_unless_fail",
            }
            for index, user in enumerate(MAILBOXES):
                env[f"MAILBOT_MAILBOXES__{index}__HOST"] = "127.0.0.1"
                env[f"MAILBOT_MAILBOXES__{index}__PORT"] = str(ports[user])
                env[f"MAILBOT_MAILBOXES__{index}__SECURITY"] = "none"
                env[f"MAILBOT_MAILBOXES__{index}__USERNAME"] = user
            os.environ.update(env)
            config = load_config(config_dir)
            for mailbox in config.settings.mailboxes:
                os.environ[mailbox.password_env] = MAILBOXES[mailbox.name]
            app = App(str(config_dir))
            rules = config.rules
            _step(console, "1. Courrier d'exemple déposé dans les deux boîtes")
            for boxes, message in sample_mail(rules):
                for user in boxes:
                    _append(config, user, message)
                console.print(f"   {', '.join(boxes)} ← « {message['Subject']} »", markup=False)
            _step(console, "2. Relève des boîtes et envoi des réponses (code réel du service)")
            _poll_and_send(app, console)
            notice = next(
                (m for m in _captured(capture) if "pièces manquantes" in str(m["Subject"])), None
            )
            if notice is not None:
                _step(
                    console, "3. Le porteur répond à l'avis de pièces manquantes avec le courrier"
                )
                covoit = PROJECTS[1]
                answer = _mail(
                    sender="Karim Benali <karim@covoit-bethune.example>",
                    to=["d.berteloot@ville-bethune.fr"],
                    subject="RE: " + str(notice["Subject"]),
                    body="Bonjour, voici le courrier demandé.\n\nKarim Benali",
                    in_reply_to=str(notice["Message-ID"]).strip(),
                    attachments=[
                        (
                            "courrier.pdf",
                            _letter(covoit["porteur_structure"], covoit["intitule"], "K. Benali"),
                        )
                    ],
                )
                _append(config, "d.berteloot", answer)
                _poll_and_send(app, console)
            _show(app, capture, console)
            if web:
                _serve_back_office(app, console, port=port)
            else:
                console.print(
                    "\nPour parcourir ces données dans le back-office : "
                    "mailbot demo --web (puis ouvrir l'adresse affichée dans un navigateur).",
                    markup=False,
                )
    finally:
        with contextlib.suppress(Exception):
            controller.stop()
        if app is not None:
            app.close()
        os.environ.clear()
        os.environ.update(saved_env)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if keep:
        console.print(f"\nDonnées conservées dans {work} (config : {config_dir})", markup=False)
        return work
    return None


def _serve_back_office(app: App, console: Console, *, port: int | None) -> None:
    """Serve the back-office over the demo data until Ctrl-C or SIGTERM."""
    import secrets
    import signal

    from mailbot.staff import add_staff
    from mailbot.web.server import serve

    password = secrets.token_urlsafe(12)
    add_staff(
        app, login=DEMO_LOGIN, display_name="Démonstration", password=password, actor="system:demo"
    )
    if port is None:
        port = DEMO_WEB_PORT if _port_is_free(DEMO_WEB_PORT) else _free_port()
    _step(console, "7. Back-office de démonstration")
    console.print(f"   Adresse : http://127.0.0.1:{port}/", markup=False)
    console.print(f"   Identifiant : {DEMO_LOGIN}   Mot de passe : {password}", markup=False)
    console.print(
        "   Ctrl-C pour arrêter (les données de démonstration sont alors effacées,", markup=False
    )
    console.print("   sauf avec --keep).", markup=False)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # uvicorn handles SIGINT/SIGTERM while serving, then raises them again once
    # stopped: both must end here, so that the servers and files are cleaned up.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        serve(app, host="127.0.0.1", port=port)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print("\n   Back-office arrêté.", markup=False)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _step(console: Console, title: str) -> None:
    # A style, not markup: the CLI's consoles never read markup (mailbot.terminal).
    console.print()
    console.print(terminal.strong(title))


def _poll_and_send(app: App, console: Console) -> None:
    from mailbot.intake import poll_all
    from mailbot.smtp import send_outbox

    for report in poll_all(app):
        console.print(f"   {report.summary()}", markup=False)
    console.print(f"   {send_outbox(app).summary()}", markup=False)


def _captured(capture: _Capture) -> list[EmailMessage]:
    from email import message_from_bytes
    from email.policy import default

    return [message_from_bytes(raw, policy=default) for raw in capture.messages]


def _show(app: App, capture: _Capture, console: Console) -> None:
    from mailbot import views, wording
    from parsers.checks import describe_missing
    from storage import repositories as repo
    from storage.db import session_scope

    _step(console, "4. Dossiers enregistrés")
    table = Table(Column("Référence", no_wrap=True), "Statut", "Intitulé", "Boîtes", "Manque")
    with session_scope(app.engine) as session:
        for dossier in repo.list_dossiers(session=session):
            d = views.dossier_summary(session, dossier)
            table.add_row(
                d["reference"],
                d["status_label"],
                d["intitule"] or "—",
                ", ".join(d["mailboxes"]),
                "; ".join(describe_missing(d["missing"], rules=app.config.rules)) or "—",
            )
        ignored = repo.list_messages(session=session, status="ignored")
        console.print(table)
        for message in ignored:
            console.print(
                f"   non traité, {wording.why_ignored(message)} : "
                f"« {message.subject} » de {message.sender}",
                markup=False,
            )
    _step(console, "5. Réponses envoyées aux porteurs")
    for message in _captured(capture):
        body = message.get_body(preferencelist=("plain",))
        first = [line for line in body.get_content().splitlines() if line.strip()][:4]
        console.print(f"\n   À : {message['To']}\n   Objet : {message['Subject']}", markup=False)
        for line in first:
            console.print(f"   │ {line}", markup=False)
    _step(console, "6. Récapitulatif quotidien pour le service")
    try:
        from mailbot.digest import print_digest
    except ImportError:
        console.print("   (le récapitulatif n'est pas encore disponible)")
        return
    console.print(print_digest(app), markup=False)
