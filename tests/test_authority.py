"""Only the applicant can touch their dossier: attacks end to end (Dovecot in, aiosmtpd out).

Each test runs the real ``mailbot`` command (``mailbot.cli.main``) over real
servers. A message naming a dossier (reference in the subject or body, a
Message-ID of ours) from someone who is not its applicant nor one of its
correspondents goes to review: nothing changes, nobody is written to, staff
see it in the digest and attach it with ``mailbot messages attach``.
"""

from __future__ import annotations

import json

from sqlmodel import select

from mailbot.cli import main
from mailbot.digest import build_digest
from storage.db import session_scope
from storage.models import Dossier, Event, Message, Piece
from tests.fixtures import corpus
from tests.fixtures.candidatures import RULES, application, letter_pdf
from tests.fixtures.mail import forward_as_attachment, make_mail

NB = "n.bataillon"
APPLICANT = "marie.lefebvre@jardins-perroy.fr"
STRANGER = "Jean Intrus <intrus@example.net>"
COLLEAGUE = "Paul Lefebvre <paul@jardins-perroy.fr>"


def poll() -> None:
    # The real command: one pass, then the outbox is delivered.
    assert main(["poll"]) == 0


def dossier_of(app) -> Dossier:
    with session_scope(app.engine) as session:
        [dossier] = session.exec(select(Dossier)).all()
        session.expunge(dossier)
        return dossier


def messages(app) -> list[Message]:
    with session_scope(app.engine) as session:
        rows = list(session.exec(select(Message).order_by(Message.id)).all())
        for row in rows:
            session.expunge(row)
        return rows


def pieces(app) -> list[str]:
    with session_scope(app.engine) as session:
        return sorted(p.filename for p in session.exec(select(Piece)).all())


def recipients(smtp_server) -> list[str]:
    return [rcpt for captured in smtp_server.messages for rcpt in captured.rcpt_tos]


def incomplete_dossier(dovecot, smtp_server) -> tuple[Dossier, object]:
    """The applicant's dossier, waiting for the letter; our notice to her."""
    dovecot.append(NB, application(letter=False))
    poll()
    [notice] = smtp_server.wait_for(1)
    assert notice.rcpt_tos == (APPLICANT,)
    return notice


def strangers_candidature(**overrides):
    """Another project's dossier and letter: what a stranger would send to take one over."""
    values = {
        "sender": STRANGER,
        "to": ("n.bataillon@ville-bethune.fr",),
        "body": "Voici les pièces.",
        "attachments": [
            (
                "dossier_intention.pdf",
                corpus.form_pdf(RULES, corpus.COVOITURAGE),
                "application/pdf",
            ),
            ("courrier_maire.pdf", corpus.letter_pdf(corpus.COVOITURAGE), "application/pdf"),
        ],
    }
    values.update(overrides)
    return make_mail(**values)


def assert_untouched(app, before: Dossier, smtp_server, *, mails: int) -> Message:
    after = dossier_of(app)
    assert after.status == before.status == "incomplete"
    assert after.fields == before.fields
    assert after.missing == before.missing == ["letter"]
    assert pieces(app) == ["dossier_intention.pdf"]
    # No "dossier complet" to the applicant, nothing to the stranger either.
    assert len(smtp_server.messages) == mails
    review = messages(app)[-1]
    assert (review.status, review.verdict, review.reason) == (
        "needs_review",
        "needs_review",
        "not_the_applicant",
    )
    assert review.dossier_id is None
    assert review.rule_trace[-1]["rule"] == "not_the_applicant"
    assert review.rule_trace[-1]["hit"] is True
    return review


def test_a_stranger_citing_the_reference_in_the_subject_cannot_take_the_dossier(
    replies_app, dovecot, smtp_server
):
    incomplete_dossier(dovecot, smtp_server)
    before = dossier_of(replies_app)
    dovecot.append(NB, strangers_candidature(subject=f"Re: {before.reference}"))
    poll()
    assert_untouched(replies_app, before, smtp_server, mails=1)
    assert recipients(smtp_server) == [APPLICANT]

    # Staff see it in the digest, with its reason in French.
    digest = build_digest(replies_app, reconcile=False)
    [review] = digest.sections["messages_to_review"]
    assert review["reason_code"] == "not_the_applicant"
    assert "autre personne que le porteur" in review["reason"]


def test_a_reference_in_the_body_or_a_message_id_of_ours_gives_no_authority(
    replies_app, dovecot, smtp_server
):
    notice = incomplete_dossier(dovecot, smtp_server)
    before = dossier_of(replies_app)
    dovecot.append(
        NB,
        strangers_candidature(
            subject="Complément", body=f"Pièces du dossier {before.reference}, merci."
        ),
    )
    poll()
    assert_untouched(replies_app, before, smtp_server, mails=1)
    # Our real notice's Message-ID, quoted by someone else.
    msgid = notice.message["Message-ID"]
    dovecot.append(
        NB, strangers_candidature(subject="RE: votre dossier", in_reply_to=msgid, references=msgid)
    )
    poll()
    assert_untouched(replies_app, before, smtp_server, mails=1)
    # A Message-ID made up in our shape, from the applicant's own address.
    forged = f"<mailbot.{before.reference}.completed.0badcafe@ville-bethune.fr>"
    dovecot.append(
        NB,
        make_mail(
            subject="RE: dossier",
            sender=f"Marie Lefebvre <{APPLICANT}>",
            in_reply_to=forged,
            attachments=[("courrier.pdf", letter_pdf(), "application/pdf")],
        ),
    )
    poll()
    review = assert_untouched(replies_app, before, smtp_server, mails=1)
    assert "not a message we sent" in review.rule_trace[-1]["reason"]


