"""Staff actions refused with a code and its parameters: English for the CLI, French for the pages.

Each refusal of ``mailbot.decisions`` (and of the retry and the legal hold
the back-office offers beside them) raises ``RefusedError`` with a
``parsers.reasons.Refusal`` code; ``mailbot.wording.refusal_text`` words it
in French, the same for every page. The CLI, English everywhere else, keeps
the English sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from mailbot import decisions, wording
from mailbot.app import App
from mailbot.cli import main
from mailbot.errors import RefusedError
from mailbot.privacy.errors import PrivacyError
from mailbot.privacy.legal_hold import set_legal_hold
from mailbot.retry import retry_message
from parsers.reasons import Refusal
from storage import repositories as repo
from storage.db import session_scope
from storage.models import Message


@pytest.fixture
def app(config_dir, secrets_env, monkeypatch) -> Iterator[App]:
    monkeypatch.setenv("MAILBOT_CONFIG", str(config_dir))
    application = App(str(config_dir))
    yield application
    application.close()


@pytest.fixture
def seeded(app: App) -> dict[str, object]:
    """A dossier, a filed message (not attachable) and a waiting one whose raw was not kept."""
    with session_scope(app.engine) as session:
        dossier = repo.create_dossier(
            session=session,
            year=2026,
            sender="marie@example.org",
            sender_name=None,
            fields={},
            missing=[],
            status="incomplete",
            received_at=datetime.now(UTC),
            actor="system",
        )
        filed, _ = repo.add_message(
            session=session,
            message=Message(
                dedup_key="filed",
                sha256="a" * 64,
                size=1,
                sender="marie@example.org",
                verdict="candidature",
                status="filed",
                dossier_id=dossier.id,
            ),
        )
        waiting, _ = repo.add_message(
            session=session,
            message=Message(
                dedup_key="waiting",
                sha256="b" * 64,
                size=1,
                sender="voisine@example.org",
                verdict="follow_up",
                status="needs_review",
            ),
        )
        return {"reference": dossier.reference, "filed": filed.id, "waiting": waiting.id}


def _refusal(call: Callable[[], object]) -> RefusedError:
    with pytest.raises(RefusedError) as caught:
        call()
    return caught.value


def test_each_refusal_has_its_code_parameters_english_and_french(app, seeded) -> None:
    reference, filed, waiting = seeded["reference"], seeded["filed"], seeded["waiting"]
    cases = [
        (
            lambda: decisions.decide_status(
                app, reference=reference, status="needs_review", actor="staff:t"
            ),
            Refusal.NOT_A_DECISION,
            "'needs_review' is not one of complete, accepted, rejected, withdrawn",
            "« à vérifier » n'est pas une décision possible ; décisions possibles : "
            "complet, labellisé, refusé, retiré",
        ),
        (
            lambda: decisions.decide_status(
                app, reference="bsc-2026-9999", status="accepted", actor="staff:t"
            ),
            Refusal.NO_DOSSIER,
            "no dossier 'bsc-2026-9999'",
            "aucun dossier ne porte la référence BSC-2026-9999",
        ),
        (
            lambda: decisions.dismiss_message(app, message_pk=filed, actor="staff:t"),
            Refusal.NOT_DISMISSABLE,
            f"message {filed} is filed; only failed or needs_review messages can be dismissed",
            f"le message n° {filed} est « enregistré » : seuls les messages en échec ou à "
            "vérifier peuvent être écartés",
        ),
        (
            lambda: decisions.dismiss_message(app, message_pk=999, actor="staff:t"),
            Refusal.NO_MESSAGE,
            "no message with id 999",
            "aucun message n° 999",
        ),
        (
            lambda: decisions.attach_message(
                app, message_pk=filed, reference=reference, actor="staff:t"
            ),
            Refusal.NOT_ATTACHABLE,
            f"message {filed} is filed; only needs_review or failed messages can be attached",
            f"le message n° {filed} est « enregistré » : seuls les messages à vérifier ou en "
            "échec peuvent être rattachés à un dossier",
        ),
        (
            lambda: decisions.attach_message(
                app, message_pk=waiting, reference=reference, actor="staff:t"
            ),
            Refusal.RAW_NOT_KEPT,
            f"message {waiting}: the raw message was not kept",
            f"le message d'origine n° {waiting} n'a pas été conservé",
        ),
        (
            lambda: retry_message(app, filed, actor="staff:t"),
            Refusal.NOT_RETRYABLE,
            f"message {filed} is filed; only failed or needs_review messages can be retried",
            f"le message n° {filed} est « enregistré » : seuls les messages en échec ou à "
            "vérifier peuvent être traités à nouveau",
        ),
        (
            lambda: decisions.set_field(
                app, reference=reference, key="couleur", value="bleu", actor="staff:t"
            ),
            Refusal.UNKNOWN_FIELD,
            "unknown field 'couleur'; valid fields: ",
            "champ inconnu « couleur » (champs : ",
        ),
        (
            lambda: decisions.set_field(
                app, reference=reference, key="budget", value="beaucoup", actor="staff:t"
            ),
            Refusal.INVALID_VALUE,
            "'beaucoup' is not a valid ",
            f"« beaucoup » n'est pas une valeur reconnue pour "
            f"« {app.config.rules.fields['budget'].label} » (un montant en euros est attendu, "
            "par exemple 12 500 €)",
        ),
    ]
    for call, code, english, french in cases:
        error = _refusal(call)
        assert error.code == code
        assert str(error).startswith(english), str(error)
        assert wording.refusal_text(error).startswith(french), wording.refusal_text(error)
    # The legal hold is a privacy request: still a PrivacyError, now coded too.
    hold = _refusal(lambda: set_legal_hold(app, "BSC-2026-9999", True, actor="staff:t"))
    assert isinstance(hold, PrivacyError) and hold.code == Refusal.NO_DOSSIER
    assert wording.refusal_text(hold) == "aucun dossier ne porte la référence BSC-2026-9999"


def test_a_choice_field_refusal_lists_the_choices_by_their_label(app, seeded) -> None:
    error = _refusal(
        lambda: decisions.set_field(
            app, reference=seeded["reference"], key="thematique", value="zzz", actor="staff:t"
        )
    )
    assert error.params["choices"] == [t.label for t in app.config.rules.thematiques.values()]
    text = wording.refusal_text(error)
    assert "choix possibles : " + ", ".join(error.params["choices"]) in text


def test_an_uncoded_error_is_shown_after_a_french_label() -> None:
    assert wording.refusal_text(ValueError("disk full")) == "action impossible : disk full"


def test_the_cli_keeps_its_english_sentence(app, seeded, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MAILBOT_STAFF_USER", "nbataillon")
    assert main(["dossiers", "set-field", seeded["reference"], "couleur", "bleu"]) == 1
    err = capsys.readouterr().err
    assert "error: unknown field 'couleur'" in err and "champ inconnu" not in err
