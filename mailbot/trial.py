"""``mailbot try``: the whole pipeline on one saved message, writing nothing.

Admins test a rule or template change on saved mail with it. It parses,
classifies and reads the message exactly as the worker does
(``pipeline.Analyser``) and renders the reply the worker would queue, but
opens no database, stores no blob and talks to no server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.config import Config, Verdict
from mailbot.pipeline import Analyser, Analysis
from mailbot.replies import authentication_verdict, build_reply
from parsers.checks import describe_missing

PLACEHOLDER_NUMBER = "0000"


def try_message(config: Config, raw: bytes, *, mailbox: str | None = None) -> dict[str, Any]:
    name = mailbox or config.settings.mailboxes[0].name
    analysis = Analyser(config).analyse(raw, mailbox=name)
    return report(config, analysis)


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
    }


def _reply(config: Config, analysis: Analysis) -> dict[str, Any] | None:
    """The reply a new candidature would get; follow-ups depend on the stored dossier."""
    mail, reading = analysis.mail, analysis.reading
    if analysis.verdict != Verdict.CANDIDATURE or mail is None or reading is None:
        return None
    replies = config.settings.replies
    own = config.settings.own_addresses
    if not replies.enabled or not mail.sender or mail.sender in own:
        return None
    verdict = authentication_verdict(mail, replies.authserv_id)
    if (replies.auth_policy == "reply_unless_fail" and verdict == "fail") or (
        replies.auth_policy == "reply_only_if_pass" and verdict != "pass"
    ):
        return None
    kind = "missing_pieces" if reading.missing else "acknowledgement"
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
