"""The classifier: every chain rule, the chain order, references and the score.

Messages are built as ``ParsedMail`` directly (no MIME parsing here) and
classified with the shipped ``config/rules.toml``, so a change to the shipped
weights that breaks a realistic case shows up here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from mailbot.config import CHAIN_ACTIONS, CHAIN_RULES, DetectionRules, Verdict, load_config
from parsers.classify import (
    ACTIONS,
    RULES,
    SCAN_CHARS,
    Classification,
    Classifier,
    ClassifyContext,
    Correspondence,
    OpenDossier,
    ReadingFacts,
    RuleHit,
    Stage,
    classify,
    make_reply_message_id,
    reference_from_message_id,
)
from parsers.types import Attachment, ParsedMail
from tests.fixtures.config import SHIPPED_CONFIG

DOMAIN = "ville-bethune.fr"
APPLICANT = "marie.dupont@asso-quartier.fr"
STAFF = "d.berteloot@ville-bethune.fr"
MAILBOX = "n.bataillon@ville-bethune.fr"
SAME_SENDER = "same_sender_open_dossier"
NOT_THE_APPLICANT = "not_the_applicant"
COLLEAGUE = "jean.martin@asso-quartier.fr"


@pytest.fixture(scope="module")
def config():
    # environ={} so that a developer's MAILBOT_* variables cannot change the result.
    return load_config(SHIPPED_CONFIG, environ={})


@pytest.fixture(scope="module")
def rules(config) -> DetectionRules:
    return config.rules.detection


@pytest.fixture(scope="module")
def ctx(config) -> ClassifyContext:
    return ClassifyContext.from_config(config, mailbox="n.bataillon")


@pytest.fixture(scope="module")
def classifier(rules) -> Classifier:
    return Classifier(rules)


def attachment(filename: str, content_type: str = "application/pdf") -> Attachment:
    data = b"%PDF-1.7 test"
    return Attachment(
        filename=filename, content_type=content_type, data=data, sha256="0" * 64, size=len(data)
    )


def make_parsed(
    *,
    headers: dict[str, Any] | None = None,
    attachments: tuple[str, ...] = (),
    **fields: Any,
) -> ParsedMail:
    """A ParsedMail from an applicant, with plain defaults; headers as name -> value(s)."""
    normalised = {
        name.lower(): (value,) if isinstance(value, str) else tuple(value)
        for name, value in (headers or {}).items()
    }
    values: dict[str, Any] = {
        "sha256": "0" * 64,
        "size": 1000,
        "message_id": "<abc@asso-quartier.fr>",
        "subject": "Bonjour",
        "sender": APPLICANT,
        "sender_name": "Marie Dupont",
        "from_address": APPLICANT,
        "to": (MAILBOX,),
        "return_path": f"<{APPLICANT}>",
        "headers": MappingProxyType(normalised),
        "text": "Bonjour,\n\nCordialement,\nMarie Dupont",
        "attachments": tuple(attachment(name) for name in attachments),
        "content_types": ("text/plain",),
    }
    values.update(fields)
    return ParsedMail(**values)


def realistic_candidature(**fields: Any) -> ParsedMail:
    values: dict[str, Any] = {
        "subject": "Candidature au label Béthune Smart City",
        "text": (
            "Madame, Monsieur,\n\n"
            "Notre association souhaite candidater au label Béthune Smart City pour "
            "son projet de jardins partagés.\n"
            "Vous trouverez ci-joint le dossier d’intention complété ainsi que le "
            "courrier adressé à Monsieur le Maire.\n\n"
            "Bien cordialement,\nMarie Dupont\nAssociation du quartier du Perroy"
        ),
        "attachments": ("dossier_intention.pdf", "courrier_maire.pdf"),
        "content_types": ("multipart/mixed", "text/plain", "application/pdf", "application/pdf"),
    }
    values.update(fields)
    return make_parsed(**values)


class FixedOpenDossiers:
    """The database's answer, fixed: these open dossiers (latest first) for APPLICANT."""

    def __init__(self, *dossiers: OpenDossier, checked: str = "") -> None:
        self.dossiers = dossiers
        self.checked = checked
        self.asked: list[str] = []

    def of_sender(self, sender: str) -> Sequence[OpenDossier]:
        self.asked.append(sender)
        return self.dossiers if sender == APPLICANT else ()

    def correspondence(self, reference: str) -> Correspondence | None:
        """APPLICANT and the colleague we answered speak for these dossiers."""
        if reference not in {d.reference for d in self.dossiers}:
            return None
        sent = frozenset({f"mailbot.{reference}.acknowledgement.0a1b2c3d@{DOMAIN}".lower()})
        return Correspondence(reference, frozenset({APPLICANT, COLLEAGUE}), sent)


