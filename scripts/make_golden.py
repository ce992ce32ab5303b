"""Rebuild the golden mails in ``tests/golden/`` (the ``.eml`` files only).

Run from the repository root: ``.venv/bin/python scripts/make_golden.py`` (all files) or
``.venv/bin/python scripts/make_golden.py gmail_candidature mutt_candidature`` (some). Then
regenerate the expectations beside them::

    MAILBOT_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

Two kinds of mail:

* composed by real clients installed here: ``mutt`` and ``neomutt`` in batch mode, handing the
  message to a ``sendmail`` stand-in that captures it (they are skipped, with a note, when the
  client is missing; the committed file stays);
* built here, byte by byte, to the MIME shape that Outlook (Microsoft 365), Gmail web, Apple
  Mail, Thunderbird, Postfix, Exim, Exchange Online, Gmail's mailer-daemon, Mailman and a
  newsletter platform produce: their header sets, boundary styles, nesting of
  multipart/alternative and multipart/related, transfer encodings, and the way each writes a
  French subject (RFC 2047) and an accented filename (RFC 2047 or RFC 2231).

Every mail then gets the trace headers the city's MX adds on delivery (Return-Path,
Delivered-To, Received, Authentication-Results), with CRLF line ends as IMAP serves them.
Dossiers and letters are the project's own: ``tests/corpus.py`` builds them from
``config/rules.toml`` and ``mailbot/forms.py`` draws the blank form. Message-IDs, dates and
boundaries are fixed in this file, so a rebuild changes only what a change here or in the
corpus changes (mutt and neomutt pick their own boundaries and dates).
"""

# ruff: noqa: E501  (header and body lines are kept in the shape the clients write them)
from __future__ import annotations

import base64
import os
import quopri
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from email.header import Header
from pathlib import Path
from urllib.parse import quote

from reportlab import rl_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbot.config import load_config  # noqa: E402
from mailbot.forms import blank_form_docx  # noqa: E402
from tests import corpus  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
CITY = "n.bataillon@ville-bethune.fr"
CITY_MX = "mx1.ville-bethune.fr"
SUBJECT = "Candidature au label Béthune Smart City"

# reportlab writes the current time and a random document id unless told not to.
rl_config.invariant = 1
RULES = load_config(ROOT / "config", environ={}).rules
LABELS = corpus.printed_labels(RULES)


# --------------------------------------------------------------------------
# MIME assembly (ASCII text, CRLF added at the end)


def encoded_word(text: str, charset: str = "utf-8", encoding: str = "q") -> str:
    """An RFC 2047 encoded word, as mail clients write accented subjects and names."""
    if encoding == "b":
        return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="
    return Header(text, charset).encode(maxlinelen=998)


def rfc2231(value: str) -> str:
    return "utf-8''" + quote(value, safe="")


def base64_body(data: bytes, width: int = 76) -> str:
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def qp_body(text: str, charset: str = "utf-8") -> str:
    return (
        quopri.encodestring(text.replace("\n", "\r\n").encode(charset)).decode().replace("\r", "")
    )


def part(headers: list[str], body: str) -> str:
    return "\n".join(headers) + "\n\n" + body


def multipart(
    subtype: str,
    boundary: str,
    parts: list[str],
    *,
    headers: tuple[str, ...] = (),
    params: str = "",
) -> str:
    head = [*headers, f'Content-Type: multipart/{subtype};{params}\n\tboundary="{boundary}"']
    body = "".join(f"--{boundary}\n{p}\n" for p in parts) + f"--{boundary}--\n"
    return part(head, body)


def message(headers: list[str], body_part: str) -> str:
    return "\n".join(headers) + "\n" + body_part


