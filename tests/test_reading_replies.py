"""Never tell an applicant something false (issue 15): doubts to staff, body answers count.

End to end through the intake (real Dovecot in, real aiosmtpd out, the service's database):

- a candidature whose required field is read with doubt is filed (reference, pieces, the doubt
  and its evidence) in review, and the applicant gets the neutral acknowledgement only; the
  digest shows staff the doubt with its evidence; a staff correction that completes it sends
  the "complet" reply once, one that leaves it incomplete the (now true) missing-pieces notice;
- a follow-up whose body gives the missing values fills them, normalised as the form reader
  would, with the message as evidence; our quoted notice alone fills nothing; a follow-up with
  nothing readable goes to review, staff see it in the digest and the applicant is told it was
  passed on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlmodel import select

from mailbot.cli import main
from mailbot.config import load_config
from mailbot.digest import build_digest, print_digest
from mailbot.errors import ConfigError
from mailbot.intake import poll_all
from mailbot.replies import check_templates
from mailbot.smtp import send_outbox
from mailbot.trial import try_message
from parsers.dossier.body_answers import SOURCE, read_body_answers
from storage.db import session_scope
from storage.models import Dossier, Message, Outbox, Piece
from tests.fixtures import corpus
from tests.fixtures.candidatures import (
    APPLICANT,
    DOUBTFUL_CATEGORY,
    DOUBTFUL_DOSSIER,
    RULES,
    application,
    doubtful_application,
    letter_pdf,
)
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import make_mail

NB = "n.bataillon"


def run(app):
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]
    return send_outbox(app)


def outbox(app) -> list[Outbox]:
    with session_scope(app.engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)).all())


def the_dossier(app) -> Dossier:
    with session_scope(app.engine) as session:
        [dossier] = session.exec(select(Dossier)).all()
        session.expunge(dossier)
        return dossier


def body_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


# --------------------------------------------------------------------------
# A required field read with doubt


def test_doubtful_candidature_is_filed_for_review_with_a_neutral_acknowledgement(
    replies_app, dovecot, smtp_server, capsys
):
    dovecot.append(NB, doubtful_application())
    assert run(replies_app).sent == 1

    dossier = the_dossier(replies_app)
    assert dossier.status == "needs_review"
    assert dossier.reference.startswith("BSC-")
    # Nothing the reader doubts is kept as an answer; the doubt and its evidence are.
    assert dossier.fields.get("categorie_label") is None
    doubt = dossier.evidence["categorie_label"]
    assert doubt["confidence"] < 0.6 and "several boxes" in doubt["doubt"]
    assert doubt["raw"] == DOUBTFUL_CATEGORY
    with session_scope(replies_app.engine) as session:
        roles = sorted(p.role for p in session.exec(select(Piece)).all())
        [message] = session.exec(select(Message)).all()
    assert roles == ["dossier", "letter"]
    assert (message.status, message.verdict) == ("filed", "candidature")

    [captured] = smtp_server.wait_for(1)
    reply, text = captured.message, body_text(captured.message)
    assert captured.rcpt_tos == ("marie.lefebvre@jardins-perroy.fr",)
    assert dossier.reference in reply["Subject"] and "Accusé de réception" in reply["Subject"]
    assert "bien reçu votre candidature" in text
    assert "en cours de vérification par le service Béthune Smart City" in text
    assert "Nous reviendrons vers vous" in text
    # Neither a notice naming a field nor an acknowledgement of a complete dossier.
    assert "il nous manque" not in text and "Catégorie" not in text
    assert "Votre dossier est complet" not in text
    assert "pièces manquantes" not in reply["Subject"]
    assert [row.kind for row in outbox(replies_app)] == ["under_review"]
    assert reply["Auto-Submitted"] == "auto-replied"

    # Staff see the doubt and its evidence in the digest, text and HTML.
    digest = print_digest(replies_app, reconcile=False)
    assert "DOSSIERS À VÉRIFIER (1)" in digest
    assert dossier.reference in digest.split("DOSSIERS À VÉRIFIER (1)")[1].split("DOSSIERS")[0]
    assert "Doute sur « Catégorie de label demandée » : aucune valeur retenue" in digest
    assert "confiance 40 %" in digest
    assert "plusieurs cases lues comme cochées là où une seule est attendue" in digest
    assert f"« {DOUBTFUL_CATEGORY} »" in digest
    assert f"mailbot dossiers set-field {dossier.reference} CHAMP VALEUR" in digest
    html = build_digest(replies_app, reconcile=False).html
    assert "Dossiers à vérifier" in html and "Catégorie de label demandée" in html
    assert "plusieurs cases lues comme cochées" in html

    # Staff settle the doubt: the dossier is complete, the "complet" reply goes once.
    assert main(["dossiers", "set-field", dossier.reference, "categorie_label", "projet"]) == 0
    said = capsys.readouterr().out
    assert "status: complete" in said and "reply queued" in said
    assert send_outbox(replies_app).sent == 1
    completed = smtp_server.wait_for(2)[1].message
    assert "est complet" in completed["Subject"]
    assert "est désormais complet" in body_text(completed)
    after = the_dossier(replies_app)
    assert (after.status, after.fields["categorie_label"]) == ("complete", "projet")
    assert after.evidence["categorie_label"]["doubted"]["raw"] == DOUBTFUL_CATEGORY
    # A second correction sends nothing more; the digest no longer lists it to check.
    assert main(["dossiers", "set-field", dossier.reference, "maturite", "bacs posés"]) == 0
    assert send_outbox(replies_app).sent == 0
    assert [row.kind for row in outbox(replies_app)] == ["under_review", "completed"]
    assert "DOSSIERS À VÉRIFIER (0)" in print_digest(replies_app, reconcile=False)


def test_a_correction_that_leaves_it_incomplete_sends_the_notice_then_true(
    replies_app, dovecot, smtp_server, capsys
):
    dovecot.append(NB, doubtful_application(letter=False))
    run(replies_app)
    dossier = the_dossier(replies_app)
    assert dossier.status == "needs_review"
    assert [row.kind for row in outbox(replies_app)] == ["under_review"]

    # Confirming the reading is a correction too; here staff choose "réalisée".
    assert main(["dossiers", "set-field", dossier.reference, "categorie_label", "1"]) == 0
    assert "status: incomplete" in capsys.readouterr().out
    run(replies_app)
    notice = smtp_server.wait_for(2)[1].message
    assert "pièces manquantes" in notice["Subject"]
    text = body_text(notice)
    assert "le courrier officiel adressé à Monsieur le Maire" in text
    assert "Catégorie" not in text  # settled by staff: not asked of the applicant
    assert [row.kind for row in outbox(replies_app)] == ["under_review", "missing_pieces"]


def test_try_reports_the_doubt_and_the_neutral_acknowledgement(config_dir):
    config = load_config(config_dir, environ={"MAILBOT_DATABASE__URL": "sqlite://"})
    result = try_message(config, doubtful_application().as_bytes())
    assert result["verdict"] == "candidature"
    assert result["uncertain"] == ["categorie_label"]
    assert "categorie_label" not in result["fields"]
    assert result["reply"]["kind"] == "under_review"
    assert "en cours de vérification" in result["reply"]["text"]
    assert "il nous manque" not in result["reply"]["text"]
    # A dossier read without doubt says nothing of doubts (the key is optional).
    plain = try_message(config, application().as_bytes())
    assert "uncertain" not in plain and plain["reply"]["kind"] == "acknowledgement"


# --------------------------------------------------------------------------
# Answers in the body


def without(*keys: str) -> bytes:
    """The potager's fillable dossier with ``keys`` left blank."""
    project = dataclasses.replace(
        corpus.POTAGER, raw={k: v for k, v in corpus.POTAGER.raw.items() if k not in keys}
    )
    return corpus.form_pdf(RULES, project)