def reading_ctx(
    ctx: ClassifyContext,
    *,
    lookup: FixedOpenDossiers | None,
    dossier_present: bool = False,
    title: str = "",
    filed_in: str | None = None,
) -> ClassifyContext:
    """``ctx`` for the second stage: the facts read and the open dossiers."""
    facts = ReadingFacts(dossier_present=dossier_present, title=title)
    return replace(ctx, reading=facts, open_dossiers=lookup, filed_in=filed_in)


def names(result: Classification) -> list[str]:
    return [entry.rule for entry in result.trace]


def hits(result: Classification) -> set[str]:
    return {entry.rule for entry in result.trace if entry.hit}


# --------------------------------------------------------------------------
# Registry


def test_registry_matches_the_config_vocabulary():
    assert RULES.keys() == CHAIN_RULES
    assert ACTIONS.keys() == CHAIN_ACTIONS
    assert all(cls.name == name for name, cls in RULES.items())


def test_shipped_chain_uses_every_rule(rules):
    assert {step.rule for step in rules.chain} == CHAIN_RULES


def test_context_from_config(config, ctx):
    assert ctx.own_addresses == config.settings.own_addresses
    assert MAILBOX in ctx.own_addresses and STAFF in ctx.own_addresses
    assert ctx.loop_header == "X-Mailbot-Loop"
    assert ctx.message_id_domain == DOMAIN
    assert ctx.mailbox == "n.bataillon"
    assert ctx.attachment_texts == ()


# --------------------------------------------------------------------------
# Each rule, hitting and not hitting, alone and in the shipped chain


AUTOMATIC = [
    # rule, ParsedMail fields, why
    ("loop_header", {"headers": {"X-Mailbot-Loop": "bethune-smartcity"}}, "our value"),
    ("loop_header", {"headers": {"X-Mailbot-Loop": "anything"}}, "any value"),
    ("loop_header", {"headers": {"X-Mailbot-Loop": ""}}, "empty value"),
    ("null_return_path", {"return_path": ""}, "empty"),
    ("null_return_path", {"return_path": "<>"}, "<>"),
    ("null_return_path", {"return_path": " < > "}, "<> with blanks"),
    ("null_return_path", {"return_path": None, "headers": {"Return-Path": "<>"}}, "header only"),
    ("robot_sender", {"sender": "mailer-daemon@mx.example.org"}, "mailer-daemon"),
    (
        "robot_sender",
        {"from_address": "Mail Delivery System <MAILER-DAEMON@mx.example.org>"},
        "display name, upper case",
    ),
    ("robot_sender", {"sender": "postmaster@example.org"}, "postmaster"),
    ("robot_sender", {"sender": "listserv@lists.example.org"}, "listserv"),
    ("robot_sender", {"sender": "majordomo@lists.example.org"}, "majordomo"),
    ("robot_sender", {"sender": "foo-request@lists.example.org"}, "*-request"),
    ("robot_sender", {"sender": "owner-foo@lists.example.org"}, "owner-*"),
    ("robot_sender", {"sender": "noreply@example.org"}, "noreply"),
    ("robot_sender", {"sender": "no-reply@example.org"}, "no-reply"),
    ("robot_sender", {"sender": "donotreply@example.org"}, "donotreply"),
    ("robot_sender", {"sender": "do-not-reply@example.org"}, "do-not-reply"),
    ("robot_sender", {"sender": "bounce+x=y@example.org"}, "bounce+x"),
    ("robot_sender", {"sender": "bounces@example.org"}, "bounces"),
    ("auto_submitted", {"headers": {"Auto-Submitted": "auto-replied"}}, "auto-replied"),
    ("auto_submitted", {"headers": {"Auto-Submitted": "auto-generated"}}, "auto-generated"),
    ("auto_submitted", {"headers": {"Auto-Submitted": "Auto-Replied; owner=x"}}, "parameters"),
    ("bulk_precedence", {"headers": {"Precedence": "bulk"}}, "bulk"),
    ("bulk_precedence", {"headers": {"Precedence": "Junk"}}, "junk"),
    ("bulk_precedence", {"headers": {"Precedence": "list"}}, "list"),
    ("bulk_precedence", {"headers": {"X-Precedence": "bulk"}}, "X-Precedence"),
    ("list_headers", {"headers": {"List-Id": "<news.example.org>"}}, "List-Id"),
    ("list_headers", {"headers": {"List-Unsubscribe": "<mailto:u@x.org>"}}, "List-Unsubscribe"),
    ("list_headers", {"headers": {"Mailing-List": "contact x@y.org"}}, "Mailing-List"),
    ("list_headers", {"headers": {"X-Mailing-List": "<x@y.org>"}}, "X-Mailing-List"),
    ("auto_response_suppress", {"headers": {"X-Auto-Response-Suppress": "All"}}, "All"),
    ("auto_response_suppress", {"headers": {"X-Auto-Response-Suppress": "OOF"}}, "OOF"),
    (
        "auto_response_suppress",
        {"headers": {"X-Auto-Response-Suppress": "DR, RN, NRN, AutoReply"}},
        "AutoReply in a list",
    ),
    ("autoreply_headers", {"headers": {"X-Autoreply": "yes"}}, "X-Autoreply"),
    ("autoreply_headers", {"headers": {"X-Autorespond": "Absent"}}, "X-Autorespond"),
    ("autoreply_headers", {"headers": {"X-Autoresponder": "1"}}, "X-Autoresponder"),
    (
        "delivery_report",
        {"content_types": ("multipart/report", "text/plain", "message/delivery-status")},
        "DSN",
    ),
    (
        "delivery_report",
        {"content_types": ("multipart/report", "message/disposition-notification")},
        "MDN",
    ),
    (
        "delivery_report",
        {"content_types": ("message/global-delivery-status",)},
        "global DSN",
    ),
]


