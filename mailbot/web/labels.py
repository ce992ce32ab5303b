"""French labels of the back-office pages.

Statuses, verdicts, reply kinds, reasons, choices of ``rules.toml`` and
times come from ``mailbot.wording`` (the one table shared with the CLI,
the digest and the exports), capitalised where a page starts a cell with
them, as are piece roles and audit actions. What only the pages show (what
is missing, the decisions offered) is worded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailbot import wording
from mailbot.config import FieldKind, Rules
from parsers.reasons import ReviewReason

DOSSIER_STATUS = wording.DOSSIER_STATUS_LABELS
MESSAGE_STATUS = wording.MESSAGE_STATUS_LABELS
VERDICT = wording.VERDICT_LABELS
REPLY_KIND = wording.REPLY_KIND_LABELS
REPLY_STATUS = wording.OUTBOX_STATUS_LABELS
PIECE_ROLE = wording.PIECE_ROLE_LABELS
MISSING = {"dossier": "le dossier d'intention", "letter": "le courrier au Maire"}
ACTION = wording.ACTION_LABELS
# Staff decisions offered on a dossier page, in this order.
DECISIONS = ("complete", "accepted", "rejected", "withdrawn")


def label(table: Mapping[str, str], code: Any) -> str:
    """The label of ``code`` from ``table``, starting with a capital; unknown codes as stored."""
    text = wording.label(table, None if code is None else str(code))
    return text[:1].upper() + text[1:]


def thematique(rules: Rules, code: Any) -> str:
    return wording.thematique_label(rules, code) or "—"


def missing(rules: Rules, code: str) -> str:
    if code.startswith("field:"):
        rule = rules.fields.get(code[len("field:") :])
        return f"le champ « {rule.label} »" if rule else code
    return MISSING.get(code, code)


def field_value(rules: Rules, key: str, value: Any) -> str:
    """A stored field value as staff read it (choices by their label, amounts in euros)."""
    rule = rules.fields.get(key)
    if rule is not None and rule.kind == FieldKind.AMOUNT and isinstance(value, int | float):
        return f"{value:,.0f} €".replace(",", "\u202f")
    worded = wording.worded_fields({key: value}, rules).get(key, value)
    if isinstance(worded, list):
        return ", ".join(str(v) for v in worded)
    return str(worded)


def message_warning(rules: Rules, text: Any) -> str:
    """A reading warning of a message, in French.

    The parsers note a field they could not read well as ``KEY: what
    (where)``; the dossier page shows that field's evidence, worded, in its
    table of fields, so the warning only points there. Other warnings are
    worded by ``mailbot.wording.reading_warning``.
    """
    key, separator, _rest = str(text).partition(": ")
    rule = rules.fields.get(key) if separator else None
    if rule is not None:
        return f"« {rule.label} » lu avec un doute (voir « Champs lus » du dossier)"
    return wording.reading_warning(str(text))


def review_reason(rules: Rules, message: Mapping[str, Any]) -> str:
    """Why a message of the review queue waits, in French (a ``views.message_summary``).

    The reason code's label from ``mailbot.wording``, then the message's last
    reading warning worded as on the dossier page. The chain's own
    explanation (an English trace line, shown by ``messages list --json``)
    is left out: the page shows the cited dossier and the message itself.
    """
    code = wording.code_of(ReviewReason, message.get("reason"))
    if code is None:
        return str(message.get("reason_label") or "")
    # The page's own words where the shared label names a command.
    text = wording.WEB_REVIEW_REASON_LABELS.get(code) or wording.reason_label(code)
    if message.get("error"):
        return wording.shorten(f"{text} : {message['error']}")
    warnings = [w for w in message.get("warnings") or [] if w]
    if warnings:
        text = f"{text} : {message_warning(rules, warnings[-1])}"
    return wording.shorten(text)
