"""Session cookies: Starlette's format and rules, a verified cookie not verified again.

``mailbot.web.sessions.SessionMiddleware`` remembers the cookies whose
signature it checked; these tests show that nothing else is believed: a
cookie changed by one character, signed with another key or too old is
refused, remembered or not, and the cookie is set only when the session
changes.
"""

from __future__ import annotations

import json
from base64 import b64encode

import itsdangerous
import pytest
from itsdangerous.encoding import base64_decode

from mailbot.web.sessions import SessionMiddleware

SECRET = "a session secret of more than thirty-two characters"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _middleware(max_age: int = 3600, clock=None) -> SessionMiddleware:
    async def app(scope, receive, send) -> None:  # never called by these tests
        raise AssertionError

    options = {"clock": clock} if clock else {}
    return SessionMiddleware(app, secret_key=SECRET, max_age=max_age, **options)


def _cookie(data: dict, secret: str = SECRET) -> str:
    signer = itsdangerous.TimestampSigner(secret)
    return signer.sign(b64encode(json.dumps(data).encode())).decode()


def test_a_good_cookie_is_read_then_remembered() -> None:
    sessions = _middleware()
    cookie = _cookie({"login": "nbataillon", "since": 1})
    assert sessions.load(cookie) == {"login": "nbataillon", "since": 1}
    assert cookie in sessions._verified
    again = sessions.load(cookie)
    assert again == {"login": "nbataillon", "since": 1}
    again["login"] = "changed"  # each request gets its own copy
    assert sessions.load(cookie)["login"] == "nbataillon"


@pytest.mark.parametrize("remembered_first", [False, True])
def test_a_tampered_or_foreign_cookie_is_refused_and_never_remembered(remembered_first) -> None:
    sessions = _middleware()
    good = _cookie({"login": "nbataillon", "since": 1})
    if remembered_first:
        assert sessions.load(good) is not None
    value, _dot, signature = good.rpartition(".")
    # Every other character at the signature's first and last places: the last
    # one has bits that base64 decoding ignores, so three of these spellings
    # decode to the very same signature bytes (what itsdangerous alone accepts).
    changed = [
        f"{value}.{spelling}"
        for other in ALPHABET
        for spelling in (other + signature[1:], signature[:-1] + other)
        if spelling != signature
    ]
    decoded = base64_decode(signature)
    same_bytes = [c for c in changed if base64_decode(c.rpartition(".")[2]) == decoded]
    assert len(same_bytes) == 3  # the check below can fail: these pass unsign
    forged_payload = _cookie({"login": "root", "since": 1}).rpartition(".")[0]
    for bad in (
        *changed,  # signature changed by one character
        f"{forged_payload}.{signature}",  # payload changed, old signature
        _cookie({"login": "root", "since": 1}, secret="another secret, long enough to sign"),
        "not a cookie",
        "",
    ):
        assert sessions.load(bad) is None, bad
        assert bad not in sessions._verified
    assert list(sessions._verified) == ([good] if remembered_first else [])


def test_a_remembered_cookie_expires_like_any_other() -> None:
    now = [0.0]
    sessions = _middleware(max_age=60, clock=lambda: now[0])
    cookie = _cookie({"login": "nbataillon", "since": 1})
    assert sessions.load(cookie) is not None
    signed_at = sessions._verified[cookie][1]
    now[0] = signed_at + 59
    assert sessions.load(cookie) is not None
    now[0] = signed_at + 61
    assert sessions.load(cookie) is None
    assert cookie not in sessions._verified
