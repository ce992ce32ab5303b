"""Access request: everything stored about one address, written into a directory.

``person.json`` holds the dossiers, messages, replies and audit entries;
``messages/`` and ``reponses/`` the raw mail (.eml); ``pieces/`` the filed
attachments, one folder per dossier; ``LISEZMOI.txt`` explains it all to
the person in French. Files are written strictly inside the directory,
under names built from a counter and a sanitised form of the original name,
never from the name itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbot.app import App
from mailbot.privacy.errors import PrivacyError
from mailbot.privacy.person import PersonData, find_person, normalise_email
from mailbot.privacy.reports import ExportReport, isoformat_or_none, to_jsonable
from mailbot.privacy.rows import transaction
from storage import repositories as repo
from storage.errors import BlobNotFoundError
from storage.models import Dossier, Piece, utcnow

log = logging.getLogger(__name__)

_MAX_NAME = 80

_README = """\
Export des données personnelles — label Béthune Smart City
==========================================================

Adresse concernée : {email}
Date de l'export : {date}
Responsable du traitement : {controller}
Contact pour exercer vos droits : {contact}

Ce dossier contient toutes les données que le service de candidature au
label « Béthune Smart City » conserve au sujet de cette adresse
électronique :

- person.json : les dossiers de candidature (référence, statut, informations
  lues dans le dossier d'intention, dates), les messages reçus (date, objet,
  décision du tri automatique et ses raisons), les réponses envoyées (date,
  objet) et le journal des opérations les concernant. Fichier texte au
  format JSON, lisible avec un éditeur de texte.
- messages/ : les messages reçus, tels qu'ils sont arrivés (fichiers .eml,
  à ouvrir avec un logiciel de messagerie).
- pieces/ : les pièces jointes classées dans chaque dossier, un
  sous-dossier par référence. Les noms de fichiers ont été simplifiés et
  numérotés ; le nom d'origine figure dans person.json.
- reponses/ : les réponses envoyées par le service (fichiers .eml).

L'empreinte SHA-256 indiquée pour chaque fichier dans person.json permet de
vérifier qu'il est identique à celui que conserve le service.

