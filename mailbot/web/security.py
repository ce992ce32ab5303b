"""What keeps the back-office safe: session secret, CSRF, login throttle, proxy trust.

* The session cookie is signed with a secret from ``[web]
  session_secret_env`` or, when none is configured, one generated once and
  kept in ``session_secret_file`` (mode 0600), so that ``mailbot web`` starts
  on any valid configuration.
* Every form carries a per-session CSRF token; a POST without it is refused.
* Failed logins are counted per login and per client address in the memory
  of the process (a restart forgets them; one ``mailbot web`` process serves
  the city's few staff, so nothing needs sharing).
* The authenticated-user header of the city's reverse proxy, and its
  ``X-Forwarded-For``, are believed only on connections from
  ``trusted_proxies``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from starlette.requests import Request

from mailbot.config import Config, WebSettings
from mailbot.errors import ConfigError, ConfigProblem

CSRF_FIELD = "csrf_token"
_SECRET_MIN_LENGTH = 32


def session_secret(config: Config) -> str:
    """The key that signs session cookies (see the module docstring)."""
    web = config.settings.web
    if web.session_secret_env:
        value = os.environ.get(web.session_secret_env, "")
        if len(value) < _SECRET_MIN_LENGTH:
            raise ConfigError(
                [
                    ConfigProblem(
                        str(config.directory / "mailbot.toml"),
                        "web.session_secret_env",
                        f"environment variable {web.session_secret_env} must hold at least "
                        f"{_SECRET_MIN_LENGTH} characters",
                    )
                ]
            )
        return value
    return _stored_secret(config.resolve_path(web.session_secret_file))


def _stored_secret(path: Path) -> str:
    try:
        value = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        value = ""
    if len(value) >= _SECRET_MIN_LENGTH:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # Written beside and renamed, so that a reader never sees half a secret;
    # created 0600 from the start, never readable by others even briefly.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    try:
        os.link(tmp, path)  # fails if another process created it meanwhile
    except FileExistsError:
        return _stored_secret(path)
    finally:
        tmp.unlink()
    return value


# --------------------------------------------------------------------------
# CSRF


def csrf_token(request: Request) -> str:
    """This session's CSRF token (created on first use)."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    expected = request.session.get(CSRF_FIELD)
    return (
        isinstance(expected, str)
        and isinstance(submitted, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode(), submitted.encode())
    )


# --------------------------------------------------------------------------
# reverse proxy


class ProxyTrust:
    """Which peers may speak for the client (user header, forwarded address)."""

    def __init__(self, web: WebSettings) -> None:
        self.header = web.trusted_user_header
        self.networks = [ipaddress.ip_network(v, strict=False) for v in web.trusted_proxies]

    def trusted(self, request: Request) -> bool:
        peer = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def user(self, request: Request) -> str | None:
        """The login the proxy vouches for, or None (no header, or not from a proxy)."""
        if not self.header or not self.trusted(request):
            return None
        value = request.headers.get(self.header, "").strip()
        return value or None

    def client_address(self, request: Request) -> str:
        """The client's address: the proxy's last ``X-Forwarded-For`` hop when trusted."""
        peer = request.client.host if request.client else "unknown"
        if self.trusted(request):
            forwarded = request.headers.get("x-forwarded-for", "")
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if hops:
                return hops[-1]
        return peer


# --------------------------------------------------------------------------
# login throttle


class LoginThrottle:
    """Failed logins in a sliding window, per login and per client address."""

    def __init__(self, web: WebSettings, *, clock=time.monotonic) -> None:
        self.per_login = web.login_attempts_per_login
        self.per_address = web.login_attempts_per_address
        self.window = web.login_window_minutes * 60
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, *, login: str, address: str) -> bool:
        now = self.clock()
        with self._lock:
            return (
                len(self._recent(f"login:{login}", now)) >= self.per_login
                or len(self._recent(f"address:{address}", now)) >= self.per_address
            )

    def failed(self, *, login: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            self._recent(f"login:{login}", now).append(now)
            self._recent(f"address:{address}", now).append(now)
            # Bound the memory an attacker can make us spend on invented logins.
            if len(self._failures) > 10_000:
                self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, *, login: str) -> None:
        with self._lock:
            self._failures.pop(f"login:{login}", None)
