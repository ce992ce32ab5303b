"""The city's address cannot be used to mail strangers (issue 14, findings 2, 3 and 8).

Each test is an attack played end to end: the forged candidature is put in
the Dovecot fixture, the real poll files it, ``send_outbox`` talks to the
capturing aiosmtpd server, and the test reads what reached it (or that
nothing did) and the outbox row that says why.
"""

from __future__ import annotations

import dataclasses
import email.policy
import html
import re
from datetime import timedelta
from email.parser import BytesParser

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from mailbot.digest import print_digest
from mailbot.intake import poll_all
from mailbot.smtp import send_outbox
from mailbot.staff import add_staff
from mailbot.web.app import create_app
from storage.db import session_scope
from storage.models import Message, Outbox, utcnow
from tests.fixtures import corpus
from tests.fixtures.candidatures import APPLICANT, RULES, application

NB = "n.bataillon"
OURS = "mx.ville-bethune.fr"
PASSWORD = "un mot de passe assez long"
PROJECTS = (
    corpus.POTAGER,
    corpus.COVOITURAGE,
    corpus.FETE,
    corpus.REPAIR,
    corpus.CAPTEURS,
    corpus.BIODECHETS,
)


def configure(app, monkeypatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"MAILBOT_REPLIES__{key.upper()}", value)
    app._config = None


def poll(app) -> None:
    reports = poll_all(app)
    assert all(r.error is None for r in reports), [r.error for r in reports]


def outbox(app) -> list[Outbox]:
    with session_scope(app.engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)).all())


def messages(app) -> list[Message]:
    with session_scope(app.engine) as session:
        return list(session.exec(select(Message).order_by(Message.id)).all())


def candidature_of(project, *, sender: str, **overrides):
    """A complete candidature for ``project`` from ``sender``."""
    attachments = [
        ("dossier_intention.pdf", corpus.form_pdf(RULES, project), "application/pdf"),
        ("courrier_maire.pdf", corpus.letter_pdf(project), "application/pdf"),
    ]
    values = {
        "sender": sender,
        "subject": f"Candidature au label Béthune Smart City : {project.slug}",
        "attachments": attachments,
    }
    values.update(overrides)
    return application(**values)


# --------------------------------------------------------------------------
# Finding 3: Authentication-Results read with alignment, merging, our id only
# --------------------------------------------------------------------------

FORGED_RESULTS = {
    # SPF passed for the attacker's bounce domain, not for the From domain.
    "spf_of_another_domain": [
        f"{OURS}; spf=pass smtp.mailfrom=bounce@attacker.example; dkim=none; dmarc=none"
    ],
    # A DKIM signature of the attacker's domain says nothing about From.
    "dkim_of_another_domain": [f"{OURS}; dkim=pass header.d=attacker.example; spf=none"],
    # "dmarc=pass" smuggled inside a quoted value and a comment.
    "smuggled_in_quotes_and_comments": [
        f'{OURS}; spf=none smtp.mailfrom="dmarc=pass"@attacker.example '
        "(helo=dmarc=pass); dkim=none (dmarc=pass)"
    ],
    # A pass written by another server (or by the sender) is not ours.
    "another_authserv_id": ["mx.attacker.example; dmarc=pass; spf=pass; dkim=pass"],
}


@pytest.mark.parametrize("case", sorted(FORGED_RESULTS))
def test_forged_authentication_results_get_no_reply(
    replies_app, dovecot, smtp_server, monkeypatch, case
):
    configure(replies_app, monkeypatch, authserv_id=OURS, auth_policy="reply_only_if_pass")
    values = FORGED_RESULTS[case]
    forged = application(headers={"Authentication-Results": values[0]})
    for extra in values[1:]:
        forged["Authentication-Results"] = extra
    dovecot.append(NB, forged)
    poll(replies_app)
    assert send_outbox(replies_app).sent == 0
    assert smtp_server.messages == []
    [row] = outbox(replies_app)
    assert row.status == "suppressed"
    assert row.suppressed_reason == "authentication_not_passed"
    # The hold says why, for staff and `mailbot try`.
    assert row.suppressed_details["explanation"]