@pytest.mark.parametrize(
    ("rule", "fields"),
    [(rule, fields) for rule, fields, _ in AUTOMATIC],
    ids=[f"{rule}-{why}" for rule, _, why in AUTOMATIC],
)
def test_automatic_message_is_never_answered(rule, fields, rules, ctx, classifier):
    mail = realistic_candidature(**fields)
    assert RULES[rule](rules).check(mail, ctx).hit
    # Even dressed as a perfect candidature, the chain stops it before scoring.
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.AUTO_REPLY
    assert result.decided_by == rule
    assert result.score is None


NOT_AUTOMATIC = [
    ("loop_header", {"headers": {"X-Mailbot-Loop-Other": "x"}}, "another header"),
    ("null_return_path", {"return_path": None}, "no Return-Path"),
    ("null_return_path", {"return_path": f"<{APPLICANT}>"}, "real Return-Path"),
    ("robot_sender", {}, "a person"),
    ("robot_sender", {"sender": "jean.noreply@example.org"}, "noreply not at start"),
    ("robot_sender", {"sender": "owner@example.org"}, "owner without dash"),
    ("robot_sender", {"sender": "request@example.org"}, "request without dash"),
    ("robot_sender", {"sender": "bouncer@example.org"}, "bouncer"),
    ("auto_submitted", {"headers": {"Auto-Submitted": "no"}}, "no"),
    ("auto_submitted", {"headers": {"Auto-Submitted": " No ; comment"}}, "No with comment"),
    ("bulk_precedence", {"headers": {"Precedence": "first-class"}}, "first-class"),
    ("bulk_precedence", {"headers": {"Importance": "bulk"}}, "other header"),
    ("list_headers", {"headers": {"X-Listing": "1", "Listener": "x"}}, "list without dash"),
    ("auto_response_suppress", {"headers": {"X-Auto-Response-Suppress": "None"}}, "None"),
    ("auto_response_suppress", {"headers": {"X-Auto-Response-Suppress": "DR, RN"}}, "DR, RN"),
    ("autoreply_headers", {"headers": {"X-Mailer": "Autoreply 2"}}, "other header"),
    ("delivery_report", {}, "ordinary parts"),
    ("delivery_report", {"content_types": ("message/rfc822",)}, "forwarded message"),
]


@pytest.mark.parametrize(
    ("rule", "fields"),
    [(rule, fields) for rule, fields, _ in NOT_AUTOMATIC],
    ids=[f"{rule}-{why}" for rule, _, why in NOT_AUTOMATIC],
)
def test_person_is_not_taken_for_a_robot(rule, fields, rules, ctx, classifier):
    mail = realistic_candidature(**fields)
    assert not RULES[rule](rules).check(mail, ctx).hit
    assert classifier.classify(mail, ctx=ctx).verdict is Verdict.CANDIDATURE


def test_first_hit_wins_and_later_rules_are_not_evaluated(rules, ctx, classifier):
    mail = realistic_candidature(
        subject="Re: BSC-2026-0007 votre dossier",
        headers={"List-Id": "<smartcity.example.org>"},
    )
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.AUTO_REPLY
    assert result.decided_by == "list_headers"
    assert result.reference is None
    chain = [step.rule for step in rules.chain]
    assert names(result) == chain[: chain.index("list_headers") + 1]
    assert "dossier_reference" not in names(result)
    assert hits(result) == {"list_headers"}


def test_chain_order_is_the_configured_order(rules, ctx):
    # Loop header and robot sender both hold: the earlier step decides.
    mail = make_parsed(sender="noreply@example.org", headers={"X-Mailbot-Loop": "x"})
    assert classify(mail, rules=rules, ctx=ctx).decided_by == "loop_header"
    reordered = rules.model_copy(update={"chain": list(reversed(rules.chain))})
    # Reversed, reply_to_our_mail comes first but misses; robot_sender then wins.
    assert classify(mail, rules=reordered, ctx=ctx).decided_by == "robot_sender"


