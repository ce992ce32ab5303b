"""The whole message's classification reuses what the first pass's rules answered.

``mailbot.pipeline.Analyser._classify``: the rules ``decide_from_headers``
ran on a header block are not asked again on the whole message when it has
the same header fields once read (and once a trusted forward is unwrapped);
``parsers.headers_first.reusable_results`` says which answers stand. The
classification is that of ``Classifier.classify`` on the classify corpus
(golden, hostile, seeds, everyday, 500 generated messages) and on forwards
that change the sender: a sender rule sees the sender as it is after the
forward is unwrapped. A real Dovecot mailbox polled with and without the
reuse files the same rows.
"""

from __future__ import annotations

import pytest

from mailbot import pipeline
from mailbot.intake import poll_mailbox
from mailbot.pipeline import Analyser, trusted_forward
from parsers.classify import Verdict
from parsers.headers_first import reusable_results
from parsers.mail import parse_message
from tests.fixtures.classify_corpus import MAILBOXES, _structure, config, raw_cases
from tests.fixtures.polls import app_over, filed_rows, mixed_mailbox

NB = "n.bataillon"
CONFIG = config()
STAFF = sorted(CONFIG.settings.own_addresses)[0]


def _inline_forward(*, sender: str, inner: str, n: int, body: str) -> bytes:
    lines = [
        f"From: Quelqu'un <{sender}>",
        "To: n.bataillon@ville-bethune.fr",
        "Subject: TR: Candidature label Smart City",
        "Date: Tue, 24 Nov 2026 10:00:00 +0100",
        f"Message-ID: <forward.{n}@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "-------- Message transféré --------",
        f"De : Expéditeur <{inner}>",
        "Date : lun. 23 nov. 2026 à 09:00",
        "Objet : Candidature label Smart City",
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


_BODY = "Bonjour, je vous adresse ma candidature au label Smart City pour notre projet."
FORWARDS = {
    # Staff forward an applicant's mail: own_sender hits on the header block
    # (staff), misses on the whole message (the applicant).
    "staff-forwards-applicant": _inline_forward(
        sender=STAFF, inner="marie.dupont@example.org", n=1, body=_BODY
    ),
    # An outsider forwards a robot's mail: not honoured, the outer sender stays.
    "outsider-forwards-robot": _inline_forward(
        sender="paul@example.org", inner="noreply@service.example.com", n=2, body=_BODY
    ),
    # An outsider forwards staff mail: not honoured either.
    "outsider-forwards-staff": _inline_forward(
        sender="paul@example.org", inner=STAFF, n=3, body="Merci pour votre message."
    ),
    # Staff forward a robot's mail, and staff forward staff mail.
    "staff-forwards-robot": _inline_forward(
        sender=STAFF, inner="mailer-daemon@example.net", n=4, body=_BODY
    ),
    "staff-forwards-staff": _inline_forward(sender=STAFF, inner=STAFF, n=5, body=_BODY),
}


def _cases() -> dict[str, bytes]:
    cases = {name: case.raw for name, case in raw_cases()}
    cases.update({f"forward:{name}": raw for name, raw in FORWARDS.items()})
    return cases


CASES = _cases()


def _both(analyser: Analyser, raw: bytes, mailbox: str):  # type: ignore[no-untyped-def]
    """(reused, classify's, answers reused) for a message the headers did not settle; else None."""
    limits = CONFIG.settings.limits
    end = raw.find(b"\r\n\r\n")
    header = raw[: end + 4] if end >= 0 else raw
    head = analyser.read_head(header, size=len(raw)) if header else None
    if head is None:
        return None
    whole = parse_message(raw, limits=limits)
    decided = analyser.decide_from_headers(
        head, structure=_structure(whole), size=len(raw), mailbox=mailbox
    )
    if decided is not None:
        return None
    mail = parse_message(raw, limits=limits, head=head)
    mail = trusted_forward(mail, own_addresses=CONFIG.settings.own_addresses)
    reused = analyser._classify(mail, mailbox, head)
    plain = analyser.classifier.classify(mail, ctx=analyser._context(mailbox))
    noted = head.notes[pipeline._RULES_NOTE]
    return reused, plain, reusable_results(head.mail, mail, noted[2])


def test_the_classification_is_classify_s_on_the_corpus() -> None:
    analyser = Analyser(CONFIG)
    compared = reused_some = 0
    for index, (name, raw) in enumerate(sorted(CASES.items())):
        found = _both(analyser, raw, MAILBOXES[index % 2])
        if found is None:
            continue
        reused, plain, answers = found
        assert reused == plain, name
        assert reused.trace == plain.trace, name
        compared += 1
        reused_some += bool(answers)
    # Not a vacuous comparison: most messages were classified with answers reused.
    assert compared > 300
    assert reused_some > 0.5 * compared


@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_a_sender_rule_sees_the_sender_after_the_forward(name: str) -> None:
    analyser = Analyser(CONFIG)
    found = _both(analyser, FORWARDS[name], NB)
    assert found is not None, "the headers alone must not settle a forward"
    reused, plain, answers = found
    assert reused == plain and reused.trace == plain.trace
    if name == "staff-forwards-applicant":
        # The header block's own_sender hit (staff) must not be reused: the
        # applicant, once the forward is unwrapped, is not one of ours.
        assert answers == {}
        assert plain.verdict != Verdict.NOT_CANDIDATURE
        assert any(h.rule == "own_sender" and not h.hit for h in plain.trace)


def test_nothing_is_reused_from_another_classifier_or_mailbox() -> None:
    analyser = Analyser(CONFIG)
    other = Analyser(CONFIG)
    raw = CASES["forward:outsider-forwards-staff"]
    head = analyser.read_head(raw[: raw.find(b"\r\n\r\n") + 4], size=len(raw))
    assert head is not None
    mail = parse_message(raw, limits=CONFIG.settings.limits)
    analyser.decide_from_headers(head, structure=_structure(mail), size=len(raw), mailbox=NB)
    assert head.notes[pipeline._RULES_NOTE][0] is analyser.classifier
    calls: list[str] = []
    for who, mailbox in ((other, NB), (analyser, "d.berteloot")):
        original = who.classifier.classify

        def spy(*args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls.append("classify")
            return _original(*args, **kwargs)

        who.classifier.classify = spy  # type: ignore[method-assign]
        who._classify(mail, mailbox, head)
    assert calls == ["classify", "classify"]


def test_a_poll_files_the_same_with_and_without_the_reuse(
    config_dir, service_env, dovecot, tmp_path, monkeypatch
):
    messages = mixed_mailbox()
    messages[5:5] = list(FORWARDS.values())
    dovecot.append_many(NB, messages)
    reuse = app_over(config_dir, tmp_path / "reuse")
    fresh = app_over(config_dir, tmp_path / "fresh")
    reused: list[int] = []
    original = pipeline.reusable_results

    def counting(head, mail, results):  # type: ignore[no-untyped-def]
        found = original(head, mail, results)
        reused.append(len(found))
        return found

    try:
        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "reusable_results", counting)
            report = poll_mailbox(reuse, reuse.config.settings.mailbox(NB))
        assert report.error is None, report.summary()
        assert sum(1 for n in reused if n) >= 8  # the everyday mail read whole
        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "reusable_results", lambda *_args: {})  # as before
            fresh_report = poll_mailbox(fresh, fresh.config.settings.mailbox(NB))
        assert fresh_report.summary() == report.summary()
        assert filed_rows(reuse.engine) == filed_rows(fresh.engine)
    finally:
        reuse.close()
        fresh.close()
