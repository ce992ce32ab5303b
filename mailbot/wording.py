"""How the service says things to staff, in French: the one table of labels.

Statuses (message, dossier, outbox), verdicts, reply kinds, the rules that
decide a verdict, every reason code of ``parsers.reasons``, dates, and the
printed labels of the choices of ``rules.toml`` (thématiques, criteria,
categories, natures). The digest, the CLI and any future page word things
through this module only, so that a label is changed in one place and a
stored code never reaches staff untranslated (``tests/test_wording.py``
checks that every code has its label).

A stored value that is not a known code (a row written before reasons were
codes) is shown with a generic label followed by what was stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from mailbot.config import Config, FieldKind, Rules
from mailbot.errors import RefusedError
from parsers.reasons import (
    REVIEW_REASON_OF_RULE,
    DeliveryFailure,
    MailboxCheck,
    Refusal,
    ReplyHold,
    ReviewReason,
)
from storage.models import (
    DossierStatus,
    Message,
    MessageStatus,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Verdict,
)

# A reason shown to staff is cut to this many characters (exceptions can be long).
REASON_MAX_LENGTH = 300

DOSSIER_STATUS_LABELS: dict[str, str] = {
    DossierStatus.INCOMPLETE: "incomplet",
    DossierStatus.COMPLETE: "complet",
    DossierStatus.NEEDS_REVIEW: "à vérifier",
    DossierStatus.ACCEPTED: "labellisé",
    DossierStatus.REJECTED: "refusé",
    DossierStatus.WITHDRAWN: "retiré",
}
MESSAGE_STATUS_LABELS: dict[str, str] = {
    MessageStatus.FILED: "enregistré",
    MessageStatus.IGNORED: "ignoré",
    MessageStatus.SKIPPED: "non traité (trop ancien)",
    MessageStatus.NEEDS_REVIEW: "à vérifier",
    MessageStatus.FAILED: "en échec",
}
OUTBOX_STATUS_LABELS: dict[str, str] = {
    OutboxStatus.QUEUED: "en attente d'envoi",
    OutboxStatus.SENDING: "en cours d'envoi",
    OutboxStatus.SENT: "envoyée",
    OutboxStatus.FAILED: "non remise",
    OutboxStatus.SUPPRESSED: "non envoyée",
    OutboxStatus.HELD: "en attente d'envoi (plafond atteint)",
}
VERDICT_LABELS: dict[str, str] = {
    Verdict.CANDIDATURE: "candidature",
    Verdict.FOLLOW_UP: "suite d'un dossier",
    Verdict.NOT_CANDIDATURE: "hors candidature",
    Verdict.AUTO_REPLY: "réponse automatique",
    Verdict.NEEDS_REVIEW: "à vérifier",
}
REPLY_KIND_LABELS: dict[str, str] = {
    OutboxKind.ACKNOWLEDGEMENT: "accusé de réception",
    OutboxKind.MISSING_PIECES: "pièces manquantes",
    OutboxKind.COMPLETED: "dossier complet",
    OutboxKind.UNDER_REVIEW: "accusé de réception (dossier en vérification)",
    OutboxKind.PASSED_ON: "message transmis au service",
    OutboxKind.DIGEST: "récapitulatif",
}
PIECE_ROLE_LABELS: dict[str, str] = {
    "dossier": "Dossier d'intention",
    "letter": "Courrier au Maire",
    "supporting": "Pièce jointe",
    "ignored": "Non retenue",
}
# Actions of the audit trail (``Event.action``), as the history shows them.
ACTION_LABELS: dict[str, str] = {
    "dossier.created": "Dossier créé",
    "dossier.follow_up": "Suite reçue",
    "dossier.status_changed": "Statut modifié",
    "dossier.field_corrected": "Champ corrigé",
    "dossier.legal_hold_set": "Conservation légale activée",
    "dossier.legal_hold_cleared": "Conservation légale levée",
    "message.attached": "Message rattaché au dossier",
    "message.dismissed": "Message écarté",
    "message.failed": "Message en échec",
    "message.retried": "Message traité à nouveau",
    "message.passed_on": "Message transmis au service",
    "dossier.answers_read": "Réponses lues dans le message",
    "message.downloaded": "Message d'origine consulté",
    "piece.viewed": "Pièce consultée",
    "reply.queued": "Réponse préparée",
    "reply.suppressed": "Réponse retenue",
    "reply.held": "Réponse en attente d'envoi (plafond atteint)",
    "reply.released": "Réponse mise en file d'envoi",
}
# Rules of the classification chain that decide a verdict, as staff read them.
RULE_LABELS: dict[str, str] = {
    "score": "classement incertain",
    "over_limits": "une limite de taille a été dépassée, lecture incomplète",
    "dossier_reference": "référence de dossier citée",
    "reply_to_our_mail": "réponse à l'un de nos messages",
    "same_sender_open_dossier": "dossier ouvert du même expéditeur",
    "not_the_applicant": "l'expéditeur n'est pas le porteur du dossier cité",
    # Rules that recognise mail sent by machines (never answered).
    "loop_header": "l'un de nos propres messages",
    "null_return_path": "message envoyé par un robot (sans adresse de retour)",
    "robot_sender": "expéditeur automatique (no-reply, mailer-daemon…)",
    "robot_headers": "message automatique (absence, non-remise, vérification anti-spam)",
    "robot_subject": "objet d'un message automatique (absence, non-remise)",
    "auto_submitted": "message automatique",
    "bulk_precedence": "envoi en nombre (lettre d'information, publicité)",
    "list_headers": "liste de diffusion ou lettre d'information",
    "auto_response_suppress": "message automatique",
    "autoreply_headers": "réponse automatique (absence, accusé de réception)",
    "delivery_report": "avis de non-remise ou de remise",
    "own_sender": "envoyé depuis l'une de nos adresses",
}

# Reply labels may name: {to} (the recipient), {kind} (the reply kind, worded),
# {reference}, {address}, {count}, {replies} ("3 réponses") and {cap}.
REPLY_HOLD_LABELS: dict[ReplyHold, str] = {
    ReplyHold.REPLIES_DISABLED: (
        "les réponses automatiques sont désactivées (replies.enabled = false)"
    ),
    ReplyHold.NO_SENDER_ADDRESS: "pas d'adresse d'expéditeur utilisable",
    ReplyHold.RECIPIENT_IS_OURS: (
        "l'expéditeur {to} est l'une de nos boîtes ou un membre du service"
    ),
    ReplyHold.FROM_OUR_ADDRESS: "le message vient de notre propre adresse {address}",
    ReplyHold.AUTHENTICATION_FAILED: "l'expéditeur a échoué aux contrôles DMARC/SPF/DKIM",
    ReplyHold.AUTHENTICATION_NOT_PASSED: (
        "l'expéditeur n'a pas passé les contrôles DMARC/SPF/DKIM"
    ),
    ReplyHold.ALREADY_SENT: "une réponse « {kind} » a déjà été envoyée pour {reference}",
    ReplyHold.SENDER_DAILY_CAP: "{to} a déjà reçu {replies} aujourd'hui (plafond : {cap})",
    ReplyHold.HOURLY_CAP: "{count} réponses envoyées dans l'heure (plafond : {cap})",
    ReplyHold.DOMAIN_DAILY_CAP: (
        "le domaine {domain} a déjà reçu {replies} aujourd'hui (plafond : {cap})"
    ),
    ReplyHold.GLOBAL_DAILY_CAP: "{count} réponses envoyées sur 24 heures (plafond : {cap})",
}
# Delivery labels may name {attempts}; the server's response follows them.
DELIVERY_FAILURE_LABELS: dict[DeliveryFailure, str] = {
    DeliveryFailure.REFUSED: "refus définitif du serveur",
    DeliveryFailure.GAVE_UP: "abandon après {attempts} tentatives",
    DeliveryFailure.INTERRUPTED: (
        "envoi interrompu ; non renvoyée pour éviter un doublon : vérifier auprès du destinataire"
    ),
}
# Failures whose stored detail (the server's words) is worth showing after the label.
_DELIVERY_DETAIL_SHOWN = frozenset({DeliveryFailure.REFUSED, DeliveryFailure.GAVE_UP})
REVIEW_REASON_LABELS: dict[ReviewReason, str] = {
    ReviewReason.PARSE_ERROR: "message illisible",
    ReviewReason.ANALYSIS_ERROR: "erreur d'analyse",
    ReviewReason.FILING_ERROR: "erreur d'enregistrement",
    ReviewReason.UNCERTAIN_SCORE: RULE_LABELS["score"],
    ReviewReason.OVER_LIMITS: RULE_LABELS["over_limits"],
    ReviewReason.UNKNOWN_DOSSIER: "le message cite un dossier inconnu",
    ReviewReason.UNREADABLE_ATTACHMENT: (
        "aucun dossier lu ; une pièce jointe illisible pourrait le contenir"
    ),
    ReviewReason.DOSSIER_UNCERTAIN: "le dossier d'intention a été lu avec un doute",
    ReviewReason.OVER_BUDGET: (
        "lecture interrompue : le temps de lecture alloué au message est épuisé, "
        "des pièces n'ont pas été lues"
    ),
    ReviewReason.NOT_THE_APPLICANT: (
        "message citant un dossier, envoyé par une autre personne que le porteur : "
        "à rattacher après vérification (mailbot messages attach)"
    ),
    ReviewReason.FOLLOW_UP_UNREAD: (
        "suite d'un dossier sans pièce jointe ni réponse lisible : à lire "
        "(le porteur a été informé que son message est transmis au service)"
    ),
}
# Mailbox labels may name {waiting} ("3 messages attendent").
MAILBOX_CHECK_LABELS: dict[MailboxCheck, str] = {
    MailboxCheck.UNREACHABLE: "injoignable",
    MailboxCheck.CHECK_FAILED: "contrôle impossible",
    MailboxCheck.NEVER_POLLED: "jamais relevée : {waiting} le premier relevé",
    MailboxCheck.UIDVALIDITY_CHANGED: (
        "le dossier IMAP a été recréé sur le serveur (UIDVALIDITY modifiée) : "
        "il sera entièrement relu au prochain relevé"
    ),
}
# The same reasons as the back-office's review page says them, where the
# label above names a command: what staff can do on the page instead.
WEB_REVIEW_REASON_LABELS: dict[ReviewReason, str] = {
    ReviewReason.NOT_THE_APPLICANT: (
        "message citant un dossier, envoyé par une autre personne que le porteur : "
        "vérifiez-le, puis rattachez-le au dossier avec le bouton « Rattacher » "
        "ou écartez-le avec le bouton « Écarter »"
    ),
}
# Why a staff action was refused (``mailbot.errors.RefusedError``), worded by
# ``refusal_text``: {status} and {allowed} are worded statuses, {choices} is
# the list of the field's printed choices or a hint of what it expects.
REFUSAL_LABELS: dict[Refusal, str] = {
    Refusal.NOT_A_DECISION: (
        "« {status} » n'est pas une décision possible ; décisions possibles : {allowed}"
    ),
    Refusal.NO_DOSSIER: "aucun dossier ne porte la référence {reference}",
    Refusal.NO_MESSAGE: "aucun message n° {message}",
    Refusal.NOT_DISMISSABLE: (
        "le message n° {message} est « {status} » : seuls les messages en échec "
        "ou à vérifier peuvent être écartés"
    ),
    Refusal.NOT_ATTACHABLE: (
        "le message n° {message} est « {status} » : seuls les messages à vérifier "
        "ou en échec peuvent être rattachés à un dossier"
    ),
    Refusal.NOT_RETRYABLE: (
        "le message n° {message} est « {status} » : seuls les messages en échec "
        "ou à vérifier peuvent être traités à nouveau"
    ),
    Refusal.RAW_NOT_KEPT: "le message d'origine n° {message} n'a pas été conservé",
    Refusal.MESSAGE_UNREADABLE: "le message n° {message} ne peut pas être lu",
    Refusal.UNKNOWN_FIELD: "champ inconnu « {field} » (champs : {fields})",
    Refusal.INVALID_VALUE: "« {value} » n'est pas une valeur reconnue pour « {field} » ({choices})",
}
# What a field of each kind expects, when a corrected value is refused.
FIELD_KIND_HINTS: dict[str, str] = {
    FieldKind.AMOUNT: "un montant en euros est attendu, par exemple 12 500 €",
    FieldKind.DATE: "une date est attendue, par exemple 15/03/2026",
    FieldKind.EMAIL: "une adresse électronique est attendue",
    FieldKind.PHONE: "un numéro de téléphone est attendu",
}
# Every reason enum and its table, for the completeness test and ``reason_label``.
REASON_LABELS: dict[type[StrEnum], Mapping[Any, str]] = {
    ReplyHold: REPLY_HOLD_LABELS,
    DeliveryFailure: DELIVERY_FAILURE_LABELS,
    ReviewReason: REVIEW_REASON_LABELS,
    MailboxCheck: MAILBOX_CHECK_LABELS,
    Refusal: REFUSAL_LABELS,
}
# Shown when a row carries no code (written before reasons were codes).
UNCODED_HOLD = "réponse retenue"
UNCODED_DELIVERY = "échec de l'envoi"
UNCODED_REVIEW = "à examiner"
UNCODED_REFUSAL = "action impossible"
NO_THEMATIQUE = "Non renseignée"
NO_CRITERION = "Aucun critère coché"

_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

_Code = TypeVar("_Code", bound=StrEnum)


# --------------------------------------------------------------------------
# Codes


def code_of(enum: type[_Code], value: str | None) -> _Code | None:
    """``value`` as a member of ``enum``, or None when it is not one of its codes."""
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        return None


def reason_label(code: StrEnum, **params: Any) -> str:
    """The French label of any reason code, its ``{placeholders}`` filled from ``params``."""
    template = REASON_LABELS[type(code)][code]
    return template.format_map(_Params(params))


def refusal_text(error: Exception) -> str:
    """Why a staff action was refused, in French (a ``RefusedError``'s code and parameters).

    Any other error is a failure the pages did not expect: its own text is
    shown after a French label, cut to ``REASON_MAX_LENGTH``.
    """
    code = getattr(error, "code", None)
    if not isinstance(error, RefusedError) or not isinstance(code, Refusal):
        return shorten(f"{UNCODED_REFUSAL} : {error}")
    params = dict(error.params)
    if "status" in params:
        status = str(params["status"])
        table = MESSAGE_STATUS_LABELS if "message" in params else DOSSIER_STATUS_LABELS
        params["status"] = label(table, status)
    if "allowed" in params:
        params["allowed"] = ", ".join(label(DOSSIER_STATUS_LABELS, s) for s in params["allowed"])
    if "fields" in params:
        params["fields"] = ", ".join(params["fields"])
    if code == Refusal.INVALID_VALUE:
        choices = params.get("choices") or []
        hint = FIELD_KIND_HINTS.get(str(params.get("kind")), "valeur non reconnue")
        params["choices"] = "choix possibles : " + ", ".join(choices) if choices else hint
    return shorten(reason_label(code, **params))


class _Params(dict[str, Any]):
    """Format parameters; a missing one reads as a neutral word rather than failing."""

    def __missing__(self, key: str) -> str:
        return "?"


def label(table: Mapping[str, str], value: str | None) -> str:
    """A status, verdict or kind worded from ``table``; an unknown value as stored."""
    if value is None:
        return "—"
    return table.get(value, value)


# --------------------------------------------------------------------------
# Reasons of stored rows


def message_reason(message: Message) -> str:
    """Why a message waits for staff, in French.

    With a reason code: its label, then the stored detail (``error``), or for
    a decision of the classification chain the rule's own explanation, or for
    a reading problem the last warning. Without one: the stored error under a
    generic label, else the last warning, else the rule that decided.
    """
    code = code_of(ReviewReason, message.reason)
    if code is not None:
        text = reason_label(code)
        if message.error:
            return shorten(f"{text} : {message.error}")
        rules = {rule for rule, reason in REVIEW_REASON_OF_RULE.items() if reason == code}
        rule_detail = _deciding_rule(message, among=rules)[1] if rules else ""
        if rule_detail:
            return shorten(f"{text} ({rule_detail})")
        warning = _last_warning(message)
        return shorten(f"{text} : {warning}" if warning else text)
    if message.error:
        return shorten(f"{label(MESSAGE_STATUS_LABELS, message.status)} : {message.error}")
    warning = _last_warning(message)
    if warning:
        return shorten(f"avertissement : {warning}")
    rule, detail = _deciding_rule(message)
    if rule:
        text = RULE_LABELS.get(rule, f"règle « {rule} »")
        return shorten(f"{text} ({detail})" if detail else text)
    return UNCODED_REVIEW


def why_ignored(message: Message) -> str:
    """Why a message was set aside without a reply: the rule that decided, else its verdict."""
    rule, _detail = _deciding_rule(message)
    if rule in RULE_LABELS:
        return RULE_LABELS[rule]
    return label(VERDICT_LABELS, message.verdict)


def _last_warning(message: Message) -> str:
    warnings = [str(w) for w in (message.warnings or []) if w]
    return warnings[-1] if warnings else ""


def _deciding_rule(message: Message, *, among: set[str] | None = None) -> tuple[str, str]:
    """(rule, its explanation) of the last rule of the trace that hit (one of ``among``)."""
    hits = [
        h
        for h in (message.rule_trace or [])
        if isinstance(h, dict) and h.get("hit") and (among is None or h.get("rule") in among)
    ]
    if not hits:
        return "", ""
    return str(hits[-1].get("rule", "")), str(hits[-1].get("reason") or "")


def reply_reason(row: Outbox, *, reference: str | None = None) -> str:
    """Why a reply was not sent (suppressed) or not delivered (failed), in French."""
    if row.status in (OutboxStatus.SUPPRESSED, OutboxStatus.HELD):
        hold = code_of(ReplyHold, row.suppressed_reason)
        if hold is None:
            return shorten(f"{UNCODED_HOLD} : {row.suppressed_reason}")
        params = dict(row.suppressed_details or {})
        count = params.get("count")
        params.update(
            to=row.to_addr,
            kind=label(REPLY_KIND_LABELS, row.kind),
            reference=reference or "ce dossier",
            replies=plural(int(count), "réponse", "réponses") if count is not None else "?",
        )
        return shorten(reason_label(hold, **params))
    failure = code_of(DeliveryFailure, row.failure_reason)
    if failure is None:
        return shorten(
            f"{UNCODED_DELIVERY} : {row.last_error}" if row.last_error else UNCODED_DELIVERY
        )
    text = reason_label(failure, attempts=row.attempts)
    if failure in _DELIVERY_DETAIL_SHOWN and row.last_error:
        text = f"{text} : {row.last_error}"
    return shorten(text)


def mailbox_check_note(code: MailboxCheck, *, waiting: int = 0) -> str:
    """What the digest says of a mailbox it could not compare with the ledger."""
    return reason_label(code, waiting=plural(waiting, "message attend", "messages attendent"))


# --------------------------------------------------------------------------
# Reading warnings

# The parsers note reading problems in short English phrases ("FILE: what");
# staff read them through this table. Patterns are tried in order on the part
# after "FILE: "; an unknown phrase is shown as stored, under a generic label.
READING_WARNING_LABELS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), text)
    for pattern, text in (
        (r"^encrypted PDF", "PDF protégé par un mot de passe, non lu"),
        (
            r"^page (?P<page>\d+) cut at (?P<chars>[\d,]+) characters",
            "page {page} lue en partie seulement (trop longue)",
        ),
        (r"^page (?P<page>\d+) too large to render", "page {page} trop grande pour être lue"),
        (r"^page (?P<page>\d+) unreadable", "page {page} illisible"),
        (r"^page tree unreadable", "pages du PDF illisibles"),
        (r"^damaged PDF structure", "structure du PDF endommagée"),
        (r"^form fields unreadable", "champs de formulaire du PDF illisibles"),
        (r"^unreadable PDF", "PDF illisible"),
        (r"^no text found", "aucun texte trouvé (document scanné sans OCR ?)"),
        (r"^unreadable image", "image illisible"),
        (r"^not a readable Word document", "document Word illisible"),
        (r"^(could not be read|unreadable)", "fichier illisible"),
        (r"^unknown file type", "type de fichier inconnu, non lu"),
        (
            r"^no dossier found; unreadable attachment\(s\) may hold it: (?P<names>.*)$",
            "aucun dossier lu ; pièce(s) illisible(s) qui pourrai(en)t le contenir : {names}",
        ),
        (r"^message text cut to", "texte du message tronqué (trop long)"),
        (r"^nested archive", "archive dans une archive, non ouverte"),
        (r"^over \d+ bytes once inflated", "fichier trop volumineux une fois décompressé, ignoré"),
        (r"OCR", "lecture optique (OCR) incomplète"),
    )
)
UNWORDED_WARNING = "avertissement de lecture"


def reading_warning(text: str) -> str:
    """A reading warning of the parsers, in French, with the file it concerns."""
    text = " ".join(str(text).split())
    name, _separator, phrase = text.partition(": ")
    # A warning about the whole message first, then "FILE: what" about one file.
    for subject, said in (("", text), (name, phrase)):
        for pattern, template in READING_WARNING_LABELS:
            found = pattern.search(said) if said else None
            if found:
                worded = template.format_map(_Params(found.groupdict()))
                return shorten(f"{subject} : {worded}" if subject else worded)
    return shorten(f"{UNWORDED_WARNING} : {text}")


# The dossier reader says why it doubts a field (``FieldEvidence.doubt``) in
# short English phrases; staff read them through this table, tried in order.
READING_DOUBT_LABELS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), text)
    for pattern, text in (
        (r"neither clearly ticked nor empty", "une case ni nettement cochée ni vide"),
        (r"no tick seen", "aucune coche vue ; l'option a été déduite d'une case absente"),
        (
            r"several boxes .*ticked",
            "plusieurs cases lues comme cochées là où une seule est attendue",
        ),
        (
            r"every box read as ticked",
            "toutes les cases lues comme cochées (cochées et vides non distinguées)",
        ),
        (r"no box read as ticked", "aucune case lue comme cochée (une coche a pu être perdue)"),
        (r"option without its box", "une option sans sa case dans la lecture optique"),
        (
            r"label not found in the OCR",
            "libellé introuvable dans la lecture optique (la valeur peut y être, non lue)",
        ),
    )
)
UNWORDED_DOUBT = "lecture incertaine"


def reading_doubt(text: str | None) -> str:
    """Why a field was read with doubt, in French (an unknown phrase shown as stored)."""
    if not text:
        return UNWORDED_DOUBT
    for pattern, worded in READING_DOUBT_LABELS:
        if pattern.search(text):
            return worded
    return shorten(f"{UNWORDED_DOUBT} : {text}")


def confidence_text(value: Any) -> str:
    """A reading's confidence as staff read it: ``40 %``; empty when unknown."""
    if not isinstance(value, int | float):
        return ""
    return f"{round(float(value) * 100)} %"


# --------------------------------------------------------------------------
# Choices of rules.toml


def choice_label(choices: Mapping[str, Any], key: Any) -> str | None:
    """The printed label of a choice key (thématique, criterion, …); unknown keys as given."""
    if key is None or key == "":
        return None
    choice = choices.get(key) if isinstance(key, str) else None
    return choice.label if choice is not None else str(key)


def thematique_label(rules: Rules, key: Any) -> str | None:
    return choice_label(rules.thematiques, key)


def criterion_label(rules: Rules, key: Any) -> str | None:
    return choice_label(rules.criteria, key)


def category_label(rules: Rules, key: Any) -> str | None:
    return choice_label(rules.categories, key)


def worded_fields(fields: Mapping[str, Any], rules: Rules) -> dict[str, Any]:
    """Field values with choice keys replaced by their printed labels; unknown fields dropped."""
    sources: dict[FieldKind, Mapping[str, Any]] = {
        FieldKind.THEMATIQUE: rules.thematiques,
        FieldKind.CRITERIA: rules.criteria,
        FieldKind.CATEGORY: rules.categories,
        FieldKind.NATURE: rules.natures,
    }
    out: dict[str, Any] = {}
    for key, value in fields.items():
        rule = rules.fields.get(key)
        if rule is None:
            continue
        choices = sources.get(rule.kind)
        if choices is None:
            out[key] = value
        elif isinstance(value, list):
            out[key] = [choice_label(choices, v) for v in value]
        else:
            out[key] = choice_label(choices, value)
    return out


# --------------------------------------------------------------------------
# Numbers, dates, lengths


def plural(count: int, one: str, many: str) -> str:
    """``1 dossier``, ``0 dossier``, ``2 dossiers`` (French: 0 and 1 are singular)."""
    return f"{count} {one if count <= 1 else many}"


def long_date(day: date) -> str:
    """``mardi 1er décembre 2026``, whatever the machine's locale."""
    number = "1er" if day.day == 1 else str(day.day)
    return f"{_DAYS[day.weekday()]} {number} {_MONTHS[day.month - 1]} {day.year}"


def service_zone(config: Config) -> ZoneInfo:
    """The service's time zone (``[service] timezone``): every time staff read is local."""
    return ZoneInfo(config.settings.service.timezone)


def moment(value: datetime | str | None) -> datetime | None:
    """A stored time, or its ISO 8601 text (as the views give it), as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    # Timestamps are stored in UTC; SQLite may hand them back without their zone.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def local_moment(value: datetime | str | None, zone: ZoneInfo) -> datetime | None:
    """A stored time in the service's time zone, or None."""
    found = moment(value)
    return found.astimezone(zone) if found is not None else None


def local_date_time(value: datetime | str | None, zone: ZoneInfo) -> str:
    """``24/11/2026 10:12`` in the service's time zone; empty for None.

    The one way a time is written for staff: CLI tables, exports, the digest
    and the back-office pages all call this.
    """
    local = local_moment(value, zone)
    if local is None:
        return ""
    return f"{local:%d/%m/%Y %H:%M}"


def days_waiting(delta: timedelta) -> str:
    """How long a dossier has waited: ``reçu aujourd'hui``, ``3 jours``."""
    if delta.days <= 0:
        return "reçu aujourd'hui"
    return plural(delta.days, "jour", "jours")


def shorten(text: str, limit: int = REASON_MAX_LENGTH) -> str:
    """``text`` on one line, cut with an ellipsis past ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------
# Evidence of a field read (where, how sure, why not surer)

# The layer a value was read from (``FieldEvidence.layer``).
EVIDENCE_LAYER_LABELS: dict[str, str] = {
    "form": "formulaire PDF",
    "table": "tableau du PDF",
    "docx": "document Word",
    "text": "texte du PDF",
    "ocr": "lecture optique (OCR)",
    "correction": "correction du service",
}
# Where a value was read (``FieldEvidence.source``: short English phrases of
# the parsers, "line '…' on page 2 of dossier.pdf"). Tried in order; ``{where}``
# is worded again ("page 2 de dossier.pdf").
EVIDENCE_SOURCE_LABELS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), text)
    for pattern, text in (
        (r"^form field '(?P<name>.*)' in (?P<where>.*)$", "champ « {name} » du formulaire {where}"),
        (r"^form checkboxes '.*' in (?P<where>.*)$", "cases à cocher du formulaire {where}"),
        (r"^ocr line '(?P<line>.*)' on (?P<where>.*)$", "ligne lue par OCR « {line} », {where}"),
        (r"^line '(?P<line>.*)' on (?P<where>.*)$", "ligne « {line} », {where}"),
        (r"^docx table (?:on|in) (?P<where>.*)$", "tableau du document Word, {where}"),
        (r"^table row (?:on|in) (?P<where>.*)$", "ligne de tableau, {where}"),
        (r"^two-column row on (?P<where>.*)$", "ligne à deux colonnes, {where}"),
        (r"^OCR of (?P<where>.*)$", "lecture optique (OCR) de {where}"),
        (r"^correction$", "correction du service"),
    )
)
_EVIDENCE_PAGE = re.compile(r"^page (?P<page>\d+) of (?P<name>.*)$", re.DOTALL)
# Why a reading is in doubt (``FieldEvidence.doubt``), by the start of the phrase.
DOUBT_LABELS: tuple[tuple[str, str], ...] = (
    (
        "a box neither clearly ticked nor empty",
        "une case n'est ni nettement cochée ni vide (encre mesurée sur l'image)",
    ),
    (
        "no tick seen; the option was guessed",
        "aucune coche vue : l'option a été déduite d'une case absente de l'OCR",
    ),
    (
        "several boxes read as ticked where one is expected",
        "plusieurs cases lues comme cochées là où une seule est attendue",
    ),
    (
        "no box read as ticked in the OCR",
        "aucune case lue comme cochée par l'OCR (une coche a pu être perdue)",
    ),
    (
        "every box read as ticked in the OCR",
        "toutes les cases lues comme cochées par l'OCR : cases cochées et vides non distinguées",
    ),
    (
        "an option without its box in the OCR",
        "une option sans sa case dans l'OCR (sa coche a pu être perdue)",
    ),
    (
        "label not found in the OCR text",
        "libellé du champ introuvable dans le texte OCR (la valeur peut y être, non lue)",
    ),
)
# Confidence (0–1) at or above which a reading is called sure.
SURE_CONFIDENCE = 0.9


def evidence_source(source: Any) -> str:
    """Where a field was read, in French (``ligne « … », page 1 de dossier.pdf``)."""
    text = " ".join(str(source or "").split())
    if not text:
        return ""
    for pattern, template in EVIDENCE_SOURCE_LABELS:
        found = pattern.match(text)
        if found:
            parts = found.groupdict()
            if "where" in parts:
                page = _EVIDENCE_PAGE.match(parts["where"])
                if page:
                    parts["where"] = f"page {page['page']} de {page['name']}"
            return shorten(template.format_map(_Params(parts)))
    return shorten(text)


def doubt_label(doubt: Any) -> str:
    """Why a reading is uncertain, in French; an unknown phrase after a generic label."""
    text = " ".join(str(doubt or "").split())
    if not text:
        return ""
    for start, worded in DOUBT_LABELS:
        if text.startswith(start):
            return worded
    return shorten(f"{UNWORDED_DOUBT} : {text}")


def confidence_label(confidence: Any, *, uncertain: bool = False) -> str:
    """``lecture sûre``, ``lecture probable (75 %)``, ``lecture incertaine (40 %)``; or ""."""
    if not isinstance(confidence, int | float) or isinstance(confidence, bool):
        return "lecture incertaine" if uncertain else ""
    percent = f"{round(confidence * 100)}\u202f%"
    if uncertain:
        return f"lecture incertaine ({percent})"
    if confidence >= SURE_CONFIDENCE:
        return "lecture sûre"
    return f"lecture probable ({percent})"


def worded_evidence(item: Mapping[str, Any] | None) -> dict[str, Any]:
    """A field's stored evidence as staff read it: every part in French, or empty.

    Keys: ``source`` (where), ``raw`` (the text as read, unchanged), ``layer``,
    ``confidence``, ``doubt`` (why it is uncertain), ``by`` (who corrected it)
    and ``uncertain`` (a bool). Stored evidence written before confidence was
    kept simply lacks those parts.
    """
    item = item or {}
    corrected = item.get("source") == "correction"
    uncertain = bool(item.get("uncertain")) and not corrected
    return {
        "source": evidence_source(item.get("source")),
        "raw": str(item.get("raw") or "").strip(),
        "layer": "" if corrected else EVIDENCE_LAYER_LABELS.get(str(item.get("layer") or ""), ""),
        "confidence": ""
        if corrected
        else confidence_label(item.get("confidence"), uncertain=uncertain),
        "doubt": doubt_label(item.get("doubt")) if uncertain or item.get("doubt") else "",
        "by": str(item.get("by") or "") if corrected else "",
        "uncertain": uncertain,
    }