# --------------------------------------------------------------------------
# Our own mail and staff forwarding


def test_own_mailbox_sender_is_not_a_candidature(classifier, ctx):
    mail = realistic_candidature(sender=MAILBOX.upper(), from_address=MAILBOX.upper())
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.NOT_CANDIDATURE
    assert result.decided_by == "own_sender"


def test_staff_forwarding_an_applicants_candidature_is_filed(classifier, ctx):
    mail = realistic_candidature(
        forwarded=True,
        from_address=f"Delphine Berteloot <{STAFF}>",
        sender=APPLICANT,
        subject="TR: Candidature au label Béthune Smart City",
    )
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.CANDIDATURE
    assert "own_sender" in names(result) and "own_sender" not in hits(result)


def test_staff_forwarding_our_own_mail_is_ignored(classifier, ctx):
    mail = realistic_candidature(forwarded=True, from_address=STAFF, sender=MAILBOX)
    assert classifier.classify(mail, ctx=ctx).decided_by == "own_sender"


def test_applicant_forwarding_our_reply_back_is_not_ignored(classifier, ctx):
    # The original is ours, but the person writing to us is the applicant.
    mail = realistic_candidature(forwarded=True, from_address=APPLICANT, sender=MAILBOX)
    assert classifier.classify(mail, ctx=ctx).verdict is Verdict.CANDIDATURE


# --------------------------------------------------------------------------
# Dossier references


@pytest.mark.parametrize(
    ("subject", "text", "reference"),
    [
        ("Re: dossier BSC-2026-0007", "", "BSC-2026-0007"),
        ("Réf : bsc-2026-0012", "", "BSC-2026-0012"),
        ("RÉF. Bsc-2026-0012 pièces", "", "BSC-2026-0012"),
        (
            "Pièces complémentaires",
            "Voici le courrier pour le dossier BSC-2025-0103.",
            "BSC-2025-0103",
        ),
        ("BSC-2026-00012", "", "BSC-2026-0012"),
        ("BSC-2026-12345", "", "BSC-2026-12345"),
    ],
)
def test_reference_found_and_canonicalised(subject, text, reference, classifier, ctx):
    result = classifier.classify(make_parsed(subject=subject, text=text), ctx=ctx)
    assert result.verdict is Verdict.FOLLOW_UP
    assert result.decided_by == "dossier_reference"
    assert result.reference == reference


@pytest.mark.parametrize(
    "subject", ["bsc-2026-7", "BSC-26-0007", "XBSC-2026-0007", "BSC 2026 0007"]
)
def test_not_a_reference(subject, rules, ctx):
    result = RULES["dossier_reference"](rules).check(make_parsed(subject=subject), ctx)
    assert not result.hit and result.reference is None


def test_reference_in_subject_wins_over_body(classifier, ctx):
    mail = make_parsed(subject="BSC-2026-0001", text="voir aussi BSC-2026-0002")
    assert classifier.classify(mail, ctx=ctx).reference == "BSC-2026-0001"


# --------------------------------------------------------------------------
# Replies to our own mail


def test_reply_message_id_round_trip():
    msgid = make_reply_message_id(reference="BSC-2026-0007", kind="missing_pieces", domain=DOMAIN)
    assert re.fullmatch(
        r"<mailbot\.BSC-2026-0007\.missing_pieces\.[0-9a-f]{8}@ville-bethune\.fr>", msgid
    )
    assert reference_from_message_id(msgid, domain=DOMAIN) == "BSC-2026-0007"
    assert reference_from_message_id(msgid, domain="VILLE-BETHUNE.FR") == "BSC-2026-0007"
    assert reference_from_message_id(msgid.strip("<>"), domain=DOMAIN) == "BSC-2026-0007"
    again = make_reply_message_id(reference="BSC-2026-0007", kind="missing_pieces", domain=DOMAIN)
    assert again != msgid


@pytest.mark.parametrize(
    "msgid",
    [
        None,
        "",
        "<CAF=x@mail.gmail.com>",
        "<mailbot.BSC-2026-0007.acknowledgement.9f2c1a@evil.example>",
        "<mailbot.BSC-2026-7.acknowledgement.9f2c1a@ville-bethune.fr>",
        "<other.BSC-2026-0007.acknowledgement.9f2c1a@ville-bethune.fr>",
    ],
)
def test_not_one_of_our_message_ids(msgid):
    assert reference_from_message_id(msgid, domain=DOMAIN) is None


