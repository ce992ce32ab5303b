"""Service settings: the models ``config/mailbot.toml`` is loaded into.

Mailboxes, SMTP, database, storage, schedule, digest, replies, retention and
the parsers' limits, each a strict frozen pydantic model whose validators
name the offending key and value. Reading the file, applying the
``MAILBOT_<SECTION>__<KEY>`` overrides and reporting problems with their line
is ``mailbot.config``'s job; this module only says what is valid.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from parsers.rules import ParseLimits, Strict

_EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _check_email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value.lower()


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (upper case, digits, _)")
    return value


def _check_hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"expected a time as HH:MM, got {value!r}")
    return value


Email = Annotated[str, AfterValidator(_check_email)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
HourMinute = Annotated[str, AfterValidator(_check_hhmm)]
Security = Literal["tls", "starttls", "none"]


class MailboxSettings(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "tls"
    username: str
    password_env: EnvName
    address: Email | None = None
    display_name: str = "Service Béthune Smart City"
    folder: str = "INBOX"
    on_filed: Literal["keyword", "move", "none"] = "keyword"
    on_ignored: Literal["keyword", "none"] = "none"
    keyword: str = Field(default="$Mailbot-Filed", pattern=r"^\$?[A-Za-z0-9_.-]+$")
    processed_folder: str | None = None
    save_sent: bool = False
    sent_folder: str = "Sent"
    idle: bool = True
    timeout_seconds: float = Field(default=60, gt=0, le=600)
    # A private CA bundle for a server whose certificate the system does not trust.
    tls_ca_file: str | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _defaults_and_consistency(self) -> MailboxSettings:
        if self.on_filed == "move" and not self.processed_folder:
            raise ValueError("on_filed = 'move' needs processed_folder")
        if self.port is None:
            object.__setattr__(self, "port", 993 if self.security == "tls" else 143)
        if self.address is None:
            object.__setattr__(self, "address", _check_email(self.username))
        return self


class SmtpSettings(Strict):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "starttls"
    username: str | None = None
    password_env: EnvName | None = None
    from_address: Email
    timeout_seconds: float = Field(default=60, gt=0, le=600)
    # A private CA bundle for a server whose certificate the system does not trust.
    tls_ca_file: str | None = None
    message_id_domain: str = Field(default="ville-bethune.fr", pattern=r"^[A-Za-z0-9.-]+$")

    @model_validator(mode="after")
    def _defaults_and_consistency(self) -> SmtpSettings:
        if self.username and not self.password_env:
            raise ValueError("username is set but password_env is not")
        if self.port is None:
            port = {"tls": 465, "starttls": 587, "none": 25}[self.security]
            object.__setattr__(self, "port", port)
        return self


class DatabaseSettings(Strict):
    url: str = "sqlite:///var/mailbot.sqlite3"

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError(f"only sqlite and postgresql URLs are supported, got {url!r}")
        return url


class StorageSettings(Strict):
    blob_dir: str = "var/blobs"


class ServiceSettings(Strict):
    timezone: str = "Europe/Paris"
    demo_mode: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    heartbeat_file: str = "var/heartbeat"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class IntakeSettings(Strict):
    backlog_days: int = Field(default=30, ge=0)
    fetch_batch: int = Field(default=200, ge=1, le=1000)


class ScheduleSettings(Strict):
    poll_interval_seconds: int = Field(default=300, ge=10)
    idle_renew_minutes: int = Field(default=25, ge=1, le=29)
    send_interval_seconds: int = Field(default=60, ge=5)
    purge_at: HourMinute = "03:30"


class DigestSettings(Strict):
    recipients: list[Email] = Field(default_factory=list)
    at: HourMinute = "08:00"
    skip_when_empty: bool = False
    mailbox: str | None = None

    @property
    def time(self) -> time:
        hour, minute = self.at.split(":")
        return time(int(hour), int(minute))


# The [limits] table is the parsers' own limits model, loaded as is.
LimitsSettings = ParseLimits


class RepliesSettings(Strict):
    enabled: bool = True
    service_name: str = "Service Béthune Smart City"
    signature: str = "Le service Béthune Smart City\nVille de Béthune"
    loop_header: str = Field(default="X-Mailbot-Loop", pattern=r"^X-[A-Za-z0-9-]+$")
    loop_value: str = Field(default="bethune-smartcity", pattern=r"^[A-Za-z0-9._-]+$")
    staff_addresses: list[Email] = Field(default_factory=list)
    per_sender_daily_cap: int = Field(default=5, ge=1)
    per_domain_daily_cap: int = Field(default=20, ge=1)
    global_hourly_cap: int = Field(default=100, ge=1)
    global_daily_cap: int = Field(default=500, ge=1)
    # Reply only on a pass of our own server's Authentication-Results (by
    # default), or unless they show a failure; "ignore" is unsafe and must be
    # written explicitly (mailbot.config.check_reply_authentication).
    auth_policy: Literal["reply_unless_fail", "reply_only_if_pass", "ignore"] = "reply_only_if_pass"
    # Required outside demo mode unless auth_policy = "ignore".
    authserv_id: str | None = None
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: int = Field(default=60, ge=1)
    retry_max_seconds: int = Field(default=6 * 3600, ge=1)
    privacy_controller: str = "la Ville de Béthune"
    privacy_contact: Email = "n.bataillon@ville-bethune.fr"
    privacy_retention: str = "trois ans après la décision de labellisation"


class RetentionSettings(Strict):
    """Days to keep a dossier after its last update, per status; 0 = forever."""

    incomplete_days: int = Field(default=365, ge=0)
    complete_days: int = Field(default=3 * 365, ge=0)
    needs_review_days: int = Field(default=365, ge=0)
    accepted_days: int = Field(default=3 * 365, ge=0)
    rejected_days: int = Field(default=365, ge=0)
    withdrawn_days: int = Field(default=180, ge=0)
    ledger_days: int = Field(default=90, ge=0)
    # A digest's body is dropped once delivered; its summary row (when, to
    # whom) and an undelivered digest go after this many days (0 = forever).
    digest_days: int = Field(default=30, ge=0)
    # Purge: also delete the server copies of purged messages.
    delete_server_copies: bool = False
    # Erasure: also delete the person's copies in INBOX and the Sent folder,
    # and replace other people's copies naming them by a redacted copy.
    erase_server_copies: bool = True
    # Environment variable holding the key of the erasure tombstones (HMAC).
    tombstone_secret_env: EnvName = "MAILBOT_TOMBSTONE_SECRET"  # noqa: S105 (a variable name)


class WebSettings(Strict):
    """The staff back-office (``mailbot web``); every key has a working default."""

    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    session_secret_env: EnvName | None = None
    session_secret_file: str = "var/web-session-secret"  # noqa: S105 (a path)
    session_hours: int = Field(default=10, ge=1, le=24 * 30)
    trusted_user_header: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]*$")
    trusted_proxies: list[str] = Field(default_factory=list)
    login_attempts_per_login: int = Field(default=5, ge=1)
    login_attempts_per_address: int = Field(default=20, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)

    @model_validator(mode="after")
    def _check_proxies(self) -> WebSettings:
        for value in self.trusted_proxies:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as error:
                raise ValueError(f"web.trusted_proxies: {value!r} is not an address") from error
        if self.trusted_user_header and not self.trusted_proxies:
            raise ValueError("web.trusted_user_header needs web.trusted_proxies")
        return self


class Settings(Strict):
    service: ServiceSettings = ServiceSettings()
    mailboxes: list[MailboxSettings] = Field(min_length=1)
    smtp: SmtpSettings
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    intake: IntakeSettings = IntakeSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    digest: DigestSettings = DigestSettings()
    limits: LimitsSettings = LimitsSettings()
    replies: RepliesSettings = RepliesSettings()
    retention: RetentionSettings = RetentionSettings()
    web: WebSettings = WebSettings()

    @model_validator(mode="after")
    def _unique_mailboxes(self) -> Settings:
        names = [m.name for m in self.mailboxes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"mailbox names must be unique: {', '.join(duplicates)}")
        if self.digest.mailbox and self.digest.mailbox not in names:
            raise ValueError(f"digest.mailbox {self.digest.mailbox!r} is not a mailbox name")
        return self

    def mailbox(self, name: str) -> MailboxSettings:
        for mailbox in self.mailboxes:
            if mailbox.name == name:
                return mailbox
        raise KeyError(name)

    @property
    def own_addresses(self) -> frozenset[str]:
        """Our mailboxes, the SMTP sender and staff: never answered automatically."""
        addresses = {m.address for m in self.mailboxes if m.address}
        addresses.add(self.smtp.from_address)
        addresses.update(self.replies.staff_addresses)
        addresses.update(self.digest.recipients)
        return frozenset(addresses)