def test_legitimate_follow_ups_still_join(replies_app, dovecot, smtp_server):
    notice = incomplete_dossier(dovecot, smtp_server)
    reference = dossier_of(replies_app).reference
    # A new mail from the applicant citing the reference (another case of her address).
    dovecot.append(
        NB,
        make_mail(
            subject=f"Dossier {reference} : une photo",
            sender="Marie Lefebvre <Marie.Lefebvre@Jardins-Perroy.fr>",
            body="Une photo du site.",
            attachments=[("photo.txt", b"photo du site", "text/plain")],
        ),
    )
    poll()
    assert messages(replies_app)[-1].dossier_id == dossier_of(replies_app).id
    # Her reply to our notice completes the dossier.
    msgid = notice.message["Message-ID"]
    dovecot.append(
        NB,
        make_mail(
            subject="RE: " + notice.message["Subject"],
            sender=f"Marie Lefebvre <{APPLICANT}>",
            in_reply_to=msgid,
            references=msgid,
            attachments=[("courrier.pdf", letter_pdf(), "application/pdf")],
        ),
    )
    poll()
    dossier = dossier_of(replies_app)
    assert dossier.status == "complete"
    assert all(m.dossier_id == dossier.id for m in messages(replies_app))


def test_a_colleagues_pieces_wait_for_staff_who_attach_them_in_one_command(
    replies_app, dovecot, smtp_server, capsys, monkeypatch
):
    incomplete_dossier(dovecot, smtp_server)
    before = dossier_of(replies_app)
    # The colleague sends the letter and a form of their own (another contact e-mail).
    dovecot.append(NB, strangers_candidature(sender=COLLEAGUE, subject=f"{before.reference}"))
    poll()
    review = assert_untouched(replies_app, before, smtp_server, mails=1)

    monkeypatch.setenv("MAILBOT_STAFF_USER", "d.berteloot")
    note = "courrier transmis par le trésorier, vérifié par téléphone"
    assert main(["messages", "attach", str(review.id), before.reference, "--note", note]) == 0
    assert before.reference in capsys.readouterr().out
    after = dossier_of(replies_app)
    assert after.status == "complete" and after.missing == []
    # The applicant's fields stay hers: the colleague's form only fills what was missing.
    for key, value in before.fields.items():
        if value not in (None, "", [], {}):
            assert after.fields[key] == value, key
    assert after.fields["contact_email"] == before.fields["contact_email"]
    assert set(pieces(replies_app)) >= {"dossier_intention.pdf", "courrier_maire.pdf"}
    [attached] = [m for m in messages(replies_app) if m.id == review.id]
    assert (attached.status, attached.reason, attached.dossier_id) == ("filed", None, after.id)
    with session_scope(replies_app.engine) as session:
        [event] = session.exec(select(Event).where(Event.action == "message.attached")).all()
        assert event.actor == "staff:d.berteloot" and event.details["note"] == note
    # Nobody was written to by the attachment.
    assert len(smtp_server.messages) == 1

    # Once attached, the colleague corresponds with us about this dossier: the next joins.
    dovecot.append(
        NB,
        make_mail(
            subject=f"Re: {before.reference}",
            sender=COLLEAGUE,
            attachments=[("plan.txt", b"plan du site", "text/plain")],
        ),
    )
    poll()
    assert messages(replies_app)[-1].dossier_id == after.id

    # A message that is not waiting for review cannot be attached.
    assert main(["messages", "attach", str(review.id), before.reference]) == 1
    assert "only needs_review or failed" in capsys.readouterr().err


def test_try_shows_the_authority_rule(replies_app, dovecot, smtp_server, tmp_path, capsys):
    incomplete_dossier(dovecot, smtp_server)
    reference = dossier_of(replies_app).reference
    saved = tmp_path / "stranger.eml"
    saved.write_bytes(strangers_candidature(subject=f"Re: {reference}").as_bytes())
    capsys.readouterr()
    assert main(["try", str(saved), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "needs_review"
    last = result["rule_trace"][-1]
    assert last["rule"] == "not_the_applicant" and last["hit"] is True


def test_a_strangers_forward_never_mails_the_inner_sender(replies_app, dovecot, smtp_server):
    victim = "Victime <victime@example.org>"
    forward = forward_as_attachment(
        application(sender=victim),
        sender=STRANGER,
        to=("n.bataillon@ville-bethune.fr",),
        body="Je vous transfère la candidature.",
    )
    dovecot.append(NB, forward)
    poll()
    assert "victime@example.org" not in recipients(smtp_server)
    assert dossier_of(replies_app).sender == "intrus@example.net"