def incomplete_then_notice(app, dovecot, smtp_server, *keys: str):
    dovecot.append(
        NB,
        application(
            attachments=[
                ("dossier_intention.pdf", without(*keys), "application/pdf"),
                ("courrier_maire.pdf", corpus.letter_pdf(corpus.POTAGER), "application/pdf"),
            ]
        ),
    )
    run(app)
    dossier = the_dossier(app)
    assert dossier.status == "incomplete"
    assert {f"field:{k}" for k in keys} <= set(dossier.missing)
    [notice] = smtp_server.wait_for(1)
    return dossier, notice.message


def answer(notice, body: str):
    return make_mail(
        subject=f"Re: {notice['Subject']}",
        sender=APPLICANT,
        body=body,
        in_reply_to=notice["Message-ID"],
        references=notice["Message-ID"],
    )


def quoted(notice) -> str:
    return "\n".join(f"> {line}".rstrip() for line in body_text(notice).splitlines())


@pytest.mark.parametrize(
    "style",
    ["plain_lines", "accents_and_case", "under_the_quoted_notice"],
)
def test_values_typed_in_the_body_complete_the_dossier(replies_app, dovecot, smtp_server, style):
    dossier, notice = incomplete_then_notice(
        replies_app, dovecot, smtp_server, "lieu", "date_realisation"
    )
    if style == "plain_lines":
        body = (
            "Bonjour,\n\nVoici les informations manquantes :\n"
            "Lieu : Quartier du Perroy\nDate prévue : 15 juin 2027\n\nCordialement,\nMarie\n\n"
            + quoted(notice)
        )
    elif style == "accents_and_case":
        body = (
            "LIEU DE REALISATION (TERRITOIRE DE BETHUNE) : Quartier du Perroy\n"
            "date de réalisation ou date previsionnelle = 15/06/2027\n"
        )
    else:
        lines = []
        for line in quoted(notice).splitlines():
            lines.append(line)
            if "« Lieu de réalisation" in line:
                lines.append("Quartier du Perroy")
            if "« Date de réalisation" in line:
                lines.append("juin 2027, le 15")
        body = "Bonjour, mes réponses ci-dessous.\n\n" + "\n".join(lines)
        assert "Quartier du Perroy" in body
    dovecot.append(NB, answer(notice, body))
    run(replies_app)

    after = the_dossier(replies_app)
    assert after.status == "complete", after.missing
    assert after.fields["lieu"] == "Quartier du Perroy"
    expected_date = "2027-06" if style == "under_the_quoted_notice" else "2027-06-15"
    assert str(after.fields["date_realisation"]).startswith(expected_date)
    evidence = after.evidence["lieu"]
    assert evidence["source"] == SOURCE and "Quartier du Perroy" in evidence["raw"]
    assert evidence["message_id"]
    completed = smtp_server.wait_for(2)[1].message
    assert "est désormais complet" in body_text(completed)
    assert [row.kind for row in outbox(replies_app)] == ["missing_pieces", "completed"]
    # The notice's other answers (fields read from the form) were not touched.
    assert after.fields["intitule"] == dossier.fields["intitule"]