Durée de conservation : {retention}.
"""


@dataclass
class _StoredPerson:
    """What the export reads in its one (read-only) transaction."""

    person: PersonData
    # Dossier id -> reference, for the person's dossiers and the others holding their mail.
    references: dict[int, str]
    pieces_by_dossier: dict[int, list[Piece]]
    # Message id -> mailboxes it was seen in.
    mailboxes: dict[int, list[str]]


def export_person(
    app: App, email: str, out_dir: Path | str, *, include_form_addresses: bool = False
) -> ExportReport:
    """Write everything stored about ``email`` (case ignored) into ``out_dir``.

    Dossiers naming the address only in their form's contact field are
    listed in ``report.form_only`` and exported only with
    ``include_form_addresses`` (staff checked the request comes from them).

    ``out_dir`` is created (mode 0700) and must be empty if it exists.
    File names are built from a counter and a sanitised form of the original
    name, never from the name itself.
    """
    address = normalise_email(email)
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PrivacyError(f"{target} exists and is not an empty directory")
    settings = app.config.settings
    report = ExportReport(email=address, out_dir=target)
    stored = _read_person(app, address, include_form=include_form_addresses)
    report.form_only = [d.reference for d in stored.person.form_only]
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    writer = _ExportWriter(app, target, report)

    # Files are written in this order: pieces, messages, replies, then person.json.
    dossiers_json = _dossier_entries(stored, writer)
    messages_json = _message_entries(stored, writer)
    replies_json = _reply_entries(stored, writer)
    references = stored.references
    events_json = [
        {
            "at": isoformat_or_none(event.at),
            "actor": event.actor,
            "action": event.action,
            "dossier": references.get(event.dossier_id),  # type: ignore[arg-type]
            "details": event.details,
        }
        for event in stored.person.events
    ]
    report.events = len(stored.person.events)

    exported_at = utcnow()
    document = {
        "email": address,
        "exported_at": isoformat_or_none(exported_at),
        "controller": settings.replies.privacy_controller,
        "contact": settings.replies.privacy_contact,
        "retention": settings.replies.privacy_retention,
        "dossiers": dossiers_json,
        "messages": messages_json,
        "replies": replies_json,
        "events": events_json,
        "missing_files": report.missing_blobs,
    }
    text = json.dumps(to_jsonable(document), ensure_ascii=False, indent=2) + "\n"
    writer.data("", "person.json", text.encode("utf-8"))
    readme = _README.format(
        email=address,
        date=exported_at.isoformat(timespec="seconds"),
        controller=settings.replies.privacy_controller,
        contact=settings.replies.privacy_contact,
        retention=settings.replies.privacy_retention,
    )
    writer.data("", "LISEZMOI.txt", readme.encode("utf-8"))
    log.info("export-person: %s", report.summary().replace(address, "<address>"))
    return report


def _read_person(app: App, address: str, *, include_form: bool) -> _StoredPerson:
    with transaction(app, commit=False) as session:
        person = find_person(session, address, include_form=include_form)
        references = {d.id: d.reference for d in person.dossiers}
        for m in person.messages:
            if m.dossier_id is not None and m.dossier_id not in references:
                other = session.get(Dossier, m.dossier_id)
                if other is not None:
                    references[other.id] = other.reference
        pieces_by_dossier: dict[int, list[Piece]] = {
            d.id: repo.list_pieces(session=session, dossier=d)  # type: ignore[misc]
            for d in person.dossiers
        }
        mailboxes = {
            m.id: repo.mailboxes_for_message(session=session, message=m) for m in person.messages
        }
    return _StoredPerson(
        person=person,
        references=references,  # type: ignore[arg-type]
        pieces_by_dossier=pieces_by_dossier,
        mailboxes=mailboxes,  # type: ignore[arg-type]
    )


def _dossier_entries(stored: _StoredPerson, writer: _ExportWriter) -> list[dict[str, Any]]:
    """The person's dossiers, each with its pieces written under ``pieces/<reference>/``."""
    report = writer.report
    entries = []
    for dossier in stored.person.dossiers:
        pieces_json = []
        folder = f"pieces/{_sanitised_part(dossier.reference, 'dossier')}"
        for number, piece in enumerate(stored.pieces_by_dossier[dossier.id], start=1):  # type: ignore[index]
            path = writer.blob(
                folder, safe_filename(piece.filename, counter=number), piece.blob_sha256
            )
            report.pieces += 1
            pieces_json.append(
                {
                    "file": path,
                    "original_name": piece.filename,
                    "role": piece.role,
                    "content_type": piece.content_type,
                    "size": piece.size,
                    "sha256": piece.blob_sha256,
                    "added_at": isoformat_or_none(piece.added_at),
                }
            )
        entries.append(
            {
                "reference": dossier.reference,
                "status": dossier.status,
                "status_note": dossier.status_note,
                "legal_hold": dossier.legal_hold,
                "sender": dossier.sender,
                "sender_name": dossier.sender_name,
                "received_at": isoformat_or_none(dossier.received_at),
                "updated_at": isoformat_or_none(dossier.updated_at),
                "completed_at": isoformat_or_none(dossier.completed_at),
                "fields": dossier.fields,
                "missing": dossier.missing,
                "evidence": dossier.evidence,
                "pieces": pieces_json,
            }
        )
        report.dossiers.append(dossier.reference)
    return entries