@pytest.mark.parametrize(
    ("reference", "kind", "domain"),
    [
        ("BSC-2026-0007\r\nBcc: x@y.org", "acknowledgement", DOMAIN),
        ("bsc-2026-0007", "acknowledgement", DOMAIN),
        ("BSC-2026-0007", "missing pieces", DOMAIN),
        ("BSC-2026-0007", "acknowledgement", "ville bethune.fr"),
    ],
)
def test_reply_message_id_refuses_what_is_not_header_safe(reference, kind, domain):
    with pytest.raises(ValueError):
        make_reply_message_id(reference=reference, kind=kind, domain=domain)


def test_answer_to_our_mail_is_a_follow_up(classifier, ctx):
    ours = make_reply_message_id(reference="BSC-2026-0031", kind="acknowledgement", domain=DOMAIN)
    mail = make_parsed(subject="Re: votre accusé de réception", in_reply_to=ours)
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.FOLLOW_UP
    assert result.decided_by == "reply_to_our_mail"
    assert result.reference == "BSC-2026-0031"


def test_our_mail_found_in_references(classifier, ctx):
    first = make_reply_message_id(reference="BSC-2026-0031", kind="acknowledgement", domain=DOMAIN)
    later = make_reply_message_id(reference="BSC-2026-0031", kind="missing_pieces", domain=DOMAIN)
    mail = make_parsed(
        subject="Re: Re: pièces",
        in_reply_to="<applicant-2@asso-quartier.fr>",
        references=("<applicant-1@asso-quartier.fr>", first, f"{later} <applicant-2@x.fr>"),
    )
    result = classifier.classify(mail, ctx=ctx)
    assert (result.decided_by, result.reference) == ("reply_to_our_mail", "BSC-2026-0031")


def test_answer_to_someone_else_is_not_a_follow_up(rules, ctx):
    mail = make_parsed(in_reply_to="<mailbot.BSC-2026-0031.acknowledgement.ab12@other.fr>")
    assert not RULES["reply_to_our_mail"](rules).check(mail, ctx).hit


# --------------------------------------------------------------------------
# Scoring with the shipped signs


def test_realistic_candidature(classifier, ctx):
    result = classifier.classify(realistic_candidature(), ctx=ctx)
    assert result.verdict is Verdict.CANDIDATURE
    assert result.decided_by == "score"
    assert result.reference is None
    assert {
        "sign:label_smart_city",
        "sign:candidature_word",
        "sign:dossier_intention",  # written "d’intention", with a typographic apostrophe
        "sign:smart_city",
        "sign:letter_to_mayor",
        "sign:document_attached",
    } <= hits(result)
    assert result.score == pytest.approx(10.5)
    reason = next(e.reason for e in result.trace if e.rule == "sign:candidature_word")
    assert reason == "matched 'candidature' in subject (+2)"


def test_candidature_in_capitals_without_accents(classifier, ctx):
    mail = realistic_candidature(
        subject="CANDIDATURE AU LABEL BETHUNE SMART CITY",
        text=(
            "MONSIEUR LE MAIRE,\nVEUILLEZ TROUVER CI-JOINT NOTRE DOSSIER D INTENTION POUR LE "
            "LABEL BETHUNE SMART CITY.\nCORDIALEMENT"
        ),
        attachments=("DOSSIER_INTENTION.PDF", "COURRIER_MAIRE.PDF"),
    )
    assert classifier.classify(mail, ctx=ctx).verdict is Verdict.CANDIDATURE


def test_vague_question_goes_to_review(classifier, ctx):
    mail = make_parsed(
        subject="Question sur le label smart city",
        text="Bonjour, comment fonctionne le label smart city ? Merci.",
    )
    result = classifier.classify(mail, ctx=ctx)
    # Shipped weights: label_smart_city 3 + smart_city 1 = 4, between the
    # review threshold (2.5) and the candidature threshold (5): a person
    # decides, nobody receives an acknowledgement for a mere question.
    assert result.score == pytest.approx(4.0)
    assert result.verdict is Verdict.NEEDS_REVIEW


def test_unrelated_newsletter_is_not_a_candidature(classifier, ctx):
    mail = make_parsed(
        subject="Newsletter de la médiathèque – programme d'avril",
        text=(
            "Découvrez nos animations du mois : lectures pour enfants, concert de jazz "
            "samedi, atelier numérique. Pour vous désinscrire, cliquez ici."
        ),
        sender="contact@mediatheque-exemple.fr",
        from_address="contact@mediatheque-exemple.fr",
    )
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.NOT_CANDIDATURE
    assert result.score == 0


BARE = {
    "subject": "Envoi",
    "text": "Bonjour, ci-joint. Cordialement",
    "attachments": ("scan001.pdf",),
}
FORM_TEXT = (
    "DOSSIER D’INTENTION\nLabel Béthune Smart City\n"
    "Intitulé de l’action ou du projet : Jardins partagés du Perroy\n"
    "Catégorie de label demandée : 2 - Projet\n"
    "Critère(s) Smart City : Collaborative, Durable\n"
    "Nom de la structure ou du porteur : Association du quartier du Perroy\n"
)
LETTER_TEXT = (
    "Association du quartier du Perroy\nà l’attention de Monsieur le Maire\n"
    "Hôtel de Ville, 62400 Béthune\nObjet : demande de labellisation"
)