def test_our_quoted_notice_alone_fills_nothing_and_is_passed_on(replies_app, dovecot, smtp_server):
    dossier, notice = incomplete_then_notice(replies_app, dovecot, smtp_server, "lieu")
    dovecot.append(NB, answer(notice, "Bonjour, je ne comprends pas.\n\n" + quoted(notice)))
    run(replies_app)

    after = the_dossier(replies_app)
    assert after.fields == dossier.fields and after.status == "incomplete"
    with session_scope(replies_app.engine) as session:
        follow = session.exec(select(Message).where(Message.verdict == "follow_up")).one()
    assert (follow.status, follow.reason, follow.dossier_id) == (
        "needs_review",
        "follow_up_unread",
        dossier.id,
    )
    passed_on = smtp_server.wait_for(2)[1].message
    assert "transmis au service Béthune Smart City" in passed_on["Subject"]
    text = body_text(passed_on)
    assert "Il a été transmis au service Béthune Smart City" in text
    assert "il nous manque" not in text
    assert [row.kind for row in outbox(replies_app)] == ["missing_pieces", "passed_on"]
    digest = print_digest(replies_app, reconcile=False)
    assert "MESSAGES À VÉRIFIER OU EN ÉCHEC (1)" in digest
    assert "suite d'un dossier sans pièce jointe ni réponse lisible" in digest
    assert f"dossier {dossier.reference}" in digest


# --------------------------------------------------------------------------
# The body reader alone


SHIPPED_RULES = load_config(SHIPPED_CONFIG, environ={}).rules


def test_quoted_lines_outlook_originals_and_signatures_are_not_answers():
    text = (
        "Lieu : Quartier du Perroy\n"
        "> Description de l'action : une ligne de notre message\n"
        "-- \n"
        "Budget : 99 €\n"
    )
    assert read_body_answers(text, rules=SHIPPED_RULES).fields == {"lieu": "Quartier du Perroy"}
    outlook = (
        "Voici.\n\nDe : Service Béthune Smart City <n.bataillon@ville-bethune.fr>\n"
        "Envoyé : lundi 30 novembre 2026 10:00\nObjet : pièces manquantes\n\n"
        "Lieu de réalisation (territoire de Béthune) : ne pas lire\n"
    )
    assert read_body_answers(outlook, rules=SHIPPED_RULES).fields == {}


