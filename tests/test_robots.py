"""Robots answering our replies never change a dossier: end to end, Dovecot in, aiosmtpd out.

An applicant's dossier waits for its letter and our notice went out. Then
delivery reports, vacation replies, challenge-response mail and list loop
alerts come back, each citing the dossier's reference or our Message-ID and
some even carrying a letter: each must be recognised as automatic before any
reference or thread rule, leave the dossier as it was and get no reply.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot.cli import main
from mailbot.config import load_config
from parsers.mail import parse_message
from parsers.robots import RobotSender, _alternation
from storage.db import session_scope
from storage.models import Dossier, Message
from tests.fixtures.candidatures import application, letter_pdf
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import as_bytes, make_mail

NB = "n.bataillon"
APPLICANT = "marie.lefebvre@jardins-perroy.fr"
GOLDEN = Path(__file__).parent / "golden"
GOLDEN_ACK = b"<mailbot.BSC-2026-0007.acknowledgement.4f2a9c01@ville-bethune.fr>"


def poll() -> None:
    assert main(["poll"]) == 0


def dossier_of(app) -> Dossier:
    with session_scope(app.engine) as session:
        [dossier] = session.exec(select(Dossier)).all()
        session.expunge(dossier)
        return dossier


def last_message(app) -> Message:
    with session_scope(app.engine) as session:
        row = session.exec(select(Message).order_by(Message.id.desc())).first()
        session.expunge(row)
        return row


@pytest.fixture
def waiting(replies_app, dovecot, smtp_server):
    """The applicant's dossier waits for its letter; returns (reference, our notice)."""
    dovecot.append(NB, application(letter=False))
    poll()
    [notice] = smtp_server.wait_for(1)
    return dossier_of(replies_app).reference, notice.message


def robot(reference: str, notice, *, sender: str, subject: str | None = None, headers=None):
    """A robot's answer to our notice that quotes everything a follow-up would, letter included."""
    msgid = notice["Message-ID"]
    return make_mail(
        sender=sender,
        subject=subject if subject is not None else f"Re: [{reference}] votre dossier",
        body=f"Votre message au sujet du dossier {reference} n'a pas pu être traité.",
        in_reply_to=msgid,
        references=msgid,
        headers=headers,
        attachments=[("courrier_maire.pdf", letter_pdf(), "application/pdf")],
    )


