"""The one address validator: what it keeps can always be answered; caps count people."""

from __future__ import annotations

from email.headerregistry import Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.addresses import cap_key, domain_of, is_address, normalise_address


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice.Martin@Example.ORG", "alice.martin@example.org"),
        ("<bob@mail.example.co.uk>", "bob@mail.example.co.uk"),
        ("  claire+bsc@ville-bethune.fr ", "claire+bsc@ville-bethune.fr"),
        ("x@bücher.example", "x@bücher.example"),
    ],
)
def test_real_addresses_are_kept_in_canonical_form(raw: str, expected: str) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "victim@example.org.",
        "a@b..c",
        "MAILER-DAEMON",
        "<>",
        "",
        "post_master@localhost",
        "a@b@c.org",
        ".alice@example.org",
        "alice.@example.org",
        "al..ice@example.org",
        "alice@-example.org",
        "alice@example-.org",
        "alice@1.2.3.4",
        "ali ce@example.org",
        "alice@exa mple.org",
        "alice\r\nBcc: x@y.org@example.org",
        "alice\x85@example.org",
        '"quoted"@example.org',
        "alice@" + "a" * 64 + ".org",
        "a" * 65 + "@example.org",
        # The standard library cannot write a non-ASCII local part in a reply.
        "josé@exemple.fr",
        None,
        42,
    ],
)
def test_what_is_not_an_address_is_refused(raw: object) -> None:
    assert normalise_address(raw) is None
    assert not is_address(raw)


@given(st.text(max_size=80))
def test_anything_kept_can_be_put_in_a_reply(raw: str) -> None:
    address = normalise_address(raw)
    if address is not None:
        # Reply building does exactly this; it must never raise on a kept address.
        assert str(Address(addr_spec=address)) == address


ASCII_LOCAL = st.text(alphabet=[chr(c) for c in range(32, 127)], min_size=1, max_size=20)
LABEL = st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=8)


@settings(max_examples=2000)
@given(ASCII_LOCAL, st.lists(LABEL, min_size=1, max_size=4))
def test_every_ascii_address_kept_can_be_put_in_a_reply(local: str, labels: list[str]) -> None:
    """ASCII addresses are kept without asking ``Address``: it must accept each of them."""
    address = normalise_address(f"{local}@{'.'.join(labels)}")
    if address is not None:
        assert str(Address(addr_spec=address)) == address


def test_cap_key_counts_one_person_per_mailbox() -> None:
    assert (
        cap_key("Victim+a@Example.org") == cap_key("victim+b@example.org") == "victim@example.org"
    )
    assert cap_key("+only@example.org") == "+only@example.org"
    assert domain_of("victim@example.org") == "example.org"
    assert domain_of("nobody") == ""
