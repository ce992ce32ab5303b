"""What our own mail server says about a message's sender (RFC 8601 Authentication-Results).

A message can carry any number of ``Authentication-Results`` headers, and
anyone on the way (the sender included) can write one. Only those whose
authserv-id is our own server's are read, and they are read with a real
RFC 8601 parser (``authres``): comments and quoted strings cannot smuggle a
``dmarc=pass`` into a value (``smtp.mailfrom="dmarc=pass"@…``,
``(helo=dmarc=pass)``).

A result counts for the address in ``From:`` only when it is about that
address's domain:

* ``dmarc=pass`` counts when the header names no other ``header.from``
  domain (DMARC checks alignment itself);
* ``spf=pass`` counts only when ``smtp.mailfrom`` is in the From domain's
  organisational domain (relaxed alignment, RFC 7489 §3.1);
* ``dkim=pass`` counts only when ``header.d`` (or the domain of
  ``header.i``) is in that organisational domain.

Every header of our authserv-id is merged, and a failure anywhere wins over
a pass: ``dkim=none`` on top and ``dmarc=fail`` below is a failure. The
organisational domain comes from the public-suffix list bundled with
``tldextract``, read offline.

Pure: header values in, a frozen ``AuthVerdict`` out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import authres

if TYPE_CHECKING:
    import tldextract


class AuthOutcome(StrEnum):
    """What the service may conclude about the From address."""

    PASS = "pass"  # noqa: S105 (not a secret) an aligned pass and no failure
    FAIL = "fail"  # DMARC failed, or SPF failed with no aligned DKIM pass
    UNKNOWN = "unknown"  # nothing of ours, or nothing aligned either way


@dataclass(frozen=True)
class AuthVerdict:
    outcome: AuthOutcome
    # Why, in a few words for the trace (English, for developers and `try`).
    explanation: str


_FAILED = frozenset({"fail", "softfail", "permerror"})


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    # Imported on first use: tldextract brings requests and urllib3 (about
    # 6 MB a process), which a worker whose mail never needs a domain name
    # read does not pay for (bench.memory).
    import tldextract

    # No download, no cache on disk: the snapshot shipped with the package.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def organisational_domain(domain: str) -> str:
    """``mail.ville-bethune.fr`` → ``ville-bethune.fr``; unknown suffixes keep two labels."""
    domain = domain.strip().strip(".").lower()
    if not domain:
        return ""
    found = _extractor()(domain).top_domain_under_public_suffix
    if found:
        return found
    labels = domain.split(".")
    return ".".join(labels[-2:])


def registered_domain(name: str) -> str:
    """``name``'s domain under a real public suffix ('' when it has none: ``M.Dupont``)."""
    parts = _extractor()(name.strip().strip(".").lower())
    return parts.top_domain_under_public_suffix if parts.suffix and parts.domain else ""


def _domain_of(value: str | None) -> str:
    if not value:
        return ""
    value = value.strip().strip('"').strip("<>")
    return value.rsplit("@", 1)[-1].strip().strip(".").lower()


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: both domains share one organisational domain."""
    if not domain or not from_domain:
        return False
    return organisational_domain(domain) == organisational_domain(from_domain)


def _property(result: authres.AuthenticationResult, ptype: str, name: str) -> str | None:
    for prop in result.properties:
        if prop.type.lower() == ptype and prop.name.lower() == name:
            return str(prop.value)
    return None


def _our_results(values: Iterable[str], authserv_id: str) -> tuple[list, int]:
    results: list = []
    unreadable = 0
    wanted = authserv_id.strip().lower()
    for value in values:
        try:
            header = authres.AuthenticationResultsHeader.parse_value(" ".join(str(value).split()))
        except Exception:
            # A header we cannot read is counted, never trusted.
            head = str(value).split(";", 1)[0].strip().split()[:1]
            if head and head[0].lower() == wanted:
                unreadable += 1
            continue
        if str(header.authserv_id).strip().lower() == wanted:
            results.extend(header.results)
    return results, unreadable


def evaluate(values: Iterable[str], *, authserv_id: str, from_address: str | None) -> AuthVerdict:
    """The verdict of our server's Authentication-Results on the From address."""
    from_domain = _domain_of(from_address)
    results, unreadable = _our_results(values, authserv_id)
    if not results:
        why = "unreadable header" if unreadable else "no header"
        return AuthVerdict(AuthOutcome.UNKNOWN, f"{why} from {authserv_id}")

    dmarc_pass = dmarc_fail = spf_fail = False
    aligned_pass: list[str] = []
    for result in results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        if method == "dmarc":
            named = _domain_of(_property(result, "header", "from"))
            about_from = not named or aligned(named, from_domain)
            if outcome in _FAILED and about_from:
                dmarc_fail = True
            elif outcome == "pass" and about_from and from_domain:
                dmarc_pass = True
        elif method == "spf":
            domain = _domain_of(_property(result, "smtp", "mailfrom"))
            if outcome == "pass" and aligned(domain, from_domain):
                aligned_pass.append("spf")
            elif outcome in _FAILED:
                spf_fail = True
        elif method == "dkim" and outcome == "pass":
            domain = _domain_of(_property(result, "header", "d")) or _domain_of(
                _property(result, "header", "i")
            )
            if aligned(domain, from_domain):
                aligned_pass.append("dkim")

    if dmarc_fail:
        return AuthVerdict(AuthOutcome.FAIL, "dmarc failed")
    if dmarc_pass:
        return AuthVerdict(AuthOutcome.PASS, "dmarc passed")
    if "dkim" in aligned_pass:
        return AuthVerdict(AuthOutcome.PASS, "dkim passed, aligned with From")
    if spf_fail:
        return AuthVerdict(AuthOutcome.FAIL, "spf failed and no aligned dkim pass")
    if aligned_pass:
        return AuthVerdict(AuthOutcome.PASS, "spf passed, aligned with From")
    return AuthVerdict(AuthOutcome.UNKNOWN, "no pass aligned with From")
