"""The Starlette application of the back-office: routes, sessions, login, headers.

``create_app(app)`` wires everything; ``staff_page`` guards every page (a
request without a staff session gets 303 to ``/login``; a POST without the
session's CSRF token gets 403). Handlers run in a worker thread because the
service functions they call use the database synchronously.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailbot import staff, wording
from mailbot.app import App
from mailbot.web import labels
from mailbot.web.page_cache import DossierPageCache
from mailbot.web.security import (
    CSRF_FIELD,
    LoginThrottle,
    ProxyTrust,
    csrf_ok,
    csrf_token,
    session_secret,
)
from mailbot.web.sessions import SessionMiddleware
from storage import repositories as repo
from storage.db import session_scope

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "mailbot_session"
PASSWORD_MAX_LENGTH = 1024
# Pages: only our own stylesheet; no script, no plugin, no framing by others.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
Handler = Callable[[Request, FormData | None], Response]


class SecurityHeaders:
    """Adds the default security headers to every response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                for name, value in (
                    (b"content-security-policy", PAGE_CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates(timezone: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        # The templates ship with the code: compiled once, never stat()ed again per page.
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    zone = ZoneInfo(timezone)

    def local_time(value: datetime | str | None) -> str:
        return wording.local_date_time(value, zone) or "—"

    def file_size(value: int | None) -> str:
        if value is None:
            return "—"
        for unit in ("octets", "Ko", "Mo"):
            if value < 1024 or unit == "Mo":
                return f"{value:.0f} {unit}" if unit == "octets" else f"{value:.1f} {unit}"
            value /= 1024
        return str(value)

    env.filters["local_time"] = local_time
    env.filters["file_size"] = file_size
    env.filters["reading_warning"] = wording.reading_warning
    env.globals["labels"] = labels
    return env


class BackOffice:
    """What the handlers share: the service ``App``, templates, throttle, proxy trust."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.config.settings
        self.web = settings.web
        self.templates = _templates(settings.service.timezone)
        self.throttle = LoginThrottle(self.web)
        self.proxy = ProxyTrust(self.web)
        self.pages = DossierPageCache(app.engine)

    def render(
        self, request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
    ) -> HTMLResponse:
        page = self.templates.get_template(name).render(
            request=request,
            login=getattr(request.state, "login", None),
            csrf_field=CSRF_FIELD,
            csrf_token=csrf_token(request),
            rules=self.app.config.rules,
            notice=request.session.pop("notice", None),
            **context,
        )
        return HTMLResponse(page, status_code=status_code)

    def audit(self, *, login: str, action: str, details: dict[str, Any]) -> None:
        with session_scope(self.app.engine) as session:
            repo.record_event(
                session=session, actor=f"staff:{login}", action=action, details=details
            )

    def claimed_login(self, request: Request) -> str | None:
        """The login of this request's session (or trusted proxy), if believing it writes nothing.

        Not checked against the accounts (the caller does that); None when
        ``current_login`` has something to do: a proxy's user not yet in the
        session, no session, an expired one.
        """
        session = request.session
        vouched = self.proxy.user(request)
        if vouched is not None:
            login = session.get("login")
            return login if isinstance(login, str) and login == vouched.strip().lower() else None
        login = session.get("login")
        since = session.get("since")
        if not isinstance(login, str) or not isinstance(since, int | float):
            return None
        if time.time() - since > self.web.session_hours * 3600:
            return None
        return login

    def current_login(self, request: Request) -> str | None:
        """The staff login of this request: the trusted proxy's header, else the session."""
        vouched = self.proxy.user(request)
        if vouched is not None:
            login = staff.active_login(self.app, login=vouched)
            if login is None:
                return None
            if request.session.get("login") != login:
                request.session.clear()
                request.session.update(login=login, since=time.time(), method="sso")
                self.audit(
                    login=login,
                    action="staff.login",
                    details={"method": "sso", "address": self.proxy.client_address(request)},
                )
            return login
        login = request.session.get("login")
        since = request.session.get("since")
        if not isinstance(login, str) or not isinstance(since, int | float):
            return None
        if time.time() - since > self.web.session_hours * 3600:
            request.session.clear()
            return None
        if staff.active_login(self.app, login=login) != login:
            request.session.clear()  # account removed since
            return None
        return login


def staff_page(handler: Handler) -> Callable[[Request], Any]:
    """Guard a page: staff session required, CSRF token required on POST."""

    def checked(request: Request, form: FormData | None) -> Response:
        office: BackOffice = request.app.state.office
        login = office.current_login(request)
        if login is None:
            return RedirectResponse("/login", status_code=303)
        request.state.login = login
        return handler(request, form)

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        if request.method != "POST":
            # The session check and the page in one trip to a worker thread.
            return await run_in_threadpool(checked, request, None)
        office: BackOffice = request.app.state.office
        login = await run_in_threadpool(office.current_login, request)
        if login is None:
            return RedirectResponse("/login", status_code=303)  # the body is not even read
        request.state.login = login
        form = await request.form()
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            return forbidden(request)
        return await run_in_threadpool(handler, request, form)

    return guarded


def forbidden(request: Request) -> Response:
    office: BackOffice = request.app.state.office
    return office.render(
        request,
        "error.html",
        {
            "title": "Action refusée",
            "message": "Le formulaire a expiré ou ne vient pas de cette page. "
            "Rechargez la page et recommencez.",
        },
        status_code=403,
    )


async def login_page(request: Request) -> Response:
    office: BackOffice = request.app.state.office
    if request.method == "GET":
        return office.render(request, "login.html", {"error": None, "typed": ""})
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return forbidden(request)
    typed = str(form.get("login") or "")[:64]
    # No password is that long; argon2 would still hash a megabyte sent to slow us down.
    password = str(form.get("password") or "")[:PASSWORD_MAX_LENGTH]
    return await run_in_threadpool(
        functools.partial(_log_in, office, request, typed=typed, password=password)
    )


def _log_in(office: BackOffice, request: Request, *, typed: str, password: str) -> Response:
    address = office.proxy.client_address(request)
    key = typed.strip().lower()
    if office.throttle.blocked(login=key, address=address):
        error = "Trop de tentatives de connexion. Réessayez dans quelques minutes."
        return office.render(
            request, "login.html", {"error": error, "typed": typed}, status_code=429
        )
    login = staff.verify_password(office.app, login=typed, password=password)
    if login is None:
        office.throttle.failed(login=key, address=address)
        with session_scope(office.app.engine) as session:
            repo.record_event(
                session=session,
                actor="web",
                action="staff.login_failed",
                details={"login": key, "address": address},
            )
        error = "Identifiant ou mot de passe incorrect."
        return office.render(
            request, "login.html", {"error": error, "typed": typed}, status_code=401
        )
    office.throttle.succeeded(login=key)
    request.session.clear()  # a fresh session (and CSRF token) for the new login
    request.session.update(login=login, since=time.time(), method="password")
    office.audit(
        login=login, action="staff.login", details={"method": "password", "address": address}
    )
    return RedirectResponse("/dossiers", status_code=303)


@staff_page
def logout(request: Request, form: FormData | None) -> Response:
    office: BackOffice = request.app.state.office
    office.audit(login=request.state.login, action="staff.logout", details={})
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@staff_page
def home(request: Request, form: FormData | None) -> Response:
    return RedirectResponse("/dossiers", status_code=303)


async def not_found(request: Request, exc: Exception) -> Response:
    """An unknown address: 303 to /login without a session (nothing is told), else a page."""
    office: BackOffice = request.app.state.office
    login = await run_in_threadpool(office.current_login, request)
    if login is None:
        return RedirectResponse("/login", status_code=303)
    request.state.login = login
    message = "Cette page n'existe pas."
    context = {"title": "Introuvable", "message": message}
    return office.render(request, "error.html", context, status_code=404)


def create_app(app: App) -> Starlette:
    """The back-office over ``app``'s configuration and database."""
    from mailbot.web import pages

    config = app.config
    secret = session_secret(config)
    https = (config.settings.web.base_url or "").startswith("https://")
    routes = [
        Route("/", home, methods=["GET"]),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        *pages.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie=SESSION_COOKIE,
            max_age=config.settings.web.session_hours * 3600,
            same_site="strict",
            https_only=https,
        ),
    ]
    web_app = Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found})
    web_app.state.office = BackOffice(app)
    return web_app
