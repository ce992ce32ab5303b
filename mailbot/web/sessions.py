"""Signed-cookie sessions (Starlette's), with the cookies already verified remembered.

Starlette's ``SessionMiddleware`` checks the cookie's HMAC signature on every
request: about a tenth of the CPU of a dossier page served from its kept
body. The same cookie comes back on every click of a session (it is only
set again when the session changes), so a cookie whose signature was
verified is remembered, with the time it was signed: the next request with
exactly the same cookie skips the HMAC but not the age check, and a cookie
never verified (forged, or signed with another key) is never remembered.
The cookie format, flags and the rules for setting it are Starlette's.
"""

from __future__ import annotations

import json
import threading
import time
from base64 import b64decode, b64encode
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.exc import BadSignature
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import Session
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

# A few cookies per staff member and browser: plenty.
REMEMBERED = 1024


def _canonical_signature(cookie: str) -> bool:
    """Whether the cookie's signature is written as the signer writes it.

    The signature is URL-safe base64 without padding: its last character carries
    bits that decoding ignores, so a few spellings decode to the same bytes and
    ``unsign`` accepts them all. Only the one we issue is accepted, so that a
    cookie changed by one character is always refused.
    """
    signature = cookie.rpartition(".")[2].encode("ascii", "replace")
    return base64_encode(base64_decode(signature)) == signature


class SessionMiddleware(StarletteSessions):
    """Starlette's sessions; a cookie verified once is not verified again (see the module)."""

    def __init__(self, app: Any, *, clock: Callable[[], float] = time.time, **options: Any) -> None:
        super().__init__(app, **options)
        self.clock = clock
        self._verified: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, cookie: str) -> dict[str, Any] | None:
        """The session a cookie carries, or None when its signature or age is not good."""
        with self._lock:
            kept = self._verified.get(cookie)
            if kept is not None:
                self._verified.move_to_end(cookie)
        if kept is not None:
            payload, signed_at = kept
            age = self.clock() - signed_at
            if age >= 0 and (self.max_age is None or age <= self.max_age):
                return json.loads(payload)
            with self._lock:
                self._verified.pop(cookie, None)
            return None
        try:
            data, signed = self.signer.unsign(
                cookie.encode("utf-8"), max_age=self.max_age, return_timestamp=True
            )
        except BadSignature:
            return None
        if not _canonical_signature(cookie):
            return None
        payload = b64decode(data)
        session = json.loads(payload)
        with self._lock:
            self._verified[cookie] = (payload, signed.timestamp())
            while len(self._verified) > REMEMBERED:
                self._verified.popitem(last=False)
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # pragma: no cover
            await self.app(scope, receive, send)
            return
        # As Starlette's, but for ``load``.
        connection = HTTPConnection(scope)
        initial_session_was_empty = True
        cookie = connection.cookies.get(self.session_cookie)
        loaded = self.load(cookie) if cookie is not None else None
        if loaded is not None:
            scope["session"] = Session(loaded)
            initial_session_was_empty = False
        else:
            scope["session"] = Session()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                session: Session = scope["session"]
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if session.accessed:
                    headers.add_vary_header("Cookie")
                if session.modified and session:
                    data = self.signer.sign(b64encode(json.dumps(session).encode("utf-8")))
                    max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
                    headers.append(
                        "Set-Cookie",
                        f"{self.session_cookie}={data.decode('utf-8')}; path={self.path}; "
                        f"{max_age}{self.security_flags}",
                    )
                elif session.modified and not initial_session_was_empty:
                    headers.append(
                        "Set-Cookie",
                        f"{self.session_cookie}=null; path={self.path}; "
                        f"expires=Thu, 01 Jan 1970 00:00:00 GMT; {self.security_flags}",
                    )
            await send(message)

        await self.app(scope, receive, send_wrapper)
