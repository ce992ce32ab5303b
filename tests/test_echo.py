"""What a reply quotes of the applicant: short, one line, nothing clickable."""

from __future__ import annotations

import pytest

from mailbot.echo import ECHO_CHARS, NAME_CHARS, defang, echo_name, echo_text

SCAM = (
    "Colis bloqué : https://colis-suivi.example.com/pay?id=1 réglez 1,99 € "
    "ou écrivez à support@colis-suivi.fr, www.livraison-express.fr "
) * 50


def test_a_long_text_is_cut_on_a_word_and_defanged() -> None:
    echoed = echo_text(SCAM)
    assert echoed is not None
    assert len(echoed) <= ECHO_CHARS
    assert echoed.endswith("…")
    assert "https://" not in echoed and "hxxps://" in echoed
    assert "colis-suivi.example.com" not in echoed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("voir http://a.example.org/x", "voir hxxp://a[.]example[.]org/x"),
        ("FTP://files.example.net", "fxp://files[.]example[.]net"),
        ("écrire à alice@exemple.fr", "écrire à alice[at]exemple[.]fr"),
        ("site quartier-perroy.fr", "site quartier-perroy[.]fr"),
        ("Mme.Durand et M. Dupont", "Mme.Durand et M. Dupont"),
        ("Potager v2.0 du Perroy", "Potager v2.0 du Perroy"),
    ],
)
def test_defang(raw: str, expected: str) -> None:
    assert defang(raw) == expected


def test_short_titles_are_quoted_as_typed_on_one_line() -> None:
    assert echo_text("Potager solidaire\r\ndu Perroy") == "Potager solidaire du Perroy"
    assert echo_text(None) is None
    assert echo_text("   ") is None


def test_display_names_are_cut() -> None:
    name = echo_name("Alice " * 30)
    assert name is not None and len(name) <= NAME_CHARS
    assert echo_name("Marie-Claire Dupont") == "Marie-Claire Dupont"