SHAPES = {
    # Delivery reports whatever their sender looks like.
    "mailer_daemon_null": dict(sender="MAILER-DAEMON <>"),
    "null_from": dict(sender="<>"),
    "mailer_daemon_no_domain": dict(sender="MAILER-DAEMON"),
    "post_master": dict(sender="post_master@mail.example.org"),
    "postmaster": dict(sender="Postmaster <postmaster@example.org>"),
    "mailer_daemon": dict(sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>"),
    "exim_failed_recipients": dict(
        sender="Mail Delivery System <relay@mx.example.org>",
        subject="Mail delivery failed: returning message to sender",
        headers={"X-Failed-Recipients": APPLICANT},
    ),
    "exchange_ndr_header": dict(
        sender="Microsoft Outlook <relay@example.onmicrosoft.com>",
        subject="Non remis : votre dossier",
        headers={"X-MS-Exchange-Message-Is-Ndr": ""},
    ),
    # Vacation replies of the common providers, from the applicant's own address.
    "icloud_vacation": dict(
        sender=APPLICANT,
        subject="Auto reply: votre dossier",
        headers={"X-Apple-Action": "VACATION"},
    ),
    "outlook_reponse_automatique": dict(
        sender=APPLICANT, subject="Réponse automatique : votre dossier"
    ),
    "absence_du_bureau": dict(sender=APPLICANT, subject="Absence du bureau"),
    "automatic_reply": dict(sender=APPLICANT, subject="Automatic reply: votre dossier"),
    # Challenge-response.
    "x_challenge": dict(
        sender=APPLICANT,
        subject="Please confirm you are human",
        headers={"X-Challenge": "please confirm"},
    ),
    "spamarrest": dict(sender="Spam Arrest <verify@spamarrest.com>"),
    # A list's loop alert.
    "list_loop_alert": dict(
        sender="Liste des porteurs <porteurs@lists.example.org>",
        subject="Mail loop detected",
        headers={"X-List-Administrivia": "yes"},
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_robot_citing_the_dossier_changes_nothing(
    replies_app, dovecot, smtp_server, waiting, shape
):
    reference, notice = waiting
    before = dossier_of(replies_app)
    dovecot.append(NB, robot(reference, notice, **SHAPES[shape]))
    poll()
    message = last_message(replies_app)
    assert (message.verdict, message.status, message.dossier_id) == ("auto_reply", "ignored", None)
    decided = [hit["rule"] for hit in message.rule_trace if hit["hit"]]
    assert decided and decided[0] not in ("dossier_reference", "reply_to_our_mail")
    after = dossier_of(replies_app)
    assert (after.status, after.missing, after.fields) == (before.status, ["letter"], before.fields)
    assert len(smtp_server.messages) == 1


GOLDEN_ROBOTS = [
    "postfix_bounce",
    "exim_bounce",
    "exchange_online_bounce",
    "gmail_bounce",
    "bare_mailer_daemon_bounce",
    "sieve_vacation",
    "gmail_vacation",
    "exchange_out_of_office",
    "icloud_vacation",
    "boxbe_challenge",
]


@pytest.mark.parametrize("name", GOLDEN_ROBOTS)
def test_golden_robots_answering_our_notice_change_nothing(
    replies_app, dovecot, smtp_server, waiting, name
):
    reference, notice = waiting
    raw = (GOLDEN / f"{name}.eml").read_bytes()
    raw = raw.replace(GOLDEN_ACK, notice["Message-ID"].encode()).replace(
        b"BSC-2026-0007", reference.encode()
    )
    before = dossier_of(replies_app)
    dovecot.append(NB, raw)
    poll()
    message = last_message(replies_app)
    assert (message.verdict, message.dossier_id) == ("auto_reply", None)
    after = dossier_of(replies_app)
    assert (after.status, after.missing) == (before.status, ["letter"])
    assert len(smtp_server.messages) == 1


def forwarded_with_blank_first_line(victim: str) -> bytes:
    inner = application(sender=f"Victime <{victim}>")
    body = (
        "---------- Forwarded message ---------\n"
        f"De : Victime <{victim}>\n"
        "Objet : Candidature au label Béthune Smart City\n\n"
        "Veuillez trouver ci-joint notre dossier d'intention.\n"
    )
    outer = make_mail(
        sender="Jean Intrus <intrus@example.net>",
        subject="TR: Candidature au label Béthune Smart City",
        body=body,
        attachments=[
            (part.get_filename(), part.get_content(), part.get_content_type())
            for part in inner.iter_attachments()
        ],
    )
    return b" \r\n" + as_bytes(outer)


def test_headers_are_read_as_the_standard_library_reads_them():
    raw = forwarded_with_blank_first_line("victime@example.org")
    stdlib = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    mail = parse_message(raw, limits=load_config(SHIPPED_CONFIG).settings.limits)
    assert mail.subject == stdlib["Subject"]
    assert mail.message_id == stdlib["Message-ID"]
    assert mail.from_address == "intrus@example.net"


def test_a_blank_first_line_does_not_make_the_inner_sender_the_applicant(
    replies_app, dovecot, smtp_server
):
    dovecot.append(NB, forwarded_with_blank_first_line("victime@example.org"))
    poll()
    message = last_message(replies_app)
    assert message.subject == "TR: Candidature au label Béthune Smart City"
    assert message.sender == "intrus@example.net"
    send = [rcpt for captured in smtp_server.messages for rcpt in captured.rcpt_tos]
    assert "victime@example.org" not in send


def test_robot_patterns_are_searched_at_once_only_when_that_is_the_same():
    """One alternation stands for the patterns; never for ones that name their own groups."""
    rule = RobotSender(load_config(SHIPPED_CONFIG).rules.detection)
    assert rule.any_pattern is not None  # the shipped patterns go through the alternation
    samples = ["mailer-daemon@x.fr", "jean@x.fr", "a-bounces@x.fr", "no-reply", "owner-x@y", ""]
    for text in samples:
        expected = any(regex.search(text) for _source, regex in rule.patterns)
        assert bool(rule.any_pattern.search(text)) == expected
    assert _alternation([re.compile(r"(a)\1"), re.compile("b")]) is None
    assert _alternation([re.compile(r"(?P<x>a)(?P=x)")]) is None
    assert _alternation([re.compile("a", re.I), re.compile("b")]) is None
    assert _alternation([re.compile("(?i)a")]) is None
    assert _alternation([]) is None