def test_a_failure_in_a_second_header_of_ours_wins(replies_app, dovecot, smtp_server, monkeypatch):
    """``dkim=none`` on top and ``dmarc=fail`` below: a failure, no reply."""
    configure(replies_app, monkeypatch, authserv_id=OURS, auth_policy="reply_unless_fail")
    forged = application(headers={"Authentication-Results": f"{OURS}; dkim=none"})
    forged["Authentication-Results"] = f"{OURS}; dmarc=fail header.from=jardins-perroy.fr"
    dovecot.append(NB, forged)
    poll(replies_app)
    assert send_outbox(replies_app).sent == 0
    assert smtp_server.messages == []
    [row] = outbox(replies_app)
    assert (row.status, row.suppressed_reason) == ("suppressed", "authentication_failed")
    assert row.suppressed_details == {"explanation": "dmarc failed"}


@pytest.mark.parametrize(
    "result",
    [
        f"{OURS}; dkim=pass header.d=jardins-perroy.fr; spf=none",
        f"{OURS}; spf=pass smtp.mailfrom=bounces@mail.jardins-perroy.fr",
        f"{OURS}; dmarc=pass header.from=jardins-perroy.fr",
    ],
)
@pytest.mark.parametrize("policy", ["reply_only_if_pass", "reply_unless_fail"])
def test_an_aligned_pass_gets_its_reply(
    replies_app, dovecot, smtp_server, monkeypatch, result, policy
):
    configure(replies_app, monkeypatch, authserv_id=OURS, auth_policy=policy)
    dovecot.append(NB, application(headers={"Authentication-Results": result}))
    poll(replies_app)
    assert send_outbox(replies_app).sent == 1
    [captured] = smtp_server.wait_for(1)
    assert captured.rcpt_tos == ("marie.lefebvre@jardins-perroy.fr",)


# --------------------------------------------------------------------------
# Finding 2: what a reply echoes, and the caps
# --------------------------------------------------------------------------

SCAM = (
    "Votre colis est bloqué au centre de tri : réglez 1,99 € de frais sur "
    "https://colis-suivi-laposte.fr/paiement?id=88231 ou écrivez à "
    "service@colis-suivi-laposte.fr, www.colis-suivi-laposte.fr. "
)


def test_a_scam_intitule_and_a_long_name_are_not_relayed(replies_app, dovecot, smtp_server):
    intitule = (SCAM * 40)[:4000]
    project = dataclasses.replace(corpus.POTAGER, raw={**corpus.POTAGER.raw, "intitule": intitule})
    name = ("La Poste Suivi colis www.colis-suivi-laposte.fr " * 3)[:100]
    dovecot.append(
        NB, candidature_of(project, sender=f'"{name}" <marie.lefebvre@jardins-perroy.fr>')
    )
    poll(replies_app)
    assert send_outbox(replies_app).sent == 1
    [captured] = smtp_server.wait_for(1)
    reply = BytesParser(policy=email.policy.default).parsebytes(captured.data)
    text = reply.get_body(preferencelist=("plain",)).get_content()
    html = reply.get_body(preferencelist=("html",)).get_content()
    for body in (text, html, str(reply["Subject"])):
        assert "http" not in body.lower()
        assert "colis-suivi-laposte.fr" not in body
        assert "@colis" not in body
    # At most 80 characters of the intitulé are echoed.
    echoed = [line for line in text.splitlines() if "colis" in line.lower()]
    quoted = max((m for line in echoed for m in re.findall(r"Votre colis[^»\n]*", line)), key=len)
    assert len(quoted) <= 80, quoted
    assert "Votre colis est bloqué" in quoted
    # The display name is cut to 40 characters in the greeting.
    greeting = text.splitlines()[0]
    assert greeting.startswith("Bonjour ") and greeting.endswith(",")
    assert len(greeting[len("Bonjour ") : -1]) <= 40, greeting


def test_tags_and_case_make_one_person(replies_app, dovecot, smtp_server, monkeypatch):
    configure(replies_app, monkeypatch, per_sender_daily_cap="1")
    senders = ("victim+a@example.org", "victim+b@example.org", "VICTIM@Example.org")
    for project, sender in zip(PROJECTS, senders, strict=False):
        dovecot.append(NB, candidature_of(project, sender=sender))
    poll(replies_app)
    assert send_outbox(replies_app).sent == 1
    assert len(smtp_server.wait_for(1)) == 1
    rows = outbox(replies_app)
    assert [r.status for r in rows] == ["sent", "suppressed", "suppressed"]
    assert {r.suppressed_reason for r in rows[1:]} == {"sender_daily_cap"}