def test_answers_are_normalised_as_the_form_reader_does():
    text = (
        "Catégorie : Projet\nCritères : collaborative, durable\nThème : mobilité\n"
        "Budget estimé (€) : 12k€\nCourriel : pas-une-adresse\n"
        "> - le champ « Description de l'action »\n"
        "Un potager partagé,\nen bacs.\n\nMerci.\n"
    )
    reading = read_body_answers(text, rules=SHIPPED_RULES)
    assert reading.fields == {
        "categorie_label": "projet",
        "criteres": ["collaborative", "durable"],
        "thematique": "mobilite_transports",
        "budget": 12000,
        "description": "Un potager partagé,\nen bacs.",
    }
    # An answer that does not validate is not kept, and says why.
    assert any(w.startswith("contact_email:") for w in reading.warnings)
    assert reading.evidence["budget"].raw == "Budget estimé (€) : 12k€"
    assert reading.evidence["budget"].source == SOURCE


def test_config_check_requires_and_renders_the_new_reply_templates(config_dir):
    check_templates(load_config(config_dir, environ={}))
    (config_dir / "templates" / "passed_on.txt.j2").unlink()
    broken = config_dir / "templates" / "under_review.html.j2"
    broken.write_text(
        broken.read_text(encoding="utf-8").replace("{{ reference }}", "{{ no_such.reference }}"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        check_templates(load_config(config_dir, environ={}))
    said = {(Path(p.file).name, p.message.split(":")[0]) for p in caught.value.problems}
    assert said == {
        ("passed_on.txt.j2", "template missing"),
        ("under_review.html.j2", "cannot render"),
    }


def test_the_applicant_settles_a_doubt_by_answering_in_the_body(replies_app, dovecot, smtp_server):
    dovecot.append(NB, doubtful_application())
    run(replies_app)
    [ack] = smtp_server.wait_for(1)
    assert the_dossier(replies_app).status == "needs_review"
    dovecot.append(NB, answer(ack.message, "Bonjour,\nCatégorie : 2 - Projet\n\nMarie"))
    run(replies_app)
    after = the_dossier(replies_app)
    assert (after.status, after.fields["categorie_label"]) == ("complete", "projet")
    assert after.evidence["categorie_label"]["source"] == SOURCE
    completed = smtp_server.wait_for(2)[1].message
    assert "est désormais complet" in body_text(completed)
    assert [row.kind for row in outbox(replies_app)] == ["under_review", "completed"]


def test_a_follow_up_bringing_a_doubtful_dossier_sends_no_notice(replies_app, dovecot, smtp_server):
    # The first message has only the letter: a notice asks for the dossier. The
    # dossier then comes with its category read with doubt: the dossier waits
    # for staff, and no notice names the category as missing.
    dovecot.append(NB, application(attachments=[("courrier.pdf", letter_pdf(), "application/pdf")]))
    run(replies_app)
    [notice] = smtp_server.wait_for(1)
    dovecot.append(
        NB,
        make_mail(
            subject=f"Re: {notice.message['Subject']}",
            sender=APPLICANT,
            body="Voici le dossier.",
            in_reply_to=notice.message["Message-ID"],
            attachments=[("dossier.txt", DOUBTFUL_DOSSIER.encode(), "text/plain")],
        ),
    )
    run(replies_app)
    after = the_dossier(replies_app)
    assert after.status == "needs_review"
    assert after.evidence["categorie_label"]["doubt"]
    assert [row.kind for row in outbox(replies_app)] == ["missing_pieces"]
    assert len(smtp_server.messages) == 1


def test_a_question_signed_with_a_phone_number_is_still_passed_on(
    replies_app, dovecot, smtp_server
):
    # The phone number fills the blank optional field, but it answers nothing
    # the service asked: the question goes to staff, the applicant is told so.
    dovecot.append(NB, doubtful_application())
    run(replies_app)
    [ack] = smtp_server.wait_for(1)
    body = "Bonjour, quand aurons-nous une réponse ?\n\nMarie Lefebvre\nTél. : 06 12 34 56 78\n"
    dovecot.append(NB, answer(ack.message, body))
    run(replies_app)
    after = the_dossier(replies_app)
    assert after.status == "needs_review"
    assert after.fields["contact_telephone"] == "+33612345678"
    with session_scope(replies_app.engine) as session:
        follow = session.exec(select(Message).where(Message.verdict == "follow_up")).one()
    assert (follow.status, follow.reason) == ("needs_review", "follow_up_unread")
    assert [row.kind for row in outbox(replies_app)] == ["under_review", "passed_on"]
