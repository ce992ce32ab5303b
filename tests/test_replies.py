"""Replies to applicants, end to end: Dovecot in, aiosmtpd out, exactly once, never to a robot."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

import pytest
from sqlmodel import select

from mailbot.config import load_config
from mailbot.intake import poll_all
from mailbot.replies import authentication_verdict
from mailbot.smtp import send_outbox
from storage.db import session_scope
from storage.models import Dossier, Message, Outbox
from tests.fixtures import corpus
from tests.fixtures.candidatures import APPLICANT, RULES, application, letter_pdf
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import make_mail

NB, DB = "n.bataillon", "d.berteloot"


def run(app):
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]
    return send_outbox(app)


def outbox(app):
    with session_scope(app.engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)).all())


def dossiers(app):
    with session_scope(app.engine) as session:
        return list(session.exec(select(Dossier)).all())


def body_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_complete_candidature_gets_one_acknowledgement(replies_app, dovecot, smtp_server):
    original = application(cc=("d.berteloot@ville-bethune.fr",))
    dovecot.append(NB, original)
    dovecot.append(DB, original)
    report = run(replies_app)
    assert report.sent == 1
    [dossier] = dossiers(replies_app)
    assert dossier.status == "complete", dossier.missing
    [captured] = smtp_server.wait_for(1)
    reply = captured.message
    assert captured.rcpt_tos == ("marie.lefebvre@jardins-perroy.fr",)
    assert reply["From"] == "Service Béthune Smart City <n.bataillon@ville-bethune.fr>"
    assert reply["To"] == "marie.lefebvre@jardins-perroy.fr"
    assert dossier.reference in reply["Subject"]
    assert "Accusé de réception" in reply["Subject"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["X-Mailbot-Loop"] == "bethune-smartcity"
    assert reply["In-Reply-To"] == original["Message-ID"]
    assert original["Message-ID"] in reply["References"]
    assert reply["Message-ID"].startswith(f"<mailbot.{dossier.reference}.acknowledgement.")
    assert reply["Message-ID"].endswith("@ville-bethune.fr>")
    text = body_text(reply)
    assert "Votre dossier est complet" in text
    assert dossier.reference in text
    assert "Potager solidaire du quartier du Perroy" in text
    assert "Protection de vos données personnelles" in text
    html = reply.get_body(preferencelist=("html",)).get_content()
    assert "<strong>" + dossier.reference + "</strong>" in html
    # A second pass sends nothing more.
    assert run(replies_app).sent == 0
    assert len(smtp_server.messages) == 1


def test_missing_letter_then_follow_up_completes(replies_app, dovecot, smtp_server):
    first = application(letter=False)
    dovecot.append(NB, first)
    run(replies_app)
    [dossier] = dossiers(replies_app)
    assert dossier.status == "incomplete"
    assert dossier.missing == ["letter"]
    [notice] = smtp_server.wait_for(1)
    text = body_text(notice.message)
    assert "il nous manque encore" in text
    assert "le courrier officiel adressé à Monsieur le Maire" in text
    assert "répondre à ce message" in text

    answer = make_mail(
        subject="RE: " + notice.message["Subject"],
        sender=APPLICANT,
        to=("n.bataillon@ville-bethune.fr",),
        body="Bonjour, voici le courrier.",
        in_reply_to=notice.message["Message-ID"],
        references=notice.message["Message-ID"],
        attachments=[("courrier.pdf", letter_pdf(), "application/pdf")],
    )
    dovecot.append(NB, answer)
    run(replies_app)
    [dossier] = dossiers(replies_app)
    assert dossier.status == "complete"
    assert dossier.missing == []
    completed = smtp_server.wait_for(2)[1].message
    assert "est désormais complet" in body_text(completed)
    assert completed["In-Reply-To"] == answer["Message-ID"]
    kinds = [row.kind for row in outbox(replies_app)]
    assert kinds == ["missing_pieces", "completed"]


def test_follow_up_without_pieces_or_answers_is_passed_on_not_a_new_notice(
    replies_app, dovecot, smtp_server
):
    # A question, no attachment, no value typed: staff read it (issue 15), the
    # applicant is told so, and no second missing-pieces notice goes out.
    dovecot.append(NB, application(letter=False))
    run(replies_app)
    [dossier] = dossiers(replies_app)
    nudge = make_mail(
        subject=f"Re: dossier {dossier.reference}",
        sender=APPLICANT,
        body="Avez-vous bien reçu notre dossier ?",
    )
    dovecot.append(NB, nudge)
    run(replies_app)
    passed_on = smtp_server.wait_for(2)[1].message
    assert "transmis au service" in passed_on["Subject"]
    assert "pièces manquantes" not in passed_on["Subject"]
    assert "il nous manque" not in body_text(passed_on)
    assert [row.kind for row in outbox(replies_app)] == ["missing_pieces", "passed_on"]
    with session_scope(replies_app.engine) as session:
        follow = session.exec(select(Message).where(Message.verdict == "follow_up")).one()
        assert follow.dossier_id == dossier.id
        assert (follow.status, follow.reason) == ("needs_review", "follow_up_unread")
    # A second question the same day: staff hear of it, the applicant is not answered twice.
    dovecot.append(
        NB,
        make_mail(subject=f"Re: dossier {dossier.reference}", sender=APPLICANT, body="Et alors ?"),
    )
    run(replies_app)
    rows = outbox(replies_app)
    assert [row.kind for row in rows] == ["missing_pieces", "passed_on", "passed_on"]
    assert rows[-1].status == "suppressed" and rows[-1].suppressed_reason == "already_sent"
    assert len(smtp_server.messages) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Return-Path": "<>"},
        {"Precedence": "bulk"},
        {"List-Id": "<projets.example.org>"},
        {"X-Mailbot-Loop": "bethune-smartcity"},
        {"X-Autoreply": "yes"},
    ],
)
def test_no_reply_to_robots(replies_app, dovecot, smtp_server, headers):
    dovecot.append(NB, application(headers=headers))
    run(replies_app)
    assert smtp_server.messages == []
    assert outbox(replies_app) == []
    with session_scope(replies_app.engine) as session:
        [message] = session.exec(select(Message)).all()
        assert message.verdict == "auto_reply"
        assert message.rule_trace[-1]["hit"] is True


def test_no_reply_to_a_delivery_report_of_our_reply(replies_app, dovecot, smtp_server):
    dovecot.append(NB, application(letter=False))
    run(replies_app)
    [notice] = smtp_server.wait_for(1)
    dsn = (
        b"From: Mail Delivery System <postmaster@jardins-perroy.fr>\r\n"
        b"To: n.bataillon@ville-bethune.fr\r\n"
        b"Subject: Delivery Status Notification (Failure)\r\n"
        b"Message-ID: <dsn1@jardins-perroy.fr>\r\n"
        b"In-Reply-To: " + notice.message["Message-ID"].strip().encode() + b"\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.jardins-perroy.fr\r\n\r\n"
        b"Final-Recipient: rfc822; marie.lefebvre@jardins-perroy.fr\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n\r\n--b1--\r\n"
    )
    ooo = make_mail(
        subject="Absence : " + notice.message["Subject"],
        sender=APPLICANT,
        body="Je suis absente jusqu'au 3.",
        headers={"Auto-Submitted": "auto-replied"},
        in_reply_to=notice.message["Message-ID"],
    )
    dovecot.append(NB, dsn)
    dovecot.append(NB, ooo)
    run(replies_app)
    assert len(smtp_server.messages) == 1
    assert len(outbox(replies_app)) == 1


def test_caps_and_authentication_policy_suppress_with_a_reason(
    replies_app, dovecot, smtp_server, monkeypatch
):
    monkeypatch.setenv("MAILBOT_REPLIES__PER_SENDER_DAILY_CAP", "1")
    monkeypatch.setenv("MAILBOT_REPLIES__AUTHSERV_ID", "mx.ville-bethune.fr")
    replies_app._config = None
    dovecot.append(NB, application(letter=False))
    second_project = [
        ("dossier_2.pdf", corpus.form_pdf(RULES, corpus.COVOITURAGE), "application/pdf")
    ]
    dovecot.append(
        NB,
        application(subject="Candidature label Smart City, projet 2", attachments=second_project),
    )
    spoofed = application(
        sender="Usurpateur <boss@example.com>",
        subject="Candidature label Béthune Smart City",
        headers={
            "Authentication-Results": "mx.ville-bethune.fr; dmarc=fail header.from=example.com"
        },
    )
    dovecot.append(NB, spoofed)
    run(replies_app)
    rows = outbox(replies_app)
    assert [r.status for r in rows] == ["sent", "suppressed", "suppressed"]
    assert rows[1].suppressed_reason == "sender_daily_cap"
    assert rows[1].suppressed_details == {"count": 1, "cap": 1}
    assert rows[2].suppressed_reason == "authentication_failed"
    assert len(smtp_server.messages) == 1


def test_authentication_results_only_trusted_from_our_server():
    mail = make_mail(headers={"Authentication-Results": "evil.example; dmarc=pass"})
    from parsers.mail import parse_message

    parsed = parse_message(mail.as_bytes(), limits=load_config(SHIPPED_CONFIG).settings.limits)
    assert authentication_verdict(parsed, "mx.ville-bethune.fr").outcome == "unknown"
    assert authentication_verdict(parsed, "evil.example").outcome == "pass"


def test_smtp_refusing_then_accepting_delivers_once(replies_app, dovecot, smtp_server, monkeypatch):
    monkeypatch.setenv("MAILBOT_REPLIES__RETRY_BASE_SECONDS", "1")
    replies_app._config = None
    dovecot.append(NB, application())
    assert poll_all(replies_app)[0].filed == 1

    smtp_server.fail_next(1, "451 4.3.0 Try again later")
    assert send_outbox(replies_app).retrying == 1
    [row] = outbox(replies_app)
    assert row.status == "queued" and row.attempts == 1 and "451" in row.last_error

    smtp_server.stop()
    later = row.next_attempt_at
    report = send_outbox(replies_app, now=later)
    assert report.retrying == 1 and report.errors
    smtp_server.start()
    [row] = outbox(replies_app)
    report = send_outbox(replies_app, now=row.next_attempt_at)
    assert report.sent == 1
    assert send_outbox(replies_app, now=row.next_attempt_at).sent == 0
    assert len(smtp_server.messages) == 1
    [row] = outbox(replies_app)
    assert row.status == "sent" and row.attempts == 3


def test_permanent_refusal_is_recorded(replies_app, dovecot, smtp_server):
    dovecot.append(NB, application())
    poll_all(replies_app)
    smtp_server.fail_next(1, "550 5.1.1 No such user", stage="RCPT")
    report = send_outbox(replies_app)
    assert report.failed == 1
    [row] = outbox(replies_app)
    assert row.status == "failed" and "550" in row.last_error
    assert row.failure_reason == "refused"
    assert send_outbox(replies_app).sent == 0
    assert smtp_server.messages == []


def test_header_injection_gives_a_clean_reply(replies_app, dovecot, smtp_server):
    raw = (
        b"From: =?utf-8?q?Marie=0D=0ABcc=3A_victim=40evil=2Eexample?= "
        b"<marie.lefebvre@jardins-perroy.fr>\r\n"
        b"To: n.bataillon@ville-bethune.fr\r\n"
        b"Subject: =?utf-8?q?Candidature_label_Smart_City=0D=0ABcc=3A_x=40evil=2Eexample?=\r\n"
        b"Message-ID: <inj1@jardins-perroy.fr>\r\n"
        b"In-Reply-To: <a@b>\r\n\tBcc: y@evil.example\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Notre dossier d'intention pour le label Smart City.\r\n"
    )
    dovecot.append(NB, raw)
    run(replies_app)
    [captured] = smtp_server.wait_for(1)
    assert captured.rcpt_tos == ("marie.lefebvre@jardins-perroy.fr",)
    reply = BytesParser(policy=email.policy.default).parsebytes(captured.data)
    assert reply.get_all("Bcc") is None
    names = [name.lower() for name in reply]
    assert len(names) == len(set(names)), names
    for name, value in reply.items():
        assert "evil.example" not in str(value), (name, value)
    assert reply["To"] == "marie.lefebvre@jardins-perroy.fr"
    assert reply["In-Reply-To"] == "<inj1@jardins-perroy.fr>"
    # The display name reaches the body flattened to one line, never a header.
    greeting = body_text(reply).splitlines()[0]
    # ... cut to 40 characters, with the address made unclickable.
    assert greeting == "Bonjour Marie Bcc: victim[at]evil.example,"


def test_save_sent_appends_a_copy(replies_app, dovecot, smtp_server, monkeypatch):
    monkeypatch.setenv("MAILBOT_MAILBOXES__0__SAVE_SENT", "true")
    replies_app._config = None
    dovecot.append(NB, application())
    assert run(replies_app).sent == 1
    assert len(dovecot.uids(NB, "Sent")) == 1


def test_letter_sent_later_in_a_new_message_joins_the_open_dossier(
    replies_app, dovecot, smtp_server
):
    dovecot.append(NB, application(letter=False))
    run(replies_app)
    later = make_mail(
        subject="Candidature label Smart City : le courrier",
        sender=APPLICANT,
        body="Bonjour, voici le courrier adressé à Monsieur le Maire pour notre candidature.",
        attachments=[("courrier_maire.pdf", letter_pdf(), "application/pdf")],
    )
    dovecot.append(NB, later)
    run(replies_app)
    [dossier] = dossiers(replies_app)
    assert dossier.status == "complete"
    assert [r.kind for r in outbox(replies_app)] == ["missing_pieces", "completed"]
    with session_scope(replies_app.engine) as session:
        joined = session.exec(select(Message).where(Message.subject == later["Subject"])).one()
        assert joined.verdict == "follow_up"
        assert joined.rule_trace[-1]["rule"] == "same_sender_open_dossier"
        assert joined.rule_trace[-1]["hit"] is True


def test_another_project_from_the_same_sender_is_a_new_dossier(replies_app, dovecot, smtp_server):
    dovecot.append(NB, application(letter=False))
    other = application(
        letter=False,
        subject="Deuxième candidature au label Béthune Smart City",
        attachments=[
            (
                "dossier_covoiturage.pdf",
                corpus.form_pdf(RULES, corpus.COVOITURAGE),
                "application/pdf",
            )
        ],
    )
    dovecot.append(NB, other)
    run(replies_app)
    assert len(dossiers(replies_app)) == 2
    assert [r.kind for r in outbox(replies_app)] == ["missing_pieces", "missing_pieces"]