def _message_entries(stored: _StoredPerson, writer: _ExportWriter) -> list[dict[str, Any]]:
    """The mail received, each message kept written as ``messages/NNNN-subject.eml``."""
    entries = []
    for number, message in enumerate(stored.person.messages, start=1):
        path = None
        if message.raw_blob:
            name = safe_filename(
                (message.subject or "message") + ".eml", counter=number, default="message.eml"
            )
            path = writer.blob("messages", name, message.raw_blob)
            if path:
                writer.report.eml_files += 1
        entries.append(
            {
                "file": path,
                "sha256": message.raw_blob,
                "message_id": message.message_id,
                "sender": message.sender,
                "sender_name": message.sender_name,
                "subject": message.subject,
                "date": isoformat_or_none(message.date_header),
                "received_at": isoformat_or_none(message.first_seen_at),
                "verdict": message.verdict,
                "status": message.status,
                "rule_trace": message.rule_trace,
                "warnings": message.warnings,
                "error": message.error,
                "headers": message.headers,
                "dossier": stored.references.get(message.dossier_id),  # type: ignore[arg-type]
                "mailboxes": stored.mailboxes.get(message.id, []),  # type: ignore[arg-type]
                "content_kept": message.raw_blob is not None,
            }
        )
    writer.report.messages = len(stored.person.messages)
    return entries


def _reply_entries(stored: _StoredPerson, writer: _ExportWriter) -> list[dict[str, Any]]:
    """The replies sent, each written as ``reponses/NNNN-kind.eml``."""
    entries = []
    for number, reply in enumerate(stored.person.outbox, start=1):
        path = writer.data(
            "reponses", safe_filename(f"{reply.kind}.eml", counter=number), reply.raw
        )
        entries.append(
            {
                "file": path,
                "sha256": hashlib.sha256(reply.raw).hexdigest(),
                "kind": reply.kind,
                "to": reply.to_addr,
                "from": reply.from_addr,
                "subject": reply.subject,
                "status": reply.status,
                "created_at": isoformat_or_none(reply.created_at),
                "sent_at": isoformat_or_none(reply.sent_at),
                "dossier": stored.references.get(reply.dossier_id),  # type: ignore[arg-type]
            }
        )
    writer.report.replies = len(stored.person.outbox)
    return entries


class _ExportWriter:
    """Writes files strictly inside the export directory, never over an existing one."""

    def __init__(self, app: App, root: Path, report: ExportReport) -> None:
        self.app = app
        self.root = root
        self.real_root = root.resolve()
        self.report = report

    def blob(self, folder: str, name: str, sha: str) -> str | None:
        try:
            data = self.app.blobs.get(sha)
        except BlobNotFoundError:
            self.report.missing_blobs.append(sha)
            return None
        return self.data(folder, name, data)

    def data(self, folder: str, name: str, data: bytes) -> str:
        directory = self.root / folder if folder else self.root
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / name
        # Belt and braces: the name is sanitised, and the result must still be ours.
        if path.resolve().parent != directory.resolve() or not path.resolve().is_relative_to(
            self.real_root
        ):
            raise PrivacyError(f"refusing to write outside {self.root}: {name!r}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        relative = path.relative_to(self.root).as_posix()
        self.report.files.append(relative)
        return relative


def _sanitised_part(text: str | None, default: str) -> str:
    value = unicodedata.normalize("NFKD", text or "")
    value = "".join(ch for ch in value if not unicodedata.combining(ch))
    value = value.encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", value)
    value = re.sub(r"\.{2,}", ".", value)
    value = re.sub(r"_{2,}", "_", value).strip("._-")
    return value or default


def safe_filename(name: str | None, *, counter: int, default: str = "piece") -> str:
    """``0007-nom_du_fichier.pdf``: ASCII letters, digits, ``._-`` only, no ``..``.

    The counter prefix keeps names unique and makes hidden or reserved names
    (``.htaccess``, ``CON``) impossible; the extension survives when short.
    """
    cleaned = _sanitised_part(name, default)
    stem, dot, ext = cleaned.rpartition(".")
    if dot and stem and 0 < len(ext) <= 10:
        cleaned = f"{stem[: _MAX_NAME - len(ext) - 1].rstrip('._-') or default}.{ext}"
    else:
        cleaned = cleaned[:_MAX_NAME].rstrip("._-") or default
    return f"{counter:04d}-{cleaned}"