def delivered(raw: str | bytes, *, sender: str, date: str, queue_id: str, auth: str) -> bytes:
    """What the city's mailbox holds: MX trace headers on top, CRLF line ends."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    data = data.replace(b"\r\n", b"\n")
    trace = (
        f"Return-Path: <{sender}>\n"
        f"Delivered-To: {CITY}\n"
        f"Received: from relay.example.net (relay.example.net [192.0.2.25])\n"
        f"\tby {CITY_MX} (Postfix) with ESMTPS id {queue_id}\n"
        f"\tfor <{CITY}>; {date}\n"
        f"Authentication-Results: {CITY_MX}; {auth}\n"
    )
    return (trace.encode() + data).replace(b"\n", b"\r\n")


def auth_pass(domain: str) -> str:
    return f"spf=pass smtp.mailfrom={domain};\n\tdkim=pass header.d={domain};\n\tdmarc=pass header.from={domain}"


AUTH_NONE = "spf=none smtp.mailfrom=<>; dkim=none; dmarc=none"


# --------------------------------------------------------------------------
# Documents (small: the .eml files are committed)

POTAGER, COVOITURAGE, FETE, REPAIR, CAPTEURS, BIODECHETS = corpus.PROJECTS


def form_pdf(project: corpus.Project) -> bytes:
    return corpus.form_pdf(RULES, project)


def body_text(project: corpus.Project, greeting: str = "Madame, Monsieur,") -> str:
    return (
        f"{greeting}\n\n"
        "Veuillez trouver ci-joint notre dossier d'intention pour le label Béthune Smart City "
        f"(« {project.expected['intitule']} ») ainsi que le courrier adressé à Monsieur le Maire.\n\n"
        "Nous restons à votre disposition pour tout complément.\n\n"
        "Bien cordialement,\n"
    )


def html_of(text: str) -> str:
    paragraphs = "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    return f'<html><head><meta charset="utf-8"></head><body>{paragraphs}</body></html>'


# --------------------------------------------------------------------------
# Candidatures from each client


def thunderbird_candidature() -> bytes:
    """Thunderbird 115, HTML compose: alternative inside mixed, RFC 2231 filenames, 72-col base64."""
    text = body_text(REPAIR) + "Yannick Morel\nRepair Café de Béthune\n"
    b = "------------0G3d8sNq1CkV0d5TQkEw2RjZ"
    alt = multipart(
        "alternative",
        "------------9xwZ5QhJ4hY1bU3fTqHk0sLp",
        [
            part(
                [
                    "Content-Type: text/plain; charset=UTF-8; format=flowed",
                    "Content-Transfer-Encoding: 8bit",
                ],
                text,
            ),
            part(
                ["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: 8bit"],
                html_of(text),
            ),
        ],
    )
    dossier_name = "Dossier d’intention – Repair Café.pdf"
    dossier = part(
        [
            f'Content-Type: application/pdf; name="{encoded_word(dossier_name)}"',
            f"Content-Disposition: attachment; filename*={rfc2231(dossier_name)}",
            "Content-Transfer-Encoding: base64",
        ],
        base64_body(
            corpus.text_colon_pdf(RULES, REPAIR, labels=LABELS, style="brackets"), width=72
        ),
    )
    letter = part(
        [
            'Content-Type: application/pdf; name="Courrier Monsieur le Maire.pdf"',
            'Content-Disposition: attachment; filename="Courrier Monsieur le Maire.pdf"',
            "Content-Transfer-Encoding: base64",
        ],
        base64_body(corpus.letter_pdf(REPAIR), width=72),
    )
    raw = message(
        [
            "Message-ID: <5c1d2e0a-7f3b-4a8e-9d21-3b6f0e8c4a17@repaircafe-bethune.fr>",
            "Date: Mon, 16 Nov 2026 18:42:07 +0100",
            "MIME-Version: 1.0",
            "User-Agent: Mozilla Thunderbird",
            "Content-Language: fr",
            f"To: {CITY}",
            "From: Yannick Morel <contact@repaircafe-bethune.fr>",
            f"Subject: {encoded_word(SUBJECT + ' – Repair Café')}",
        ],
        multipart("mixed", b, [alt, dossier, letter]),
    )
    return delivered(
        raw,
        sender="contact@repaircafe-bethune.fr",
        date="Mon, 16 Nov 2026 18:42:09 +0100 (CET)",
        queue_id="4Cq7Rm1Z2Vz9sTB",
        auth=auth_pass("repaircafe-bethune.fr"),
    )


def outlook_candidature() -> bytes:
    """Outlook / Microsoft 365 (no winmail.dat): related inside alternative inside mixed,
    quoted-printable bodies, logo image001.png in the signature, RFC 2047 filenames with size
    and dates in Content-Disposition, Thread-Index and X-MS headers."""
    text = body_text(COVOITURAGE, "Bonjour,") + "Sophie Carpentier\nMobilités Partagées Artois\n"
    html = (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        '<meta name="Generator" content="Microsoft Word 15 (filtered medium)"></head>'
        '<body lang="FR"><div class="WordSection1">'
        + "".join(f'<p class="MsoNormal">{p}</p>' for p in text.split("\n\n"))
        + '<p class="MsoNormal"><img width="120" height="40" src="cid:image001.png@01DB3A2F.5E4C1B90"></p>'
        "</div></body></html>"
    )
    logo = corpus.logo()
    related = multipart(
        "related",
        "_004_AM0PR09MB4210C8E2B1F4D6A5E93D0C1BA27AMAM0PR09MB4210eurp_",
        [
            part(
                [
                    'Content-Type: text/html; charset="iso-8859-1"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body(html, "iso-8859-1"),
            ),
            part(
                [
                    'Content-Type: image/png; name="image001.png"',
                    "Content-Description: image001.png",
                    f'Content-Disposition: inline; filename="image001.png"; size={len(logo)};\n'
                    '\tcreation-date="Tue, 17 Nov 2026 08:15:31 GMT";\n'
                    '\tmodification-date="Tue, 17 Nov 2026 08:15:31 GMT"',
                    "Content-ID: <image001.png@01DB3A2F.5E4C1B90>",
                    "Content-Transfer-Encoding: base64",
                ],
                base64_body(logo),
            ),
        ],
        params='\n\ttype="text/html";',
    )
    alternative = multipart(
        "alternative",
        "_000_AM0PR09MB4210C8E2B1F4D6A5E93D0C1BA27AMAM0PR09MB4210eurp_",
        [
            part(
                [
                    'Content-Type: text/plain; charset="iso-8859-1"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body(text, "iso-8859-1"),
            ),
            related,
        ],
    )

    def office_attachment(name: str, data: bytes, mime: str) -> str:
        return part(
            [
                f'Content-Type: {mime}; name="{encoded_word(name, "iso-8859-1")}"',
                f"Content-Description: {encoded_word(name, 'iso-8859-1')}",
                f'Content-Disposition: attachment;\n\tfilename="{encoded_word(name, "iso-8859-1")}"; size={len(data)};\n'
                '\tcreation-date="Tue, 17 Nov 2026 08:14:02 GMT";\n'
                '\tmodification-date="Tue, 17 Nov 2026 08:15:31 GMT"',
                "Content-Transfer-Encoding: base64",
            ],
            base64_body(data),
        )

    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    dossier = office_attachment(
        "Dossier d'intention - Covoiturage solidaire.docx",
        corpus.docx_table(RULES, COVOITURAGE, labels=LABELS, style="glyph"),
        docx,
    )
    letter = office_attachment("Lettre à M. le Maire.docx", corpus.letter_docx(COVOITURAGE), docx)
    raw = message(
        [
            "From: Sophie Carpentier <s.carpentier@mobilites-artois.fr>",
            f'To: "{CITY}" <{CITY}>',
            f"Subject: {encoded_word(SUBJECT, 'iso-8859-1')}",
            f"Thread-Topic: {encoded_word(SUBJECT, 'iso-8859-1')}",
            "Thread-Index: AdtJ+xQ2bS8lV0c7Tq6eM4Kf2nE5Qg==",
            "Date: Tue, 17 Nov 2026 08:15:31 +0000",
            "Message-ID:\n <AM0PR09MB4210C8E2B1F4D6A5E93D0C1BA27A@AM0PR09MB4210.eurprd09.prod.outlook.com>",
            "Accept-Language: fr-FR, en-US",
            "Content-Language: fr-FR",
            "X-MS-Has-Attach: yes",
            "X-MS-TNEF-Correlator:",
            "msip_labels:",
            "MIME-Version: 1.0",
        ],
        multipart(
            "mixed",
            "_005_AM0PR09MB4210C8E2B1F4D6A5E93D0C1BA27AMAM0PR09MB4210eurp_",
            [alternative, dossier, letter],
        ),
    )
    return delivered(
        raw,
        sender="s.carpentier@mobilites-artois.fr",
        date="Tue, 17 Nov 2026 09:15:36 +0100 (CET)",
        queue_id="4Cqf2K0Hb8z9sTC",
        auth=auth_pass("mobilites-artois.fr"),
    )


def gmail_body(text: str, boundary: str) -> str:
    return multipart(
        "alternative",
        boundary,
        [
            part(
                [
                    'Content-Type: text/plain; charset="UTF-8"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body(text),
            ),
            part(
                [
                    'Content-Type: text/html; charset="UTF-8"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body('<div dir="ltr">' + text.replace("\n", "<br>") + "</div>"),
            ),
        ],
    )


def gmail_attachment(name: str, data: bytes, mime: str, attachment_id: str) -> str:
    quoted = encoded_word(name, encoding="b") if not name.isascii() else name
    return part(
        [
            f'Content-Type: {mime}; name="{quoted}"',
            f'Content-Disposition: attachment; filename="{quoted}"',
            "Content-Transfer-Encoding: base64",
            f"Content-ID: <{attachment_id}>",
            f"X-Attachment-Id: {attachment_id}",
        ],
        base64_body(data),
    )


def gmail_mail(
    *,
    sender: str,
    subject: str,
    text: str,
    attachments: list[str],
    stamp: str,
    message_id: str,
    extra: tuple[str, ...] = (),
    date: str = "Wed, 18 Nov 2026 14:03:22 +0100",
    body: str | None = None,
) -> bytes:
    """A Gmail-web message; ``body`` replaces the usual text+html alternative when given."""
    alt = body if body is not None else gmail_body(text, f"000000000000{stamp}b1")
    body = multipart("mixed", f"000000000000{stamp}b3", [alt, *attachments]) if attachments else alt
    raw = message(
        [
            "MIME-Version: 1.0",
            *extra,
            f"From: {sender}",
            f"Date: {date}",
            f"Message-ID: <{message_id}>",
            f"Subject: {encoded_word(subject, 'UTF-8')}",
            f"To: {CITY}",
        ],
        body,
    )
    address = sender.split("<")[-1].rstrip(">")
    return delivered(
        raw,
        sender=address,
        date=date + " (CET)",
        queue_id=f"4Cr{stamp[:10]}",
        auth=auth_pass("gmail.com"),
    )


def gmail_candidature() -> bytes:
    """Gmail web: RFC 2047 (B) filenames in quoted parameters, Content-ID and X-Attachment-Id."""
    return gmail_mail(
        sender="Camille Dufour <camille.dufour.bethune@gmail.com>",
        subject=SUBJECT + " : fête des voisins connectée",
        text=body_text(FETE, "Bonjour,") + "Camille Dufour\nComité des fêtes du Mont-Liébaut\n",
        attachments=[
            gmail_attachment(
                "Dossier intention Fête des voisins.pdf",
                corpus.remade_form_pdf(RULES, FETE, tooltips=True),
                "application/pdf",
                "f_lxk2q1a80",
            ),
            gmail_attachment(
                "lettre maire.pdf", corpus.letter_pdf(FETE), "application/pdf", "f_lxk2q1a91"
            ),
        ],
        stamp="7c1e4b0622d9a1",
        message_id="CAFx8Q3p7M1n2Rz-kVb0d_Wq5Y9cG4tH2uJjLmN0pQrS7tUvW+g@mail.gmail.com",
    )


def gmail_candidature_missing_letter() -> bytes:
    """Gmail web again, only the dossier: the letter to the mayor is missing."""
    return gmail_mail(
        sender="Marie Lefebvre <marie.lefebvre.perroy@gmail.com>",
        subject="Dossier d'intention – Potager solidaire du Perroy",
        text=(
            "Bonjour,\n\nVoici notre dossier d'intention pour le label Béthune Smart City.\n\n"
            "Bonne journée,\nMarie Lefebvre\n"
        ),
        attachments=[
            gmail_attachment(
                "dossier_intention_potager.pdf", form_pdf(POTAGER), "application/pdf", "f_lxm7d2c10"
            )
        ],
        stamp="3f9a2d1c84e5b7",
        message_id="CAHq2W9z1Lk-4bN7c_Fp3xR8sT0vYe6uJmQ2aZ5dG1hK9oP4iEw@mail.gmail.com",
    )


def gmail_letter_sent_later() -> bytes:
    """Gmail web, a new message (no reference, no reply headers) from the sender of
    ``gmail_candidature_missing_letter`` carrying the missing letter: it belongs to her
    open dossier."""
    return gmail_mail(
        sender="Marie Lefebvre <marie.lefebvre.perroy@gmail.com>",
        subject="Courrier pour Monsieur le Maire",
        text=(
            "Bonjour,\n\nComme demandé, voici le courrier signé pour Monsieur le Maire, "
            "pour notre candidature au label.\n\nMarie Lefebvre\n"
        ),
        attachments=[
            gmail_attachment(
                "courrier signé.pdf", corpus.letter_pdf(POTAGER), "application/pdf", "f_lxq4e8b20"
            )
        ],
        stamp="9d0c3b2a1f4e6d",
        message_id="CAHq2W9z4Pm-7cQ1d_Gr5yS9tU2wZf8vKnR3bA6eH2jL0qS5kFx@mail.gmail.com",
        date="Mon, 23 Nov 2026 17:48:09 +0100",
    )


def apple_mail_candidature() -> bytes:
    """Apple Mail, HTML with attachments: the attachments sit inside the HTML alternative
    (alternative → mixed → html, pdf, html, pdf, html), x-unix-mode and RFC 2231 names."""
    text = body_text(CAPTEURS) + "Thomas Lenglet\nFabLab Béthune\n"
    pdf_name = "Dossier d’intention capteurs.docx"
    letter_name = "Lettre à Monsieur le Maire.pdf"
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

    def apple_attachment(name: str, data: bytes, mime: str) -> str:
        return part(
            [
                "Content-Disposition: attachment;",
                f"\tfilename*={rfc2231(name)}",
                f"Content-Type: {mime};",
                "\tx-unix-mode=0644;",
                f"\tname*={rfc2231(name)}",
                "Content-Transfer-Encoding: base64",
            ],
            base64_body(data),
        )

    def html_chunk(html: str) -> str:
        return part(
            [
                "Content-Transfer-Encoding: quoted-printable",
                "Content-Type: text/html;\n\tcharset=utf-8",
            ],
            qp_body(html),
        )

    inner = multipart(
        "mixed",
        "Apple-Mail=_6B0E5A1C-9F3D-4E7A-8C21-D4F0B9A3E612",
        [
            html_chunk(f"<html><head></head><body>{html_of(text)}<br></body></html>"),
            apple_attachment(pdf_name, corpus.docx_content_controls(RULES, CAPTEURS), docx),
            html_chunk("<html><head></head><body><br></body></html>"),
            apple_attachment(letter_name, corpus.letter_pdf(CAPTEURS), "application/pdf"),
            html_chunk("<html><head></head><body><div><br></div></body></html>"),
        ],
    )
    outer = multipart(
        "alternative",
        "Apple-Mail=_2D8C4F71-0A6B-43E9-B5C2-7E19F3D8A045",
        [
            part(
                [
                    "Content-Transfer-Encoding: quoted-printable",
                    "Content-Type: text/plain;\n\tcharset=utf-8",
                ],
                qp_body(text),
            ),
            inner,
        ],
    )
    raw = message(
        [
            "From: Thomas Lenglet <t.lenglet@icloud.com>",
            'Content-Type: multipart/alternative;\n\tboundary="Apple-Mail=_2D8C4F71-0A6B-43E9-B5C2-7E19F3D8A045"',
            "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))",
            f"Subject: {encoded_word(SUBJECT + ' – capteurs de qualité de l’air')}",
            "Message-Id: <8F2E6C1A-4B7D-4D93-A0E5-1C9B3F7D2E84@icloud.com>",
            "Date: Thu, 19 Nov 2026 21:37:45 +0100",
            f"To: {CITY}",
            "X-Mailer: Apple Mail (2.3826.200.121)",
        ],
        outer.split("\n", 2)[2],  # the outer headers are the message's own
    )
    return delivered(
        raw,
        sender="t.lenglet@icloud.com",
        date="Thu, 19 Nov 2026 21:37:48 +0100 (CET)",
        queue_id="4Cs1Lq7Wn3z9sTD",
        auth=auth_pass("icloud.com"),
    )


# --------------------------------------------------------------------------
# Real clients: mutt and neomutt in batch mode, captured by a sendmail stand-in


def composed_by(
    client: str, *, sender: str, subject: str, body: str, files: dict[str, bytes], message_id: str
) -> bytes | None:
    if shutil.which(client) is None:
        print(f"  {client} is not installed: keeping the committed file", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        capture = folder / "captured.eml"
        sendmail = folder / "sendmail"
        sendmail.write_text(f'#!/bin/sh\ncat > "{capture}"\n')
        sendmail.chmod(0o755)
        paths = []
        for name, data in files.items():
            (folder / name).write_bytes(data)
            paths.append(str(folder / name))
        (folder / "body.txt").write_text(body, encoding="utf-8")
        settings = "; ".join(
            [
                f'set sendmail="{sendmail}"',
                f'set from="{sender}"',
                "set use_from=yes",
                "set charset=utf-8",
                'set send_charset="us-ascii:iso-8859-1:utf-8"',
                "set hostname=mutt.invalid",
                "set copy=no",
                'set record=""',
                f"my_hdr Message-ID: <{message_id}>",
            ]
        )
        env = {
            **os.environ,
            "HOME": tmp,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TZ": "Europe/Paris",
        }
        with (folder / "body.txt").open("rb") as stdin:
            subprocess.run(
                [
                    client,
                    "-n",
                    "-F",
                    "/dev/null",
                    "-e",
                    settings,
                    "-s",
                    subject,
                    "-a",
                    *paths,
                    "--",
                    CITY,
                ],
                stdin=stdin,
                env=env,
                check=True,
                timeout=60,
                cwd=tmp,
            )
        return capture.read_bytes()


def mutt_candidature() -> bytes | None:
    """Mutt 2: 8bit body in ISO-8859-1, RFC 2231 filenames, odd RFC 2047 splits in the subject."""
    raw = composed_by(
        "mutt",
        sender="Jeanne Dupré <jeanne.dupre@biodechets-bethune.fr>",
        subject=SUBJECT + " – biodéchets",
        body=body_text(BIODECHETS, "Bonjour,") + "Jeanne Dupré\n",
        files={
            "dossier d'intention.pdf": corpus.text_table_pdf(
                RULES, BIODECHETS, labels=LABELS, style="glyph"
            ),
            "courrier à M. le Maire.pdf": corpus.letter_pdf(BIODECHETS),
        },
        message_id="20261120093012.GA4121@biodechets-bethune.fr",
    )
    if raw is None:
        return None
    return delivered(
        raw,
        sender="jeanne.dupre@biodechets-bethune.fr",
        date="Fri, 20 Nov 2026 09:30:14 +0100 (CET)",
        queue_id="4Ct2Mr8Xp4z9sTE",
        auth=auth_pass("biodechets-bethune.fr"),
    )


def neomutt_candidature() -> bytes | None:
    """NeoMutt: the project's own blank DOCX form filled as a table (mailbot/forms.py) and the
    letter as DOCX, for the potager project."""
    raw = composed_by(
        "neomutt",
        sender="Marie Lefebvre <marie.lefebvre@jardins-perroy.fr>",
        subject="Candidature label smart city : potager solidaire",
        body=body_text(POTAGER, "Bonjour,") + "Marie Lefebvre\nAssociation des jardins du Perroy\n",
        files={
            "dossier_intention_potager.pdf": form_pdf(POTAGER),
            "lettre_maire.docx": corpus.letter_docx(POTAGER),
        },
        message_id="20261120101544.B7713@jardins-perroy.fr",
    )
    if raw is None:
        return None
    return delivered(
        raw,
        sender="marie.lefebvre@jardins-perroy.fr",
        date="Fri, 20 Nov 2026 10:15:46 +0100 (CET)",
        queue_id="4Ct3Nq2Yk5z9sTF",
        auth=auth_pass("jardins-perroy.fr"),
    )


def thunderbird_blank_form_question() -> bytes:
    """Thunderbird: someone sends back the blank DOCX form (``mailbot template``) with a
    question, before applying; no letter, nothing filled in."""
    text = (
        "Bonjour,\n\nNous souhaitons candidater au label Béthune Smart City. Le formulaire "
        "ci-joint est-il bien le dossier d'intention à remplir ? Faut-il un courrier en plus ?\n\n"
        "Merci d'avance,\nLéa Martin\n"
    )
    b = "------------Nd2kX4uQwT7pB0fY9sLr3VhC"
    name = "Dossier d’intention (vierge).docx"
    raw = message(
        [
            "Message-ID: <b7e0c9d4-2a1f-4f6e-8b3c-5d9a7e1f0c22@orange.fr>",
            "Date: Sat, 21 Nov 2026 11:02:55 +0100",
            "MIME-Version: 1.0",
            "User-Agent: Mozilla Thunderbird",
            "Content-Language: fr",
            f"To: {CITY}",
            "From: =?UTF-8?Q?L=C3=A9a_Martin?= <lea.martin62@orange.fr>",
            "Subject: Question sur le dossier d'intention",
        ],
        multipart(
            "mixed",
            b,
            [
                part(
                    [
                        "Content-Type: text/plain; charset=UTF-8; format=flowed",
                        "Content-Transfer-Encoding: 8bit",
                    ],
                    text,
                ),
                part(
                    [
                        "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;",
                        f' name="{encoded_word(name)}"',
                        f"Content-Disposition: attachment; filename*={rfc2231(name)}",
                        "Content-Transfer-Encoding: base64",
                    ],
                    base64_body(blank_form_docx(RULES), width=72),
                ),
            ],
        ),
    )
    return delivered(
        raw,
        sender="lea.martin62@orange.fr",
        date="Sat, 21 Nov 2026 11:02:57 +0100 (CET)",
        queue_id="4Ct9Pz3Aa6z9sTG",
        auth=auth_pass("orange.fr"),
    )


# --------------------------------------------------------------------------
# Follow-ups and forwards

MISSING_PIECES_ID = "<mailbot.BSC-2026-0007.missing_pieces.9e4d2b16@ville-bethune.fr>"


def thunderbird_follow_up() -> bytes:
    """Thunderbird reply to our « pièces manquantes » mail, reference in the subject, letter attached."""
    text = (
        "Bonjour,\n\nVoici le courrier à Monsieur le Maire qui manquait.\n\nCordialement,\n"
        "Marie Lefebvre\n\nLe 18/11/2026 à 14:05, Service Béthune Smart City a écrit :\n"
        "> Bonjour,\n> Il manque à votre dossier : le courrier officiel adressé à Monsieur le Maire.\n"
    )
    raw = message(
        [
            "Message-ID: <e41b7a90-3c5d-4d8f-a2e6-9f1c0b7d3e58@gmail.com>",
            "Date: Thu, 19 Nov 2026 08:47:12 +0100",
            "MIME-Version: 1.0",
            "User-Agent: Mozilla Thunderbird",
            f"Subject: {encoded_word('Re: [BSC-2026-0007] Votre candidature : pièces manquantes')}",
            "Content-Language: fr",
            f"To: Service =?UTF-8?Q?B=C3=A9thune?= Smart City <{CITY}>",
            f"References: <CAHq2W9z1Lk-4bN7c_Fp3xR8sT0vYe6uJmQ2aZ5dG1hK9oP4iEw@mail.gmail.com>\n {MISSING_PIECES_ID}",
            f"In-Reply-To: {MISSING_PIECES_ID}",
            "From: Marie Lefebvre <marie.lefebvre.perroy@gmail.com>",
        ],
        multipart(
            "mixed",
            "------------k3Bv7PqZ1xW9mN5cT2yH8dLf",
            [
                part(
                    [
                        "Content-Type: text/plain; charset=UTF-8; format=flowed",
                        "Content-Transfer-Encoding: 8bit",
                    ],
                    text,
                ),
                part(
                    [
                        'Content-Type: application/pdf; name="courrier_maire.pdf"',
                        'Content-Disposition: attachment; filename="courrier_maire.pdf"',
                        "Content-Transfer-Encoding: base64",
                    ],
                    base64_body(corpus.letter_pdf(POTAGER), width=72),
                ),
            ],
        ),
    )
    return delivered(
        raw,
        sender="marie.lefebvre.perroy@gmail.com",
        date="Thu, 19 Nov 2026 08:47:15 +0100 (CET)",
        queue_id="4Cs0Ab1Cd2z9sTH",
        auth=auth_pass("gmail.com"),
    )


def gmail_follow_up_without_reference() -> bytes:
    """Gmail reply whose subject lost the reference: only In-Reply-To/References tie it to us."""
    return gmail_mail(
        sender="Camille Dufour <camille.dufour.bethune@gmail.com>",
        subject="Re: Votre candidature",
        text=(
            "Bonjour,\n\nPouvez-vous me confirmer la date du jury ?\n\nMerci,\nCamille\n\n"
            "Le mer. 18 nov. 2026 à 14:10, Service Béthune Smart City <n.bataillon@ville-bethune.fr> a écrit :\n"
            "> Bonjour,\n> Nous avons bien reçu votre dossier.\n"
        ),
        attachments=[],
        stamp="5b2e9f0d17c3a8",
        message_id="CAFx8Q3p9K2m4Tz-rXb1e_Hq7Y0cL5sJ3vKkNnP1qRsT8uVwX+h@mail.gmail.com",
        extra=(
            "References: <CAFx8Q3p7M1n2Rz-kVb0d_Wq5Y9cG4tH2uJjLmN0pQrS7tUvW+g@mail.gmail.com>\n"
            " <mailbot.BSC-2026-0012.acknowledgement.8b1d3e07@ville-bethune.fr>",
            "In-Reply-To: <mailbot.BSC-2026-0012.acknowledgement.8b1d3e07@ville-bethune.fr>",
        ),
        date="Fri, 20 Nov 2026 16:20:41 +0100",
    )


def outlook_forwarded_candidature() -> bytes:
    """A colleague at the town hall forwards a candidature from Outlook (« TR : », inline
    forward header block, the applicant's attachments carried over)."""
    text = (
        "Bonjour Nicolas,\n\nCandidature reçue sur l'adresse de l'accueil, je te la transfère.\n\n"
        "Bonne journée,\nAccueil Mairie\n\n"
        "De : Karim Benali <k.benali@cyclo-bethune.fr>\n"
        "Envoyé : lundi 23 novembre 2026 10:12\n"
        "À : accueil@ville-bethune.fr\n"
        "Objet : Candidature label Smart City - atelier vélo\n\n"
        "Bonjour,\nVeuillez trouver notre dossier d'intention et le courrier à Monsieur le Maire.\n"
        "Karim Benali\n"
    )
    project = REPAIR
    data_d = corpus.text_next_line_pdf(RULES, project, labels=LABELS)
    data_l = corpus.letter_pdf(project)

    def att(name: str, data: bytes) -> str:
        return part(
            [
                f'Content-Type: application/pdf; name="{name}"',
                f"Content-Description: {name}",
                f'Content-Disposition: attachment; filename="{name}"; size={len(data)};\n'
                '\tcreation-date="Mon, 23 Nov 2026 10:31:50 GMT";\n'
                '\tmodification-date="Mon, 23 Nov 2026 10:31:50 GMT"',
                "Content-Transfer-Encoding: base64",
            ],
            base64_body(data),
        )

    alt = multipart(
        "alternative",
        "_000_PR1P193MB1578A0B2C4E6F8091A3B5C7D9E1FPR1P193MB1578EURP_",
        [
            part(
                ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: base64"],
                base64_body(text.encode()),
            ),
            part(
                ['Content-Type: text/html; charset="utf-8"', "Content-Transfer-Encoding: base64"],
                base64_body(html_of(text).encode()),
            ),
        ],
    )
    raw = message(
        [
            "From: Accueil Mairie <accueil@ville-bethune.fr>",
            f"To: Nicolas Bataillon <{CITY}>",
            f"Subject: {encoded_word('TR: Candidature label Smart City - atelier vélo')}",
            "Thread-Topic: Candidature label Smart City - atelier =?utf-8?Q?v=C3=A9lo?=",
            "Thread-Index: AQHbPd2kS7xW3nR4ZUeY0fJ5vW8q1Q==",
            "Date: Mon, 23 Nov 2026 10:31:50 +0000",
            "Message-ID:\n <PR1P193MB1578A0B2C4E6F8091A3B5C7D9E1F@PR1P193MB1578.EURP193.PROD.OUTLOOK.COM>",
            "References: <0a1b2c3d-4e5f-6789-abcd-ef0123456789@cyclo-bethune.fr>",
            "In-Reply-To: <0a1b2c3d-4e5f-6789-abcd-ef0123456789@cyclo-bethune.fr>",
            "Accept-Language: fr-FR, en-US",
            "Content-Language: fr-FR",
            "X-MS-Has-Attach: yes",
            "X-MS-TNEF-Correlator:",
            "MIME-Version: 1.0",
        ],
        multipart(
            "mixed",
            "_004_PR1P193MB1578A0B2C4E6F8091A3B5C7D9E1FPR1P193MB1578EURP_",
            [
                alt,
                att("Dossier intention atelier velo.pdf", data_d),
                att("Courrier Maire.pdf", data_l),
            ],
        ),
    )
    return delivered(
        raw,
        sender="accueil@ville-bethune.fr",
        date="Mon, 23 Nov 2026 11:31:55 +0100 (CET)",
        queue_id="4Cv5Rt6Uv7z9sTJ",
        auth=auth_pass("ville-bethune.fr"),
    )


def thunderbird_forward_as_attachment() -> bytes:
    """Thunderbird « Forward as attachment »: the applicant resends their own earlier mail
    (with its dossier and letter) as a message/rfc822 part named after its subject."""
    original = gmail_candidature().decode("ascii")
    # The applicant's own copy: without the trace our MX added on delivery.
    original = original[original.index("MIME-Version: 1.0\r\n") :]
    text = "Bonjour,\n\nJe n'ai pas eu d'accusé de réception, je renvoie ma candidature.\n\nCamille Dufour\n"
    name = "Candidature au label Béthune Smart City.eml"
    raw = message(
        [
            "Message-ID: <9d3f1e27-6b8a-4c50-a1d2-7e4f9c0b5a36@gmail.com>",
            "Date: Wed, 25 Nov 2026 19:05:33 +0100",
            "MIME-Version: 1.0",
            "User-Agent: Mozilla Thunderbird",
            "Content-Language: fr",
            f"To: {CITY}",
            "From: Camille Dufour <camille.dufour.bethune@gmail.com>",
            f"Subject: {encoded_word('Fwd: ' + SUBJECT + ' : fête des voisins connectée')}",
        ],
        multipart(
            "mixed",
            "------------Zq8Vb3Nw5Lk1Xj7Ht4Pd0RcF",
            [
                part(
                    [
                        "Content-Type: text/plain; charset=UTF-8; format=flowed",
                        "Content-Transfer-Encoding: 8bit",
                    ],
                    text,
                ),
                part(
                    [
                        f'Content-Type: message/rfc822; charset=UTF-8; name="{encoded_word(name)}"',
                        f"Content-Disposition: attachment; filename*={rfc2231(name)}",
                    ],
                    original.replace("\r\n", "\n"),
                ),
            ],
        ),
    )
    return delivered(
        raw,
        sender="camille.dufour.bethune@gmail.com",
        date="Wed, 25 Nov 2026 19:05:36 +0100 (CET)",
        queue_id="4Cw6Su7Vw8z9sTK",
        auth=auth_pass("gmail.com"),
    )


# --------------------------------------------------------------------------
# Robots: lists, newsletters, bounces, vacation replies, invitations

ORIGINAL_HEADERS = (
    "From: Service =?utf-8?q?B=C3=A9thune?= Smart City <n.bataillon@ville-bethune.fr>\n"
    "To: marie.lefebvre@jardins-perroy.fr\n"
    "Subject: [BSC-2026-0007] =?utf-8?q?Accus=C3=A9?= de =?utf-8?q?r=C3=A9ception?= de votre candidature\n"
    "Message-ID: <mailbot.BSC-2026-0007.acknowledgement.4f2a9c01@ville-bethune.fr>\n"
    "Date: Tue, 17 Nov 2026 08:30:01 +0100\n"
    "Auto-Submitted: auto-replied\n"
    "MIME-Version: 1.0\n"
    'Content-Type: text/plain; charset="utf-8"\n'
    "Content-Transfer-Encoding: 8bit\n"
)
ORIGINAL_BODY = (
    "Bonjour,\n\nNous avons bien reçu votre dossier d'intention pour le label Béthune Smart City.\n"
    "Référence : BSC-2026-0007\n"
)


def _dsn_status(reporting: str, arrival: str, recipient: str, status: str, diagnostic: str) -> str:
    return part(
        ["Content-Description: Delivery report", "Content-Type: message/delivery-status"],
        f"Reporting-MTA: dns; {reporting}\nArrival-Date: {arrival}\n\n"
        f"Final-Recipient: rfc822; {recipient}\nOriginal-Recipient: rfc822;{recipient}\n"
        f"Action: failed\nStatus: {status}\nDiagnostic-Code: {diagnostic}\n",
    )


def postfix_bounce() -> bytes:
    """Postfix non-delivery report of our acknowledgement: report → text, delivery-status,
    text/rfc822-headers (Postfix's default when the bounce size limit is small)."""
    b = "8B1C4E2A0F.1763362210/mail.jardins-perroy.fr"
    raw = message(
        [
            "Date: Tue, 17 Nov 2026 08:30:10 +0100 (CET)",
            "From: MAILER-DAEMON@mail.jardins-perroy.fr (Mail Delivery System)",
            "Subject: Undelivered Mail Returned to Sender",
            f"To: {CITY}",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Message-Id: <20261117073010.8B1C4E2A0F@mail.jardins-perroy.fr>",
        ],
        multipart(
            "report; report-type=delivery-status",
            b,
            [
                part(
                    [
                        "Content-Description: Notification",
                        "Content-Type: text/plain; charset=us-ascii",
                    ],
                    "This is the mail system at host mail.jardins-perroy.fr.\n\n"
                    "I'm sorry to have to inform you that your message could not\n"
                    "be delivered to one or more recipients. It's attached below.\n\n"
                    "                   The mail system\n\n"
                    "<marie.lefebvre@jardins-perroy.fr>: mailbox is full\n",
                ),
                _dsn_status(
                    "mail.jardins-perroy.fr",
                    "Tue, 17 Nov 2026 08:30:03 +0100 (CET)",
                    "marie.lefebvre@jardins-perroy.fr",
                    "5.2.2",
                    "x-unix; maildir delivery failed: Mailbox full",
                ),
                part(
                    [
                        "Content-Description: Undelivered Message Headers",
                        "Content-Type: text/rfc822-headers",
                    ],
                    ORIGINAL_HEADERS,
                ),
            ],
        ),
    )
    return delivered(
        raw,
        sender="",
        date="Tue, 17 Nov 2026 08:30:11 +0100 (CET)",
        queue_id="4Cqg3L1Ic9z9sTL",
        auth=AUTH_NONE,
    )


def exim_bounce() -> bytes:
    """Exim 4 bounce: multipart/report with the whole original message, X-Failed-Recipients."""
    b = "1763362300-eximdsn-1804289383"
    raw = message(
        [
            "X-Failed-Recipients: k.benali@cyclo-bethune.fr",
            "Auto-Submitted: auto-replied",
            "From: Mail Delivery System <Mailer-Daemon@mx.cyclo-bethune.fr>",
            f"To: {CITY}",
            f"Content-Type: multipart/report; report-type=delivery-status; boundary={b}",
            "MIME-Version: 1.0",
            "Subject: Mail delivery failed: returning message to sender",
            "Message-Id: <E1tCnQ2-0004Xa-5N@mx.cyclo-bethune.fr>",
            "Date: Tue, 17 Nov 2026 08:31:40 +0100",
        ],
        "\n"
        + "".join(
            f"--{b}\n{p}\n"
            for p in [
                part(
                    ["Content-type: text/plain; charset=us-ascii"],
                    "This message was created automatically by mail delivery software.\n\n"
                    "A message that you sent could not be delivered to one or more of its\n"
                    "recipients. This is a permanent error. The following address(es) failed:\n\n"
                    "  k.benali@cyclo-bethune.fr\n    No such user here\n",
                ),
                part(
                    ["Content-type: message/delivery-status"],
                    "Reporting-MTA: dns; mx.cyclo-bethune.fr\n\n"
                    "Action: failed\nFinal-Recipient: rfc822;k.benali@cyclo-bethune.fr\nStatus: 5.0.0\n",
                ),
                part(
                    ["Content-type: message/rfc822"],
                    ORIGINAL_HEADERS.replace(
                        "marie.lefebvre@jardins-perroy.fr", "k.benali@cyclo-bethune.fr"
                    )
                    + "\n"
                    + ORIGINAL_BODY,
                ),
            ]
        )
        + f"--{b}--\n",
    )
    return delivered(
        raw.encode("utf-8"),
        sender="",
        date="Tue, 17 Nov 2026 08:31:41 +0100 (CET)",
        queue_id="4Cqg4M2Jd0z9sTM",
        auth=AUTH_NONE,
    )


def exchange_online_bounce() -> bytes:
    """Exchange Online / Outlook.com NDR in French: report → alternative(text, html),
    delivery-status, text/rfc822-headers; from postmaster, X-MS-Exchange-Message-Is-Ndr."""
    text = (
        "Impossible de remettre le message à ces destinataires ou groupes :\n\n"
        "s.carpentier@mobilites-artois.fr\n"
        "L'adresse e-mail que vous avez entrée est introuvable.\n"
    )
    alt = multipart(
        "alternative",
        "b1_f2c4e6a8-0b1d-4e3f-9a5c-7d8e9f0a1b2c",
        [
            part(
                [
                    'Content-Type: text/plain; charset="utf-8"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body(text),
            ),
            part(
                [
                    'Content-Type: text/html; charset="utf-8"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body(html_of(text)),
            ),
        ],
    )
    status = part(
        ["Content-Type: message/delivery-status"],
        "Reporting-MTA: dns;AM0PR09MB4210.eurprd09.prod.outlook.com\n"
        "Received-From-MTA: dns;mx1.ville-bethune.fr\n"
        "Arrival-Date: Tue, 17 Nov 2026 07:30:05 +0000\n\n"
        "Final-Recipient: rfc822;s.carpentier@mobilites-artois.fr\n"
        "Action: failed\nStatus: 5.1.10\n"
        "Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup\n",
    )
    headers_part = part(
        ["Content-Type: text/rfc822-headers"],
        ORIGINAL_HEADERS.replace(
            "marie.lefebvre@jardins-perroy.fr", "s.carpentier@mobilites-artois.fr"
        ),
    )
    raw = message(
        [
            "From: postmaster@mobilites-artois.fr",
            f"To: {CITY}",
            "Date: Tue, 17 Nov 2026 07:30:06 +0000",
            "Content-Language: fr-FR",
            f"Subject: {encoded_word('Non remis : [BSC-2026-0007] Accusé de réception de votre candidature')}",
            "Message-ID: <a5c3e1f0-2b4d-4f6a-8c9e-0d1b2c3e4f5a@AM0PR09MB4210.eurprd09.prod.outlook.com>",
            "In-Reply-To: <mailbot.BSC-2026-0007.acknowledgement.4f2a9c01@ville-bethune.fr>",
            "References: <mailbot.BSC-2026-0007.acknowledgement.4f2a9c01@ville-bethune.fr>",
            "X-MS-Exchange-Message-Is-Ndr:",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
        ],
        multipart(
            "report; report-type=delivery-status",
            "d4e5f6a7-b8c9-4d0e-a1f2-b3c4d5e6f7a8",
            [alt, status, headers_part],
        ),
    )
    return delivered(
        raw,
        sender="",
        date="Tue, 17 Nov 2026 08:30:07 +0100 (CET)",
        queue_id="4Cqg5N3Ke1z9sTN",
        auth=AUTH_NONE,
    )


def gmail_bounce() -> bytes:
    """Gmail's mailer-daemon: report → related(alternative(text, html), icon.png),
    delivery-status, and the whole original message."""
    text = (
        "** Adresse introuvable **\n\nVotre message n'a pas pu être remis à "
        "camille.dufour.bethune@gmail.com, car l'adresse est introuvable ou ne peut pas recevoir "
        "de messages.\n"
    )
    related = multipart(
        "related",
        "000000000000a91e2f0622d9a1c4",
        [
            gmail_body(text, "000000000000a91e2f0622d9a1c5"),
            part(
                [
                    'Content-Type: image/png; name="icon.png"',
                    'Content-Disposition: attachment; filename="icon.png"',
                    "Content-Transfer-Encoding: base64",
                    "Content-ID: <icon.png>",
                ],
                base64_body(corpus.logo()),
            ),
        ],
    )
    status = part(
        ["Content-Type: message/delivery-status"],
        "Reporting-MTA: dns; googlemail.com\n"
        "Received-From-MTA: dns; n.bataillon@ville-bethune.fr\n"
        "Arrival-Date: Wed, 18 Nov 2026 05:10:02 -0800 (PST)\n"
        "X-Original-Message-ID: <mailbot.BSC-2026-0012.acknowledgement.8b1d3e07@ville-bethune.fr>\n\n"
        "Final-Recipient: rfc822; camille.dufour.bethune@gmail.com\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; The email account that you tried to reach does not exist.\n"
        "Last-Attempt-Date: Wed, 18 Nov 2026 05:10:03 -0800 (PST)\n",
    )
    original = part(
        ["Content-Type: message/rfc822"],
        ORIGINAL_HEADERS.replace(
            "marie.lefebvre@jardins-perroy.fr", "camille.dufour.bethune@gmail.com"
        ).replace(
            "mailbot.BSC-2026-0007.acknowledgement.4f2a9c01",
            "mailbot.BSC-2026-0012.acknowledgement.8b1d3e07",
        )
        + "\n"
        + ORIGINAL_BODY,
    )
    raw = message(
        [
            "MIME-Version: 1.0",
            "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
            f"To: {CITY}",
            "Auto-Submitted: auto-replied",
            "Subject: Delivery Status Notification (Failure)",
            "References: <mailbot.BSC-2026-0012.acknowledgement.8b1d3e07@ville-bethune.fr>",
            "In-Reply-To: <mailbot.BSC-2026-0012.acknowledgement.8b1d3e07@ville-bethune.fr>",
            "X-Failed-Recipients: camille.dufour.bethune@gmail.com",
            "Message-ID: <6735c0e3.050a0220.1b7a2c.0f3d.GMR@mx.google.com>",
            "Date: Wed, 18 Nov 2026 05:10:03 -0800 (PST)",
        ],
        multipart(
            "report; report-type=delivery-status",
            "000000000000a91e2f0622d9a1c3",
            [related, status, original],
        ),
    )
    return delivered(
        raw.encode("utf-8"),
        sender="",
        date="Wed, 18 Nov 2026 14:10:04 +0100 (CET)",
        queue_id="4Cr5Ow4Lf2z9sTP",
        auth=AUTH_NONE,
    )


def sieve_vacation() -> bytes:
    """RFC 3834 vacation reply from a Sieve server (Dovecot Pigeonhole's shape)."""
    raw = message(
        [
            "Message-ID: <dovecot-sieve-1763363000-471-0@mail.jardins-perroy.fr>",
            "Date: Tue, 17 Nov 2026 08:30:09 +0100",
            "X-Sieve: Pigeonhole Sieve 0.5.21",
            "From: <marie.lefebvre@jardins-perroy.fr>",
            f"To: <{CITY}>",
            f"Subject: {encoded_word('Absente jusqu’au 30 novembre')}",
            "In-Reply-To: <mailbot.BSC-2026-0007.acknowledgement.4f2a9c01@ville-bethune.fr>",
            "References: <mailbot.BSC-2026-0007.acknowledgement.4f2a9c01@ville-bethune.fr>",
            "Auto-Submitted: auto-replied (vacation)",
            "Precedence: bulk",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ],
        "\nBonjour,\n\nJe suis absente jusqu'au 30 novembre. Pour le dossier Béthune Smart City, "
        "merci de contacter l'association.\n\nMarie Lefebvre\n",
    )
    return delivered(
        raw,
        sender="",
        date="Tue, 17 Nov 2026 08:30:10 +0100 (CET)",
        queue_id="4Cqg6P4Lf3z9sTQ",
        auth=AUTH_NONE,
    )


def exchange_out_of_office() -> bytes:
    """Exchange (on-premises 2016) out-of-office: no Auto-Submitted, only
    X-Auto-Response-Suppress and the « Réponse automatique » subject; an HTML-only alternative."""
    text = "Bonjour,\n\nJe suis en congés jusqu'au 27 novembre inclus.\n\nSophie Carpentier\n"
    raw = message(
        [
            "From: Sophie Carpentier <s.carpentier@mobilites-artois.fr>",
            f"To: Service =?iso-8859-1?Q?B=E9thune?= Smart City <{CITY}>",
            f"Subject: {encoded_word('Réponse automatique : [BSC-2026-0009] Accusé de réception de votre candidature', 'iso-8859-1')}",
            "Thread-Topic: [BSC-2026-0009] =?iso-8859-1?Q?Accus=E9_de_r=E9ception_de_votre_candidature?=",
            "Thread-Index: AQHbOe7uP1xR2sT3uV4wX5yZ6aB7cA==",
            "Date: Tue, 17 Nov 2026 07:30:15 +0000",
            "Message-ID: <0f6b1c5e9d2a4e8f@EXCH01.mobilites-artois.local>",
            "In-Reply-To: <mailbot.BSC-2026-0009.acknowledgement.2c7e0a55@ville-bethune.fr>",
            "X-MS-Has-Attach:",
            "X-MS-Exchange-Inbox-Rules-Loop: s.carpentier@mobilites-artois.fr",
            "X-MS-TNEF-Correlator:",
            "X-Auto-Response-Suppress: All",
            "Content-Language: fr-FR",
            "MIME-Version: 1.0",
        ],
        multipart(
            "alternative",
            "_000_0f6b1c5e9d2a4e8fEXCH01mobilitesartoislocal_",
            [
                part(
                    [
                        'Content-Type: text/plain; charset="iso-8859-1"',
                        "Content-Transfer-Encoding: quoted-printable",
                    ],
                    qp_body(text, "iso-8859-1"),
                ),
                part(
                    [
                        'Content-Type: text/html; charset="iso-8859-1"',
                        "Content-Transfer-Encoding: quoted-printable",
                    ],
                    qp_body(html_of(text), "iso-8859-1"),
                ),
            ],
        ),
    )
    return delivered(
        raw,
        sender="s.carpentier@mobilites-artois.fr",
        date="Tue, 17 Nov 2026 08:30:16 +0100 (CET)",
        queue_id="4Cqg7Q5Mg4z9sTR",
        auth=auth_pass("mobilites-artois.fr"),
    )


def gmail_vacation() -> bytes:
    """Gmail vacation responder: Auto-Submitted: auto-replied, the subject the user typed."""
    return gmail_mail(
        sender="Camille Dufour <camille.dufour.bethune@gmail.com>",
        subject="Absente du 18 au 22 novembre",
        text="Bonjour,\n\nJe suis en déplacement et lirai vos messages à mon retour.\n\nCamille\n",
        attachments=[],
        stamp="2c4d6e8f0a1b3c",
        message_id="CAFx8Q3o-vac.1763471403000.reply@mail.gmail.com",
        extra=(
            "Auto-Submitted: auto-replied",
            "In-Reply-To: <mailbot.BSC-2026-0012.acknowledgement.8b1d3e07@ville-bethune.fr>",
        ),
        date="Wed, 18 Nov 2026 14:10:03 +0100",
    )


def mailman_digest() -> bytes:
    """Mailman 2 MIME digest of a regional list: mixed → text (contents), multipart/digest of
    message/rfc822 parts, footer; List-* headers, Precedence: list."""
    posts = [
        (
            "Jean Roussel <j.roussel@example.org>",
            "Label Smart City : retour d'expérience",
            "Bonjour à tous,\nNous avons déposé notre dossier d'intention l'an dernier ; le jury est bienveillant.\n",
        ),
        (
            "Anne Petit <anne.petit@example.net>",
            "Re: Label Smart City : retour d'expérience",
            "Merci Jean ! Faut-il joindre un courrier au Maire avec la candidature ?\n",
        ),
    ]
    messages = [
        part(
            ["Content-Type: message/rfc822", "MIME-Version: 1.0"],
            f"Date: Sun, 22 Nov 2026 1{i}:00:00 +0100\nFrom: {who}\nSubject: {encoded_word(subject)}\n"
            f'Message-ID: <post{i}@lists.assos-artois.example>\nContent-Type: text/plain; charset="utf-8"\n'
            f"Content-Transfer-Encoding: 8bit\n\n{body}",
        )
        for i, (who, subject, body) in enumerate(posts)
    ]
    contents = "Thèmes du jour :\n\n" + "".join(
        f"   {i + 1}. {s}\n" for i, (_, s, _) in enumerate(posts)
    )
    raw = message(
        [
            "From: reseau-assos-request@lists.assos-artois.example",
            f"Subject: {encoded_word('Digest Réseau-assos, Vol 12, Parution 47')}",
            "To: reseau-assos@lists.assos-artois.example",
            "Reply-To: reseau-assos@lists.assos-artois.example",
            "Date: Mon, 23 Nov 2026 12:00:02 +0100",
            "Message-ID: <mailman.412.1763895602.1887.reseau-assos@lists.assos-artois.example>",
            "MIME-Version: 1.0",
            "X-BeenThere: reseau-assos@lists.assos-artois.example",
            "X-Mailman-Version: 2.1.39",
            "Precedence: list",
            "List-Id: Réseau des associations de l'Artois <reseau-assos.lists.assos-artois.example>".replace(
                "Réseau", "=?utf-8?q?R=C3=A9seau?="
            ),
            "List-Unsubscribe: <https://lists.assos-artois.example/options/reseau-assos>,\n"
            " <mailto:reseau-assos-request@lists.assos-artois.example?subject=unsubscribe>",
            "List-Post: <mailto:reseau-assos@lists.assos-artois.example>",
        ],
        multipart(
            "mixed",
            "===============4217381926384718475==",
            [
                part(
                    [
                        'Content-Type: text/plain; charset="utf-8"',
                        "MIME-Version: 1.0",
                        "Content-Transfer-Encoding: 8bit",
                        "Content-Description: Digest Reseau-assos, Vol 12, Parution 47",
                    ],
                    contents,
                ),
                multipart(
                    "digest",
                    "===============0519264837219048376==",
                    messages,
                    headers=("MIME-Version: 1.0",),
                ),
                part(
                    [
                        'Content-Type: text/plain; charset="us-ascii"',
                        "Content-Description: Digest Footer",
                    ],
                    "_______________________________________________\nreseau-assos mailing list\n",
                ),
            ],
        ),
    )
    return delivered(
        raw.encode("utf-8"),
        sender="reseau-assos-bounces@lists.assos-artois.example",
        date="Mon, 23 Nov 2026 12:00:03 +0100 (CET)",
        queue_id="4Cv6Sv8Wx9z9sTS",
        auth=auth_pass("lists.assos-artois.example"),
    )


def newsletter() -> bytes:
    """A newsletter platform's campaign (Brevo-like): List-Unsubscribe with one-click POST,
    Precedence: bulk, feedback id, a bounces+ Return-Path, HTML and text alternatives."""
    text = (
        "Territoires connectés – la lettre de novembre\n\n"
        "Smart city : les communes des Hauts-de-France lancent leurs labels.\n"
        "Candidatures, dossiers, calendrier : tout ce qu'il faut savoir.\n\nSe désinscrire : https://news.example.com/u/8f3a\n"
    )
    raw = message(
        [
            "From: Territoires connectés <lettre@news.territoires-connectes.example>",
            f"To: {CITY}",
            f"Subject: {encoded_word('La lettre de novembre : smart city et labels 🏙️')}",
            "Date: Tue, 24 Nov 2026 07:00:00 +0000",
            "Message-Id: <202611240700.81734562.2047@smtp-relay.mailin.example>",
            "MIME-Version: 1.0",
            "Precedence: bulk",
            "List-Unsubscribe: <https://news.example.com/u/8f3a>, <mailto:unsubscribe@news.example.com?subject=8f3a>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Feedback-ID: 81734562:2047:campaign:brevo",
            "X-Mailer: Sendinblue",
            "X-Campaign-Id: 2047",
        ],
        multipart(
            "alternative",
            "----=_Part_81734562_2047.1763967600000",
            [
                part(
                    [
                        'Content-Type: text/plain; charset="utf-8"',
                        "Content-Transfer-Encoding: quoted-printable",
                    ],
                    qp_body(text),
                ),
                part(
                    [
                        'Content-Type: text/html; charset="utf-8"',
                        "Content-Transfer-Encoding: quoted-printable",
                    ],
                    qp_body(html_of(text)),
                ),
            ],
        ),
    )
    return delivered(
        raw,
        sender="bounces+81734562-2047@news.territoires-connectes.example",
        date="Tue, 24 Nov 2026 08:00:02 +0100 (CET)",
        queue_id="4Cw0Tx9Yz0z9sTT",
        auth=auth_pass("news.territoires-connectes.example"),
    )


def calendar_invitation() -> bytes:
    """Google Calendar invitation sent by an applicant: mixed → alternative(text, html,
    text/calendar; method=REQUEST) plus the same event as invite.ics."""
    ics = (
        "BEGIN:VCALENDAR\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\nVERSION:2.0\nCALSCALE:GREGORIAN\n"
        "METHOD:REQUEST\nBEGIN:VEVENT\nDTSTART:20261203T130000Z\nDTEND:20261203T140000Z\n"
        "DTSTAMP:20261125T101500Z\nORGANIZER;CN=Thomas Lenglet:mailto:t.lenglet.fablab@gmail.com\n"
        f"UID:5q2r8s0t1u3v4w6x7y9z@google.com\nATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={CITY}:mailto:{CITY}\n"
        "CREATED:20261125T101500Z\nDESCRIPTION:Présentation de notre projet de capteurs avant le dépôt du dossier.\n"
        "LOCATION:FabLab Béthune\nSEQUENCE:0\nSTATUS:CONFIRMED\nSUMMARY:Rencontre projet capteurs – label Smart City\n"
        "TRANSP:OPAQUE\nEND:VEVENT\nEND:VCALENDAR\n"
    ).replace("\n", "\r\n")
    text = (
        "Rencontre projet capteurs – label Smart City\nJeudi 3 déc. 2026 ⋅ 14:00 – 15:00 (heure normale d'Europe centrale)\n"
        "FabLab Béthune\n\nInvitation de Google Agenda\n"
    )
    alt = multipart(
        "alternative",
        "000000000000e3c5a70622f1b8d2",
        [
            part(
                [
                    'Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes',
                    "Content-Transfer-Encoding: base64",
                ],
                base64_body(text.encode()),
            ),
            part(
                [
                    'Content-Type: text/html; charset="UTF-8"',
                    "Content-Transfer-Encoding: quoted-printable",
                ],
                qp_body(html_of(text)),
            ),
            part(
                [
                    'Content-Type: text/calendar; charset="UTF-8"; method=REQUEST',
                    "Content-Transfer-Encoding: base64",
                ],
                base64_body(ics.encode()),
            ),
        ],
    )
    attachment = part(
        [
            'Content-Type: application/ics; name="invite.ics"',
            'Content-Disposition: attachment; filename="invite.ics"',
            "Content-Transfer-Encoding: base64",
        ],
        base64_body(ics.encode()),
    )
    return gmail_mail(
        sender="Thomas Lenglet <t.lenglet.fablab@gmail.com>",
        subject="Invitation: Rencontre projet capteurs – label Smart City @ jeu. 3 déc. 2026 14:00 - 15:00",
        text="",
        attachments=[attachment],
        body=alt,
        stamp="e3c5a70622f1b8",
        message_id="000000000000e3c5a70622f1b8d4@google.com",
        extra=(
            "Reply-To: Thomas Lenglet <t.lenglet.fablab@gmail.com>",
            "Sender: Google Agenda <calendar-notification@google.com>",
        ),
        date="Wed, 25 Nov 2026 11:15:00 +0100",
    )


# --------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[], bytes | None]] = {
    "thunderbird_candidature": thunderbird_candidature,
    "outlook_candidature": outlook_candidature,
    "gmail_candidature": gmail_candidature,
    "apple_mail_candidature": apple_mail_candidature,
    "mutt_candidature": mutt_candidature,
    "neomutt_candidature": neomutt_candidature,
    "gmail_candidature_missing_letter": gmail_candidature_missing_letter,
    "gmail_letter_sent_later": gmail_letter_sent_later,
    "thunderbird_blank_form_question": thunderbird_blank_form_question,
    "thunderbird_follow_up": thunderbird_follow_up,
    "gmail_follow_up_without_reference": gmail_follow_up_without_reference,
    "outlook_forwarded_candidature": outlook_forwarded_candidature,
    "thunderbird_forward_as_attachment": thunderbird_forward_as_attachment,
    "postfix_bounce": postfix_bounce,
    "exim_bounce": exim_bounce,
    "exchange_online_bounce": exchange_online_bounce,
    "gmail_bounce": gmail_bounce,
    "sieve_vacation": sieve_vacation,
    "exchange_out_of_office": exchange_out_of_office,
    "gmail_vacation": gmail_vacation,
    "mailman_digest": mailman_digest,
    "newsletter": newsletter,
    "calendar_invitation": calendar_invitation,
}


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        print(
            f"unknown golden mail(s): {', '.join(unknown)}; known: {', '.join(BUILDERS)}",
            file=sys.stderr,
        )
        return 2
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names or list(BUILDERS):
        raw = BUILDERS[name]()
        if raw is None:
            continue
        (GOLDEN / f"{name}.eml").write_bytes(raw)
        print(f"{name}.eml  {len(raw):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
