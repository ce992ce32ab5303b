"""Authentication-Results (RFC 8601): only our server, only aligned passes, failures win."""

from __future__ import annotations

import pytest

from parsers.authresults import AuthOutcome, aligned, evaluate, organisational_domain

OURS = "mx.ville-bethune.fr"


def verdict(*values: str, sender: str = "alice@example.org") -> AuthOutcome:
    return evaluate(values, authserv_id=OURS, from_address=sender).outcome


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("mail.ville-bethune.fr", "ville-bethune.fr"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("Example.ORG.", "example.org"),
        ("bounce.attacker.example", "attacker.example"),
        ("", ""),
    ],
)
def test_organisational_domain_uses_the_public_suffix_list(domain: str, org: str) -> None:
    assert organisational_domain(domain) == org


def test_alignment_is_relaxed_but_not_across_organisations() -> None:
    assert aligned("bounce.example.org", "example.org")
    assert not aligned("example.org.attacker.example", "example.org")
    assert not aligned("", "example.org")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{OURS}; dmarc=pass header.from=example.org", AuthOutcome.PASS),
        (f"{OURS}; spf=pass smtp.mailfrom=bounce@mail.example.org", AuthOutcome.PASS),
        (f"{OURS}; dkim=pass header.d=example.org", AuthOutcome.PASS),
        (f"{OURS}; dkim=pass header.i=@news.example.org", AuthOutcome.PASS),
        (f"{OURS}; dmarc=fail (p=reject) header.from=example.org", AuthOutcome.FAIL),
        (f"{OURS}; spf=fail smtp.mailfrom=alice@example.org", AuthOutcome.FAIL),
        (f"{OURS}; spf=softfail smtp.mailfrom=alice@example.org", AuthOutcome.FAIL),
        (f"{OURS}; none", AuthOutcome.UNKNOWN),
    ],
)
def test_results_of_our_server(header: str, expected: AuthOutcome) -> None:
    assert verdict(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        # A pass for the attacker's own domain says nothing about From.
        f"{OURS}; spf=pass smtp.mailfrom=bounce@attacker.example",
        f"{OURS}; dkim=pass header.d=attacker.example",
        f"{OURS}; dkim=pass header.d=example.org.attacker.example",
        # A DMARC pass about another From domain.
        f"{OURS}; dmarc=pass header.from=attacker.example",
        # Inside quoted strings and comments nothing is a result.
        f'{OURS}; spf=neutral smtp.mailfrom="dmarc=pass"@attacker.example',
        f"{OURS}; spf=neutral (helo=dmarc=pass) smtp.mailfrom=x@attacker.example",
    ],
)
def test_unaligned_or_smuggled_passes_do_not_count(header: str) -> None:
    assert verdict(header) != AuthOutcome.PASS


def test_headers_of_other_servers_are_not_trusted() -> None:
    assert verdict("mx.attacker.example; dmarc=pass header.from=example.org") == (
        AuthOutcome.UNKNOWN
    )
    assert verdict("mx.ville-bethune.fr.attacker.example; dmarc=pass") == AuthOutcome.UNKNOWN


def test_every_header_of_our_server_is_merged_and_a_failure_wins() -> None:
    top = f"{OURS}; dkim=none"
    below = f"{OURS}; dmarc=fail header.from=example.org"
    assert verdict(top, below) == AuthOutcome.FAIL
    forged_pass = f"{OURS}; dmarc=pass header.from=example.org"
    assert verdict(forged_pass, below) == AuthOutcome.FAIL


def test_aligned_dkim_outweighs_an_spf_failure_as_dmarc_would() -> None:
    header = f"{OURS}; spf=fail smtp.mailfrom=alice@example.org; dkim=pass header.d=example.org"
    assert verdict(header) == AuthOutcome.PASS


def test_an_unreadable_header_is_never_a_pass() -> None:
    result = evaluate([f"{OURS}; dmarc=pass ;;; garbage("], authserv_id=OURS, from_address="a@b.c")
    assert result.outcome == AuthOutcome.UNKNOWN
    assert "unreadable" in result.explanation


def test_without_from_address_nothing_passes() -> None:
    assert verdict(f"{OURS}; dmarc=pass", sender="") != AuthOutcome.PASS
