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

from mailbot.web.sessions import SessionMiddleware

SECRET = "a session secret of more than thirty-two characters"


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
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forged_payload = _cookie({"login": "root", "since": 1}).rpartition(".")[0]
    for bad in (
        f"{value}.{flipped}",  # signature changed
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
