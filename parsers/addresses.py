"""The one e-mail address validator: used when a message is read and when a reply is built.

An address the service keeps is one it can answer: a local part the
standard library's ``Address`` accepts as it is (dot-atom, no quoting,
no control characters) and a domain made of at least two DNS labels
(1–63 characters of letters, digits and inner hyphens, IDNA-encodable
when not ASCII), without an empty label or a trailing dot.
``victim@example.org.``, ``a@b..c`` and ``MAILER-DAEMON`` are not
addresses here, so they never reach reply building.

``cap_key`` is what reply caps count by: case and ``+tag`` do not make a
new person (``Victim+a@Example.org`` and ``victim+b@example.org`` are one).

Pure: strings in, strings out.
"""

from __future__ import annotations

import re
import unicodedata
from email.errors import HeaderParseError
from email.headerregistry import Address

MAX_ADDRESS_CHARS = 254
_LOCAL_ATOM = re.compile(r"[^\s\x00-\x1f\x7f-\x9f@<>()\[\],;:\\\".]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# An ASCII address that passes every check of ``normalise_address`` (but
# the lengths and an all-digit top-level label): dot-separated local atoms,
# one @, two or more DNS labels. ``tests/test_head_speed.py`` checks both agree.
_ASCII_ADDRESS = re.compile(
    rf"(?P<local>{_LOCAL_ATOM.pattern}(?:\.{_LOCAL_ATOM.pattern})*)"
    rf"@(?:{_LABEL.pattern}\.)+(?P<top>{_LABEL.pattern})"
)


def _domain_ok(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) < 2:
        return False
    for label in labels:
        try:
            ascii_label = label if label.isascii() else label.encode("idna").decode("ascii")
        except UnicodeError:
            return False
        if not _LABEL.fullmatch(ascii_label):
            return False
    # A top-level domain is never all digits (that would be an IP address).
    return not labels[-1].isdigit()


def normalise_address(value: object) -> str | None:
    """The address in canonical form (NFC, lower case), or None when it is not one."""
    if not isinstance(value, str):
        return None
    if value.isascii():
        # Most addresses: one pattern says all the checks below at once.
        address = value.strip().strip("<>").strip().lower()
        found = _ASCII_ADDRESS.fullmatch(address) if len(address) <= MAX_ADDRESS_CHARS else None
        if found is not None and found.end("local") <= 64 and not found.group("top").isdigit():
            return address
    address = unicodedata.normalize("NFC", value.strip().strip("<>").strip()).lower()
    if not address or len(address) > MAX_ADDRESS_CHARS or address.count("@") != 1:
        return None
    local, domain = address.split("@")
    if not local or len(local) > 64 or not all(_LOCAL_ATOM.fullmatch(p) for p in local.split(".")):
        return None
    if not _domain_ok(domain):
        return None
    if address.isascii():
        # A dot-atom of atext at a domain of letter-digit-hyphen labels:
        # ``Address`` accepts every such address (tests/test_addresses.py
        # checks it), and costs a third of a millisecond to say so.
        return address
    try:
        # What reply building will do with it must not raise.
        Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        return None
    return address


def is_address(value: object) -> bool:
    return normalise_address(value) is not None


def domain_of(address: str) -> str:
    """The domain part of a normalised address ('' when there is none)."""
    return address.rsplit("@", 1)[1] if "@" in address else ""


def cap_key(address: str) -> str:
    """One person for reply caps: lower case, without a ``+tag`` in the local part."""
    address = address.strip().lower()
    if "@" not in address:
        return address
    local, domain = address.rsplit("@", 1)
    return f"{local.split('+', 1)[0] or local}@{domain}"