def test_bare_message_is_not_a_candidature(classifier, ctx):
    result = classifier.classify(make_parsed(**BARE), ctx=ctx)
    assert result.score == pytest.approx(0.5)
    assert result.verdict is Verdict.NOT_CANDIDATURE


def test_scanned_dossier_and_letter_make_a_bare_message_a_candidature(config, classifier):
    ctx = ClassifyContext.from_config(
        config, mailbox="n.bataillon", attachment_texts=[FORM_TEXT + "\f" + LETTER_TEXT]
    )
    result = classifier.classify(make_parsed(**BARE), ctx=ctx)
    assert result.verdict is Verdict.CANDIDATURE
    assert {"sign:form_labels_in_attachment", "sign:letter_to_mayor"} <= hits(result)


def test_scanned_dossier_alone_is_a_candidature(config, classifier):
    # The form's labels (4), its title "dossier d'intention" (3), the label
    # name (3) and the attachment (0.5): a bare mail carrying only the
    # scanned form is a candidature.
    ctx = ClassifyContext.from_config(config, mailbox="n.bataillon", attachment_texts=[FORM_TEXT])
    result = classifier.classify(make_parsed(**BARE), ctx=ctx)
    assert result.score == pytest.approx(10.5)
    assert result.verdict is Verdict.CANDIDATURE
    assert {"sign:form_labels_in_attachment", "sign:dossier_intention"} <= hits(result)


def test_mailbox_weight(rules, config):
    weighted = rules.model_copy(update={"mailbox_weights": {"d.berteloot": 1.0}})
    vague = make_parsed(subject="Question sur le label smart city")
    other = ClassifyContext.from_config(config, mailbox="n.bataillon")
    dedicated = ClassifyContext.from_config(config, mailbox="d.berteloot")
    assert classify(vague, rules=weighted, ctx=other).verdict is Verdict.NEEDS_REVIEW
    result = classify(vague, rules=weighted, ctx=dedicated)
    assert result.score == pytest.approx(5.0)
    assert result.verdict is Verdict.CANDIDATURE
    assert "mailbox_weight" in hits(result)


def test_over_limits_candidature_goes_to_review(classifier, ctx):
    result = classifier.classify(realistic_candidature(over_limits=True), ctx=ctx)
    assert result.verdict is Verdict.NEEDS_REVIEW
    assert result.decided_by == "over_limits"
    assert result.trace[-1].rule == "over_limits" and result.trace[-1].hit
    assert result.score == pytest.approx(10.5)


def test_over_limits_does_not_change_a_chain_decision(classifier, ctx):
    mail = realistic_candidature(over_limits=True, return_path="<>")
    assert classifier.classify(mail, ctx=ctx).verdict is Verdict.AUTO_REPLY


def test_body_is_scanned_up_to_the_limit(classifier, ctx):
    padding = "x " * SCAN_CHARS
    late = make_parsed(subject="Envoi", text=padding + "candidature au label smart city")
    assert classifier.classify(late, ctx=ctx).verdict is Verdict.NOT_CANDIDATURE


# --------------------------------------------------------------------------
# The trace


def test_trace_lists_every_evaluated_rule_and_sign(rules, classifier, ctx):
    mail = realistic_candidature()
    result = classifier.classify(mail, ctx=ctx)
    message_rules = [step.rule for step in rules.chain if RULES[step.rule].stage is Stage.MESSAGE]
    expected = [*message_rules, *(f"sign:{sign.name}" for sign in rules.signs), "score"]
    assert names(result) == expected
    assert not any(e.hit for e in result.trace[: len(message_rules)])
    assert all(e.reason for e in result.trace)
    assert result.trace[-1].reason == "score 10.5 >= candidature_threshold 5: candidature"
    # The second stage adds the reading rules after the score.
    read = classifier.classify_reading(mail, result, ctx=reading_ctx(ctx, lookup=None))
    assert names(read) == [*expected, SAME_SENDER]
    assert read.trace[-1] == RuleHit(SAME_SENDER, False, "no database configured: not checked")


def test_trace_as_json(classifier, ctx):
    result = classifier.classify(realistic_candidature(return_path="<>"), ctx=ctx)
    data = result.trace_as_json()
    assert json.loads(json.dumps(data)) == data
    assert data[-1] == {
        "rule": "null_return_path",
        "hit": True,
        "reason": "null Return-Path '<>'",
    }


# --------------------------------------------------------------------------
# Robustness and reuse


