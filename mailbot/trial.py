"""``mailbot try``: the whole pipeline on one saved message, writing nothing.

Admins test a rule or template change on saved mail with it. It parses,
classifies and reads the message exactly as the worker does
(``pipeline.Analyser``), runs the chain's second stage against the
configured database when one exists, and renders the reply the worker would
queue. That database is opened read-only and never created or migrated (an
SQLite file that does not exist means no database); no blob is stored and no
server is contacted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session

from mailbot.config import Config, Verdict
from mailbot.open_dossiers import StoredOpenDossiers
from mailbot.pipeline import Analyser, Analysis
from mailbot.replies import authentication_hold, build_reply, choose_kind
from parsers.checks import describe_missing
from storage.db import current_revision, head_revision
from storage.errors import StorageError

log = logging.getLogger(__name__)

PLACEHOLDER_NUMBER = "0000"
# Said in the trace of the rules that asked the database.
CHECKED_READ_ONLY = "checked against the database (read-only)"


def try_message(config: Config, raw: bytes, *, mailbox: str | None = None) -> dict[str, Any]:
    name = mailbox or config.settings.mailboxes[0].name
    analyser = Analyser(config)
    analysis = analyser.analyse(raw, mailbox=name)
    notes: list[str] = []
    with read_only_open_dossiers(config, notes=notes) as open_dossiers:
        analysis = analyser.after_reading(analysis, open_dossiers=open_dossiers)
    result = report(config, analysis)
    result["warnings"].extend(notes)
    return result


@contextmanager
def read_only_open_dossiers(
    config: Config, *, notes: list[str]
) -> Iterator[StoredOpenDossiers | None]:
    """The configured database's open dossiers, read-only; None when there is none to read.

    A database that cannot be read (server down, schema older or newer than
    this code) is not checked either: why is appended to ``notes``.
    """
    engine = _read_only_engine(config.database_url)
    if engine is None:
        yield None
        return
    try:
        try:
            revision = current_revision(engine)
        except StorageError as err:
            notes.append(f"database not checked: {err}")
            yield None
            return
        if revision != head_revision():
            notes.append(
                f"database not checked: its schema is at {revision}, this version expects "
                f"{head_revision()} (run the worker or `mailbot db upgrade` first)"
            )
            yield None
            return
        with Session(engine) as session:
            yield StoredOpenDossiers(session, checked=CHECKED_READ_ONLY)
            # Nothing was written; ending the transaction explicitly says so.
            session.rollback()
    finally:
        engine.dispose()


def _read_only_engine(url: str) -> Engine | None:
    """An engine that cannot write to ``url``'s database; None when there is no database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            return None
        uri = f"{path.as_uri()}?mode=ro"
        if not path.with_name(path.name + "-wal").exists():
            # No process has it open (the last one to close removes the WAL):
            # read-only alone would leave an empty WAL and its index beside
            # it. Immutable reads the file as it is, which is all there is.
            uri += "&immutable=1"
        return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    if backend == "postgresql":
        # Every transaction of these connections is read-only on the server side.
        options = {"options": "-c default_transaction_read_only=on", "connect_timeout": 10}
        return create_engine(parsed, connect_args=options)
    return None


def report(config: Config, analysis: Analysis) -> dict[str, Any]:
    mail, reading = analysis.mail, analysis.reading
    classification = analysis.classification
    attachments = []
    if mail is not None:
        roles = reading.roles if reading else {}
        for attachment in mail.attachments:
            attachments.append(
                {
                    "filename": attachment.filename,
                    "role": roles.get(attachment.sha256, "supporting"),
                    "sha256": attachment.sha256,
                    "size": attachment.size,
                    "content_type": attachment.content_type,
                }
            )
    warnings = list(analysis.warnings)
    if analysis.error:
        warnings.append(analysis.error)
    return {
        "verdict": analysis.verdict if not analysis.failed else "needs_review",
        "message_id": mail.message_id if mail else None,
        "sender": mail.sender if mail else None,
        "reference": classification.reference if classification else None,
        "fields": reading.fields if reading else {},
        "dossier_present": bool(reading and reading.dossier_present),
        "letter_present": bool(reading and reading.letter_present),
        "attachments": attachments,
        "missing": list(reading.missing) if reading else [],
        "reply": _reply(config, analysis),
        "warnings": warnings,
        "rule_trace": classification.trace_as_json() if classification else [],
        "score": classification.score if classification else None,
        "evidence": {
            key: {"source": item.source, "raw": item.raw}
            for key, item in (reading.dossier.evidence.items() if reading else ())
        },
        # Optional keys (interfaces.md), present only when they say something.
        **_doubts_and_answers(analysis),
    }


def _doubts_and_answers(analysis: Analysis) -> dict[str, Any]:
    """``uncertain``: fields read with doubt; ``answers``: values typed in a follow-up's body."""
    reading = analysis.reading
    out: dict[str, Any] = {}
    if reading is None:
        return {}
    if reading.dossier.uncertain:
        out["uncertain"] = list(reading.dossier.uncertain)
    answers = reading.answers
    if analysis.verdict == Verdict.FOLLOW_UP and answers is not None and answers.fields:
        out["answers"] = dict(answers.fields)
    return out


def _reply(config: Config, analysis: Analysis) -> dict[str, Any] | None:
    """The reply a new candidature would get; follow-ups depend on the stored dossier."""
    mail, reading = analysis.mail, analysis.reading
    if analysis.verdict != Verdict.CANDIDATURE or mail is None or reading is None:
        return None
    replies = config.settings.replies
    own = config.settings.own_addresses
    if not replies.enabled or not mail.sender or mail.sender in own:
        return None
    if authentication_hold(mail, config) is not None:
        return None
    kind = choose_kind(
        created=True,
        completed=False,
        missing=reading.missing,
        previous_missing=None,
        in_doubt=reading.in_doubt,
    )
    year = datetime.now(ZoneInfo(config.settings.service.timezone)).year
    mailbox = config.settings.mailboxes[0]
    built = build_reply(
        config=config,
        mailbox=mailbox,
        kind=kind,
        reference=f"BSC-{year}-{PLACEHOLDER_NUMBER}",
        to=mail.sender,
        applicant_name=mail.sender_name,
        intitule=reading.fields.get("intitule"),
        missing_text=describe_missing(reading.missing, rules=config.rules),
        in_reply_to=mail.message_id,
        references=mail.references,
    )
    return {"kind": kind, "to": built.to, "subject": built.subject, "text": built.text}
