"""French labels the back-office shows for internal codes.

Kept in one small table so that it can be replaced by the shared wording
module used by the CLI, the digest and the exports. Thématiques, criteria,
categories and natures come from the rules (``config/rules.toml``).
"""

from __future__ import annotations

from typing import Any

from mailbot.config import FieldKind, Rules

DOSSIER_STATUS = {
    "incomplete": "Incomplet",
    "complete": "Complet",
    "needs_review": "À vérifier",
    "accepted": "Labellisé",
    "rejected": "Refusé",
    "withdrawn": "Retiré",
}
MESSAGE_STATUS = {
    "filed": "Classé",
    "ignored": "Écarté",
    "skipped": "Non traité",
    "needs_review": "À vérifier",
    "failed": "En échec",
}
VERDICT = {
    "candidature": "Candidature",
    "follow_up": "Suite d'un dossier",
    "not_candidature": "Hors candidature",
    "auto_reply": "Réponse automatique",
    "needs_review": "À vérifier",
}
REPLY_KIND = {
    "acknowledgement": "Accusé de réception",
    "missing_pieces": "Pièces manquantes",
    "completed": "Dossier complet",
    "under_review": "En cours de vérification",
    "digest": "Récapitulatif du service",
}
REPLY_STATUS = {
    "queued": "En attente d'envoi",
    "sending": "En cours d'envoi",
    "sent": "Envoyée",
    "failed": "Non distribuée",
    "suppressed": "Retenue",
}
PIECE_ROLE = {
    "dossier": "Dossier d'intention",
    "letter": "Courrier au Maire",
    "supporting": "Pièce jointe",
    "ignored": "Non retenue",
}
MISSING = {"dossier": "le dossier d'intention", "letter": "le courrier au Maire"}
ACTION = {
    "dossier.created": "Dossier créé",
    "dossier.status_changed": "Statut modifié",
    "dossier.legal_hold_set": "Conservation légale activée",
    "dossier.legal_hold_cleared": "Conservation légale levée",
    "message.dismissed": "Message écarté",
    "message.failed": "Message en échec",
    "message.retried": "Message traité à nouveau",
    "message.downloaded": "Message d'origine consulté",
    "piece.viewed": "Pièce consultée",
    "reply.queued": "Réponse préparée",
    "reply.suppressed": "Réponse retenue",
    "dossier.follow_up": "Suite reçue",
}
# Staff decisions offered on a dossier page, in this order.
DECISIONS = ("complete", "accepted", "rejected", "withdrawn")


def label(table: dict[str, str], code: Any) -> str:
    """The French label of ``code``, or the code itself when the table does not know it."""
    if code is None:
        return "—"
    return table.get(str(code), str(code))


def thematique(rules: Rules, code: Any) -> str:
    choice = rules.thematiques.get(str(code)) if code else None
    return choice.label if choice else label({}, code)


def missing(rules: Rules, code: str) -> str:
    if code.startswith("field:"):
        rule = rules.fields.get(code[len("field:") :])
        return f"le champ « {rule.label} »" if rule else code
    return MISSING.get(code, code)


def field_value(rules: Rules, key: str, value: Any) -> str:
    """A stored field value as staff read it (choices by their label, amounts in euros)."""
    rule = rules.fields.get(key)
    kind = rule.kind if rule else FieldKind.TEXT
    choices = {
        FieldKind.CATEGORY: rules.categories,
        FieldKind.THEMATIQUE: rules.thematiques,
        FieldKind.CRITERIA: rules.criteria,
        FieldKind.NATURE: rules.natures,
    }.get(kind)
    values = value if isinstance(value, list) else [value]
    if choices is not None:
        return ", ".join(choices[v].label if v in choices else str(v) for v in values)
    if kind == FieldKind.AMOUNT and isinstance(value, int | float):
        return f"{value:,.0f} €".replace(",", "\u202f")
    return ", ".join(str(v) for v in values)