def test_odd_input_never_fails(classifier, ctx):
    mail = make_parsed(
        subject=None,
        sender=None,
        sender_name=None,
        from_address=None,
        return_path=None,
        text=None,
        in_reply_to=None,
        references=(None, ""),
        content_types=(),
        headers={"Auto-Submitted": (), "X-Auto-Response-Suppress": ""},
        attachments=("",),
    )
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.NOT_CANDIDATURE
    empty = ParsedMail(
        sha256="0" * 64,
        size=0,
        message_id=None,
        subject="",
        sender="",
        sender_name="",
        from_address="",
    )
    assert classifier.classify(empty, ctx=ctx).verdict is Verdict.NOT_CANDIDATURE


def test_classifier_reused_for_many_messages(rules, ctx, classifier):
    ours = make_reply_message_id(reference="BSC-2026-0031", kind="acknowledgement", domain=DOMAIN)
    kinds = [
        realistic_candidature(),
        realistic_candidature(return_path="<>"),
        make_parsed(subject="Question sur le label smart city"),
        make_parsed(subject="Réf : bsc-2026-0012"),
        make_parsed(in_reply_to=ours),
        make_parsed(sender=MAILBOX, from_address=MAILBOX),
        make_parsed(**BARE),
    ]
    fresh = [classify(mail, rules=rules, ctx=ctx) for mail in kinds]
    for i in range(1000):
        assert classifier.classify(kinds[i % len(kinds)], ctx=ctx) == fresh[i % len(kinds)]
    assert [r.verdict for r in fresh] == [
        Verdict.CANDIDATURE,
        Verdict.AUTO_REPLY,
        Verdict.NEEDS_REVIEW,
        Verdict.FOLLOW_UP,
        Verdict.FOLLOW_UP,
        Verdict.NOT_CANDIDATURE,
        Verdict.NOT_CANDIDATURE,
    ]


def test_over_limits_low_score_goes_to_review_not_ignored(classifier, ctx):
    # Attachments dropped for size may hide a candidature: never discard it.
    mail = make_parsed(**BARE, over_limits=True)
    result = classifier.classify(mail, ctx=ctx)
    assert result.verdict is Verdict.NEEDS_REVIEW
    assert result.decided_by == "over_limits"


# --------------------------------------------------------------------------
# Second stage: the sender's open dossier


POTAGER = OpenDossier(reference="BSC-2026-0007", title="Potager solidaire du Perroy")
VELOS = OpenDossier(reference="BSC-2026-0003", title="Vélos partagés")


def second_stage(classifier, ctx, **reading: Any) -> tuple[Classification, Classification]:
    mail = realistic_candidature()
    first = classifier.classify(mail, ctx=ctx)
    assert first.verdict is Verdict.CANDIDATURE
    return first, classifier.classify_reading(mail, first, ctx=reading_ctx(ctx, **reading))


def test_the_rule_waits_for_the_reading_and_is_listed_last(rules, classifier):
    assert RULES[SAME_SENDER].stage is Stage.READING
    assert RULES[NOT_THE_APPLICANT].stage is Stage.READING
    assert [step.rule for step in rules.chain[-2:]] == [SAME_SENDER, NOT_THE_APPLICANT]
    reading = [rule.name for rule, _verdict in classifier.reading_chain]
    assert reading == [SAME_SENDER, NOT_THE_APPLICANT]
    assert SAME_SENDER not in [rule.name for rule, _verdict in classifier.chain]


def test_a_message_without_dossier_joins_the_latest_open_dossier(classifier, ctx):
    lookup = FixedOpenDossiers(POTAGER, VELOS)
    first, read = second_stage(classifier, ctx, lookup=lookup)
    assert (read.verdict, read.reference) == (Verdict.FOLLOW_UP, POTAGER.reference)
    assert read.decided_by == SAME_SENDER
    assert read.score == first.score
    assert read.trace[: len(first.trace)] == first.trace
    assert read.trace[-1].hit and POTAGER.reference in read.trace[-1].reason
    assert lookup.asked == [APPLICANT]


def test_a_dossier_joins_the_open_dossier_with_the_same_folded_intitule(classifier, ctx):
    lookup = FixedOpenDossiers(POTAGER, VELOS)
    _first, read = second_stage(
        classifier, ctx, lookup=lookup, dossier_present=True, title="  VELOS  partagés"
    )
    assert (read.verdict, read.reference) == (Verdict.FOLLOW_UP, VELOS.reference)
    assert "same intitulé" in read.trace[-1].reason


@pytest.mark.parametrize("title", ["Jardin de la gare", ""])
def test_a_dossier_for_another_project_stays_a_candidature(classifier, ctx, title):
    lookup = FixedOpenDossiers(POTAGER, VELOS)
    first, read = second_stage(classifier, ctx, lookup=lookup, dossier_present=True, title=title)
    assert read.verdict is Verdict.CANDIDATURE and read.reference is None
    assert read.decided_by == first.decided_by == "score"
    assert names(read) == [*names(first), SAME_SENDER]
    assert not read.trace[-1].hit


