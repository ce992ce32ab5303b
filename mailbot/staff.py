"""Staff accounts of the back-office: add, list, remove, and check a password.

Passwords are hashed with argon2 (``argon2-cffi``'s defaults, RFC 9106's
low-memory profile); only the hash is stored. Every change is recorded in
the audit trail with the actor who made it. Logins are lower-case
identifiers, so that ``staff:LOGIN`` in the audit trail names one person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailbot.errors import MailbotError
from storage import repositories as repo
from storage.db import read_scope, session_scope
from storage.errors import DuplicateError, NotFoundError
from storage.models import StaffAccount

if TYPE_CHECKING:
    from mailbot.app import App

PASSWORD_MIN_LENGTH = 12
_LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The login when it names an enabled account.
_ENABLED_LOGIN = sa.select(StaffAccount.login).where(
    StaffAccount.login == sa.bindparam("login"), StaffAccount.disabled == sa.false()
)


@dataclass(frozen=True)
class StaffView:
    """What is shown of an account (never its hash)."""

    login: str
    display_name: str | None
    created_at: str
    disabled: bool


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _decoy_hash() -> str:
    # Verified against when the login is unknown, so that an unknown login
    # takes as long to refuse as a wrong password (no login enumeration).
    return _hasher().hash("decoy password, never valid")


def normalise_login(login: str) -> str:
    """The stored form of a login; raises MailbotError when it is not acceptable."""
    value = (login or "").strip().lower()
    if not _LOGIN_RE.fullmatch(value):
        raise MailbotError(
            f"login {login!r} refused: lower-case letters, digits, '.', '_' or '-', "
            "at most 64 characters, starting with a letter or digit"
        )
    return value


def check_password(password: str) -> None:
    """Refuse a password that is too short to be a password."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise MailbotError(f"password refused: at least {PASSWORD_MIN_LENGTH} characters")


def add_staff(app: App, *, login: str, display_name: str | None, password: str, actor: str) -> str:
    """Create an account (or enable a disabled one again); returns the stored login."""
    login = normalise_login(login)
    check_password(password)
    password_hash = _hasher().hash(password)
    with session_scope(app.engine) as session:
        try:
            _account, created = repo.save_staff_account(
                session=session,
                login=login,
                display_name=(display_name or "").strip() or None,
                password_hash=password_hash,
            )
        except DuplicateError as error:
            raise MailbotError(f"staff account {login!r} already exists") from error
        repo.record_event(
            session=session,
            actor=actor,
            action="staff.added" if created else "staff.enabled",
            details={"login": login},
        )
    return login


def list_staff(app: App) -> list[StaffView]:
    """Every account, disabled ones included."""
    with session_scope(app.engine) as session:
        return [
            StaffView(
                login=a.login,
                display_name=a.display_name,
                created_at=a.created_at.isoformat(),
                disabled=a.disabled,
            )
            for a in repo.list_staff_accounts(session=session)
        ]


def remove_staff(app: App, *, login: str, actor: str) -> str:
    """Disable an account: it can no longer log in; its login stays reserved."""
    login = normalise_login(login)
    with session_scope(app.engine) as session:
        try:
            repo.disable_staff_account(session=session, login=login)
        except NotFoundError as error:
            raise MailbotError(f"no staff account {login!r}") from error
        repo.record_event(
            session=session, actor=actor, action="staff.removed", details={"login": login}
        )
    return login


def verify_password(app: App, *, login: str, password: str) -> str | None:
    """The stored login when ``password`` is right for an enabled account, else None."""
    try:
        login = normalise_login(login)
    except MailbotError:
        login = ""
    with session_scope(app.engine) as session:
        account = repo.get_staff_account(session=session, login=login) if login else None
        stored = account.password_hash if account and not account.disabled else None
        try:
            _hasher().verify(stored or _decoy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        if stored is None or account is None:
            return None
        if _hasher().check_needs_rehash(stored):
            account.password_hash = _hasher().hash(password)
            session.add(account)
        return account.login


def active_login(app: App, *, login: str) -> str | None:
    """The login when it names an enabled account (sessions and the SSO header), else None."""
    try:
        login = normalise_login(login)
    except MailbotError:
        return None
    # Asked on every page: one Core query on a pooled connection, no ORM session.
    with read_scope(app.engine) as connection:
        enabled = connection.execute(_ENABLED_LOGIN, {"login": login}).scalar()
    return enabled