def test_one_domain_gets_at_most_its_daily_cap(replies_app, dovecot, smtp_server, monkeypatch):
    configure(replies_app, monkeypatch, per_domain_daily_cap="2")
    for n, project in enumerate(PROJECTS[:3]):
        dovecot.append(NB, candidature_of(project, sender=f"agent{n}@victim-org.fr"))
    dovecot.append(NB, candidature_of(PROJECTS[3], sender=APPLICANT))
    poll(replies_app)
    assert send_outbox(replies_app).sent == 3
    rows = outbox(replies_app)
    assert [r.status for r in rows] == ["sent", "sent", "suppressed", "sent"]
    assert rows[2].suppressed_reason == "domain_daily_cap"
    assert rows[2].suppressed_details == {"count": 2, "cap": 2, "domain": "victim-org.fr"}
    assert "victim-org.fr" in rows[2].to_addr


@pytest.mark.parametrize(
    ("caps", "too_soon", "later", "reason"),
    [
        ({"global_hourly_cap": "2"}, timedelta(minutes=30), timedelta(minutes=61), "hourly_cap"),
        ({"global_daily_cap": "2"}, timedelta(hours=2), timedelta(hours=25), "global_daily_cap"),
    ],
)
def test_the_global_cap_holds_replies_then_sends_them(
    replies_app, dovecot, smtp_server, monkeypatch, caps, too_soon, later, reason
):
    configure(replies_app, monkeypatch, **caps)
    senders = ("a@one.example.org", "b@two.example.org", "c@three.example.org")
    for project, sender in zip(PROJECTS, senders, strict=False):
        dovecot.append(NB, candidature_of(project, sender=sender))
    poll(replies_app)
    start = utcnow()
    assert send_outbox(replies_app, now=start).sent == 2
    rows = outbox(replies_app)
    assert [r.status for r in rows] == ["sent", "sent", "held"]
    assert rows[2].suppressed_reason == reason
    # Staff see it waiting, in the digest and on the web page.
    digest = print_digest(replies_app, now=start, reconcile=False)
    held = [line for line in digest.splitlines() if "(plafond atteint)" in line]
    assert len(held) == 1 and rows[2].to_addr in held[0], held
    assert "en attente d'envoi (plafond atteint)" in held[0]
    assert "plafond : 2)" in digest
    add_staff(replies_app, login="agent", display_name=None, password=PASSWORD, actor="test")
    with TestClient(create_app(replies_app), follow_redirects=False) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        form = {"login": "agent", "password": PASSWORD, "csrf_token": token.group(1)}
        assert client.post("/login", data=form).status_code == 303
        page = html.unescape(client.get("/replies").text)
    assert rows[2].to_addr in page
    assert "En attente d'envoi (plafond atteint)" in page

    report = send_outbox(replies_app, now=start + too_soon)
    assert (report.released, report.sent) == (0, 0)
    assert outbox(replies_app)[2].status == "held"

    report = send_outbox(replies_app, now=start + later)
    assert (report.released, report.sent) == (1, 1)
    assert [r.status for r in outbox(replies_app)] == ["sent", "sent", "sent"]
    assert sorted(c.rcpt_tos[0] for c in smtp_server.wait_for(3)) == sorted(senders)


# --------------------------------------------------------------------------
# Finding 8: one address validator, from reading to replying
# --------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["victim@example.org.", "a@b..c"])
def test_an_unusable_from_address_is_filed_without_a_reply(
    replies_app, dovecot, smtp_server, address
):
    dovecot.append(NB, application(sender=f"Victime <{address}>"))
    poll(replies_app)
    [message] = messages(replies_app)
    assert message.status != "failed", message.error
    assert send_outbox(replies_app).sent == 0
    assert smtp_server.messages == []
    [row] = outbox(replies_app)
    assert (row.status, row.suppressed_reason) == ("suppressed", "no_sender_address")