def test_a_sender_without_open_dossier_stays_a_candidature(classifier, ctx):
    _first, read = second_stage(classifier, ctx, lookup=FixedOpenDossiers())
    assert read.verdict is Verdict.CANDIDATURE
    assert read.trace[-1] == RuleHit(SAME_SENDER, False, f"{APPLICANT!r} has no open dossier")


def test_without_a_database_the_rule_says_it_did_not_check(classifier, ctx):
    _first, read = second_stage(classifier, ctx, lookup=None)
    assert read.verdict is Verdict.CANDIDATURE
    assert read.trace[-1] == RuleHit(SAME_SENDER, False, "no database configured: not checked")


def test_where_the_rule_looked_is_said_in_its_reason(classifier, ctx):
    lookup = FixedOpenDossiers(POTAGER, checked="checked against the database (read-only)")
    _first, read = second_stage(classifier, ctx, lookup=lookup)
    assert read.verdict is Verdict.FOLLOW_UP
    assert read.trace[-1].reason.endswith("; checked against the database (read-only)")


def test_a_retried_message_already_in_a_dossier_is_not_joined_elsewhere(classifier, ctx):
    lookup = FixedOpenDossiers(POTAGER)
    _first, read = second_stage(classifier, ctx, lookup=lookup, filed_in="BSC-2026-0001")
    assert read.verdict is Verdict.CANDIDATURE
    assert read.trace[-1] == RuleHit(SAME_SENDER, False, "already in dossier BSC-2026-0001")
    assert lookup.asked == []


def test_a_follow_up_meets_only_the_authority_rule_in_the_second_stage(classifier, ctx):
    lookup = FixedOpenDossiers(POTAGER)
    mail = make_parsed(subject="Re: votre dossier BSC-2026-0031")
    first = classifier.classify(mail, ctx=ctx)
    assert first.verdict is Verdict.FOLLOW_UP
    read = classifier.classify_reading(mail, first, ctx=reading_ctx(ctx, lookup=lookup))
    assert names(read) == [*names(first), NOT_THE_APPLICANT]
    # An unknown reference is left to filing (unknown_dossier), not judged here.
    assert (read.verdict, read.reference) == (Verdict.FOLLOW_UP, "BSC-2026-0031")
    assert lookup.asked == []


def follow_up_of_potager(
    classifier: Classifier, ctx: ClassifyContext, **fields: Any
) -> tuple[Classification, Classification]:
    mail = make_parsed(**{"subject": f"Re: {POTAGER.reference} le courrier", **fields})
    first = classifier.classify(mail, ctx=ctx)
    assert first.verdict is Verdict.FOLLOW_UP
    lookup = FixedOpenDossiers(POTAGER)
    return first, classifier.classify_reading(mail, first, ctx=reading_ctx(ctx, lookup=lookup))


@pytest.mark.parametrize("sender", [APPLICANT, COLLEAGUE, APPLICANT.upper()])
def test_the_applicant_and_those_we_answered_may_follow_up(classifier, ctx, sender):
    _first, read = follow_up_of_potager(classifier, ctx, sender=sender)
    assert (read.verdict, read.reference) == (Verdict.FOLLOW_UP, POTAGER.reference)
    assert read.trace[-1].rule == NOT_THE_APPLICANT and not read.trace[-1].hit


@pytest.mark.parametrize("sender", ["intrus@example.net", "", "marie.dupont@asso-quartier.fr."])
def test_anyone_else_citing_the_reference_goes_to_review(classifier, ctx, sender):
    _first, read = follow_up_of_potager(classifier, ctx, sender=sender)
    assert (read.verdict, read.reference) == (Verdict.NEEDS_REVIEW, POTAGER.reference)
    assert read.decided_by == NOT_THE_APPLICANT and read.trace[-1].hit
    assert "not the applicant" in read.trace[-1].reason


def test_a_message_id_of_ours_we_did_not_send_for_the_dossier_goes_to_review(classifier, ctx):
    forged = f"<mailbot.{POTAGER.reference}.completed.deadbeef@{DOMAIN}>"
    _first, read = follow_up_of_potager(
        classifier, ctx, subject="Re: votre dossier", in_reply_to=forged
    )
    assert read.verdict is Verdict.NEEDS_REVIEW
    assert "not a message we sent" in read.trace[-1].reason
    sent = f"<mailbot.{POTAGER.reference}.acknowledgement.0a1b2c3d@{DOMAIN}>"
    _first, read = follow_up_of_potager(
        classifier,
        ctx,
        subject="Re: votre dossier",
        in_reply_to=sent,
        references=("<own@asso-quartier.fr>", sent),
    )
    assert read.verdict is Verdict.FOLLOW_UP
