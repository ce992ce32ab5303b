"""French wording of codes: every reason, status, verdict and kind has its label; rows read well."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import pytest

from mailbot import wording
from mailbot.config import load_config
from parsers.reasons import (
    ALL_REASONS,
    REVIEW_REASON_OF_RULE,
    DeliveryFailure,
    MailboxCheck,
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
from tests.fixtures.config import SHIPPED_CONFIG

RULES = load_config(SHIPPED_CONFIG, environ={}).rules


@pytest.mark.parametrize("enum", ALL_REASONS, ids=lambda e: e.__name__)
def test_every_reason_code_has_a_french_label(enum: type[StrEnum]) -> None:
    table = wording.REASON_LABELS[enum]
    assert set(table) == set(enum), f"{enum.__name__}: labels missing or extra"
    for member in enum:
        text = wording.reason_label(member)
        assert text and text != member.value and "_" not in text.replace("replies.enabled", "")


def test_every_reason_enum_is_worded_and_codes_fit_their_column() -> None:
    assert set(wording.REASON_LABELS) == set(ALL_REASONS)
    for enum in ALL_REASONS:
        for member in enum:
            assert len(member.value) <= 32 and member.value.isascii()
    assert set(REVIEW_REASON_OF_RULE.values()) <= set(ReviewReason)


@pytest.mark.parametrize(
    ("table", "enum"),
    [
        (wording.DOSSIER_STATUS_LABELS, DossierStatus),
        (wording.MESSAGE_STATUS_LABELS, MessageStatus),
        (wording.OUTBOX_STATUS_LABELS, OutboxStatus),
        (wording.VERDICT_LABELS, Verdict),
        (wording.REPLY_KIND_LABELS, OutboxKind),
    ],
    ids=lambda value: getattr(value, "__name__", "labels"),
)
def test_every_status_verdict_and_kind_has_a_label(table, enum) -> None:
    assert set(table) == set(enum)
    assert wording.label(table, "no_such_value") == "no_such_value"
    assert wording.label(table, None) == "—"


def _reply(status: str, **values) -> Outbox:
    return Outbox(
        dedup_key="acknowledgement:1:1",
        kind=OutboxKind.ACKNOWLEDGEMENT,
        mailbox="n.bataillon",
        from_addr="n.bataillon@ville-bethune.fr",
        to_addr="marie@example.org",
        subject="Accusé de réception",
        message_id="<r@x>",
        raw=b"",
        status=status,
        **values,
    )


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        (
            {
                "suppressed_reason": ReplyHold.SENDER_DAILY_CAP,
                "suppressed_details": {"count": 5, "cap": 5},
            },
            "marie@example.org a déjà reçu 5 réponses aujourd'hui (plafond : 5)",
        ),
        (
            {"suppressed_reason": ReplyHold.ALREADY_SENT},
            "une réponse « accusé de réception » a déjà été envoyée pour BSC-2026-0001",
        ),
        (
            {"suppressed_reason": ReplyHold.AUTHENTICATION_FAILED},
            "l'expéditeur a échoué aux contrôles DMARC/SPF/DKIM",
        ),
        (
            {"suppressed_reason": ReplyHold.RECIPIENT_IS_OURS},
            "l'expéditeur marie@example.org est l'une de nos boîtes ou un membre du service",
        ),
        (
            {
                "suppressed_reason": ReplyHold.FROM_OUR_ADDRESS,
                "suppressed_details": {"address": "nb@ville-bethune.fr"},
            },
            "le message vient de notre propre adresse nb@ville-bethune.fr",
        ),
        (
            {
                "suppressed_reason": ReplyHold.HOURLY_CAP,
                "suppressed_details": {"count": 40, "cap": 40},
            },
            "40 réponses envoyées dans l'heure (plafond : 40)",
        ),
        # Written before reasons were codes: shown under a generic label.
        ({"suppressed_reason": "something new"}, "réponse retenue : something new"),
    ],
)
def test_suppressed_replies_are_worded_from_their_code(values, shown) -> None:
    row = _reply(OutboxStatus.SUPPRESSED, **values)
    assert wording.reply_reason(row, reference="BSC-2026-0001") == shown


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        (
            {
                "failure_reason": DeliveryFailure.GAVE_UP,
                "attempts": 10,
                "last_error": "451 4.3.0 Try again later",
            },
            "abandon après 10 tentatives : 451 4.3.0 Try again later",
        ),
        (
            {"failure_reason": DeliveryFailure.REFUSED, "last_error": "550 5.1.1 No such user"},
            "refus définitif du serveur : 550 5.1.1 No such user",
        ),
        (
            {
                "failure_reason": DeliveryFailure.INTERRUPTED,
                "last_error": "interrupted while sending",
            },
            "envoi interrompu ; non renvoyée pour éviter un doublon : "
            "vérifier auprès du destinataire",
        ),
        ({"last_error": "boom"}, "échec de l'envoi : boom"),
        ({}, "échec de l'envoi"),
    ],
)
def test_failed_deliveries_are_worded_from_their_code(values, shown) -> None:
    assert wording.reply_reason(_reply(OutboxStatus.FAILED, **values)) == shown


def _message(**values) -> Message:
    defaults = {
        "dedup_key": "sha:1",
        "sha256": "0" * 64,
        "size": 1,
        "sender": "claire@example.org",
        "status": MessageStatus.NEEDS_REVIEW,
    }
    return Message(**{**defaults, **values})


SCORE_HIT = {"rule": "score", "hit": True, "reason": "score 3 >= review_threshold 3: needs_review"}
OTHER_HIT = {"rule": "mailbox_weight", "hit": True, "reason": "mailbox 'n.bataillon' (+1)"}


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        (
            {"reason": ReviewReason.UNKNOWN_DOSSIER, "error": "BSC-2020-0999"},
            "le message cite un dossier inconnu : BSC-2020-0999",
        ),
        (
            {"reason": ReviewReason.PARSE_ERROR, "error": "ValueError('x')", "status": "failed"},
            "message illisible : ValueError('x')",
        ),
        (
            {"reason": ReviewReason.UNCERTAIN_SCORE, "rule_trace": [SCORE_HIT, OTHER_HIT]},
            "classement incertain (score 3 >= review_threshold 3: needs_review)",
        ),
        (
            {"reason": ReviewReason.UNREADABLE_ATTACHMENT, "warnings": ["scan.pdf: encrypted PDF"]},
            "aucun dossier lu ; une pièce jointe illisible pourrait le contenir : "
            "scan.pdf: encrypted PDF",
        ),
        # Rows without a code: the stored detail under the status, else warning, else rule.
        (
            {"error": "follow-up names an unknown dossier 'BSC-2020-0999'"},
            "à vérifier : follow-up names an unknown dossier 'BSC-2020-0999'",
        ),
        ({"error": "boom", "status": "failed"}, "en échec : boom"),
        ({"warnings": ["a", "b"]}, "avertissement : b"),
        (
            {"rule_trace": [SCORE_HIT]},
            "classement incertain (score 3 >= review_threshold 3: needs_review)",
        ),
        ({"rule_trace": [{"rule": "custom", "hit": True}]}, "règle « custom »"),
        ({}, "à examiner"),
    ],
)
def test_messages_to_review_say_why(values, shown) -> None:
    assert wording.message_reason(_message(**values)) == shown


def test_long_reasons_are_cut_on_one_line() -> None:
    text = wording.message_reason(_message(reason=ReviewReason.ANALYSIS_ERROR, error="x\n" * 400))
    assert len(text) <= wording.REASON_MAX_LENGTH and text.endswith("…") and "\n" not in text


def test_mailbox_notes() -> None:
    assert wording.mailbox_check_note(MailboxCheck.NEVER_POLLED, waiting=1) == (
        "jamais relevée : 1 message attend le premier relevé"
    )
    assert wording.mailbox_check_note(MailboxCheck.NEVER_POLLED, waiting=4) == (
        "jamais relevée : 4 messages attendent le premier relevé"
    )
    assert "UIDVALIDITY" in wording.mailbox_check_note(MailboxCheck.UIDVALIDITY_CHANGED)


def test_dates_and_choices() -> None:
    assert wording.long_date(date(2026, 12, 1)) == "mardi 1er décembre 2026"
    assert wording.long_date(date(2026, 11, 25)) == "mercredi 25 novembre 2026"
    paris = ZoneInfo("Europe/Paris")
    assert wording.local_date_time(datetime(2026, 7, 1, 8, 5, tzinfo=UTC), paris) == (
        "01/07/2026 à 10:05"
    )
    assert wording.local_date_time(None, paris) == ""
    assert wording.days_waiting(timedelta(hours=5)) == "reçu aujourd'hui"
    assert wording.days_waiting(timedelta(days=1)) == "1 jour"
    assert wording.days_waiting(timedelta(days=3)) == "3 jours"
    assert wording.thematique_label(RULES, "habitat_environnement") == "Habitat – Environnement"
    assert wording.thematique_label(RULES, "unknown") == "unknown"
    assert wording.thematique_label(RULES, None) is None
    assert wording.criterion_label(RULES, "collaborative") == "Collaborative"
    worded = wording.worded_fields(
        {"thematique": "loisirs_culture", "criteres": ["durable"], "intitule": "X", "zzz": 1},
        RULES,
    )
    assert worded == {"thematique": "Loisirs – Culture", "criteres": ["Durable"], "intitule": "X"}
