"""Loading and validating what admins edit in ``config/``.

Three things live there: ``mailbot.toml`` (service settings), ``rules.toml``
(how mail is classified and dossiers are read) and ``templates/`` (the mail
we send). Everything is parsed into frozen pydantic models at load time:
unknown keys are rejected, regexes compiled, enums checked, templates parsed,
so a bad file is found by ``mailbot config check`` and not at 3 a.m. by the
worker. Each problem names the file, the key and, where it can, the line.

Any service setting can be overridden by an environment variable
``MAILBOT_<SECTION>__<KEY>`` (``MAILBOT_DATABASE__URL``); for the list of
mailboxes the second part is the mailbox's index or its name in upper case
with non-alphanumerics as ``_`` (``MAILBOT_MAILBOXES__N_BATAILLON__HOST``).
Secrets never live in files: ``password_env`` names the variable holding one.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mailbot.errors import ConfigError, ConfigProblem, SecretMissingError
from parsers.text import strip_accents

ENV_PREFIX = "MAILBOT_"
CONFIG_ENV = "MAILBOT_CONFIG"
SETTINGS_FILE = "mailbot.toml"
RULES_FILE = "rules.toml"
TEMPLATES_DIR = "templates"

# Values that are obviously not a real secret; refused outside demo mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "password", "secret", "xxx", "todo"})

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


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an admin's regex for matching against accent-folded text.

    Text is matched after accent folding, so accents are folded in the
    pattern too (``Béthune`` matches ``BETHUNE``); case is ignored.
    """
    try:
        return re.compile(strip_accents(pattern), re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"invalid regular expression {pattern!r}: {err}") from err


Email = Annotated[str, AfterValidator(_check_email)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
HourMinute = Annotated[str, AfterValidator(_check_hhmm)]
Regex = Annotated[str, AfterValidator(lambda p: compile_pattern(p).pattern and p)]
Security = Literal["tls", "starttls", "none"]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------
# mailbot.toml


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
    fetch_batch: int = Field(default=50, ge=1, le=1000)


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


class LimitsSettings(Strict):
    max_message_bytes: int = Field(default=40 * 2**20, ge=1024)
    max_header_bytes: int = Field(default=256 * 2**10, ge=1024)
    max_header_count: int = Field(default=1000, ge=10)
    max_recipients: int = Field(default=500, ge=1)
    max_mime_parts: int = Field(default=200, ge=1)
    max_nesting_depth: int = Field(default=5, ge=1)
    max_attachments: int = Field(default=50, ge=1)
    max_attachment_bytes: int = Field(default=30 * 2**20, ge=1024)
    max_pdf_pages: int = Field(default=60, ge=1)
    max_zip_members: int = Field(default=100, ge=1)
    max_zip_expanded_bytes: int = Field(default=200 * 2**20, ge=1024)
    max_zip_ratio: float = Field(default=100.0, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=10_000)
    parse_timeout_seconds: float = Field(default=60, gt=0)
    parse_memory_mb: int = Field(default=1024, ge=64)
    parse_cpu_seconds: int = Field(default=60, ge=1)
    ocr_timeout_seconds: float = Field(default=120, gt=0)


class RepliesSettings(Strict):
    enabled: bool = True
    service_name: str = "Service Béthune Smart City"
    signature: str = "Le service Béthune Smart City\nVille de Béthune"
    loop_header: str = Field(default="X-Mailbot-Loop", pattern=r"^X-[A-Za-z0-9-]+$")
    loop_value: str = Field(default="bethune-smartcity", pattern=r"^[A-Za-z0-9._-]+$")
    staff_addresses: list[Email] = Field(default_factory=list)
    per_sender_daily_cap: int = Field(default=5, ge=1)
    global_hourly_cap: int = Field(default=100, ge=1)
    auth_policy: Literal["reply_unless_fail", "reply_only_if_pass", "ignore"] = "reply_unless_fail"
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
    delete_server_copies: bool = False


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


# --------------------------------------------------------------------------
# rules.toml


class Verdict(StrEnum):
    CANDIDATURE = "candidature"
    FOLLOW_UP = "follow_up"
    NOT_CANDIDATURE = "not_candidature"
    AUTO_REPLY = "auto_reply"
    NEEDS_REVIEW = "needs_review"


# Names of the classification rules the chain may use. Each maps to a rule
# object in the classifier; the chain itself (order, action) is admin data.
CHAIN_RULES = frozenset(
    {
        "loop_header",
        "null_return_path",
        "robot_sender",
        "auto_submitted",
        "bulk_precedence",
        "list_headers",
        "auto_response_suppress",
        "autoreply_headers",
        "delivery_report",
        "own_sender",
        "dossier_reference",
        "reply_to_our_mail",
        "same_sender_open_dossier",
    }
)
CHAIN_ACTIONS = frozenset({"auto_reply", "not_candidature", "follow_up"})


class ChainStep(Strict):
    rule: str
    action: str

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in CHAIN_RULES:
            raise ValueError(f"unknown rule {value!r}; known: {', '.join(sorted(CHAIN_RULES))}")
        return value

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in CHAIN_ACTIONS:
            known = ", ".join(sorted(CHAIN_ACTIONS))
            raise ValueError(f"unknown action {value!r}; known: {known}")
        return value


SignWhere = Literal["subject", "body", "attachment_name", "attachment_text"]


class Sign(Strict):
    """A weighted sign that a message is a candidature."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    pattern: Regex
    where: list[SignWhere] = Field(min_length=1)
    weight: float

    @property
    def regex(self) -> re.Pattern[str]:
        return compile_pattern(self.pattern)


class DetectionRules(Strict):
    chain: list[ChainStep] = Field(min_length=1)
    reference_pattern: Regex = r"\bBSC-(\d{4})-(\d{4,})\b"
    robot_senders: list[Regex] = Field(default_factory=list)
    candidature_threshold: float = 5.0
    review_threshold: float = 2.5
    mailbox_weights: dict[str, float] = Field(default_factory=dict)
    signs: list[Sign] = Field(default_factory=list)

    @field_validator("reference_pattern")
    @classmethod
    def _two_groups(cls, pattern: str) -> str:
        if compile_pattern(pattern).groups < 2:
            raise ValueError("reference_pattern needs two groups: (year) and (number)")
        return pattern

    @model_validator(mode="after")
    def _thresholds(self) -> DetectionRules:
        if self.review_threshold > self.candidature_threshold:
            raise ValueError("review_threshold must not exceed candidature_threshold")
        names = [s.name for s in self.signs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sign names must be unique: {', '.join(duplicates)}")
        return self


class FieldKind(StrEnum):
    TEXT = "text"
    MULTILINE = "multiline"
    CATEGORY = "category"
    THEMATIQUE = "thematique"
    CRITERIA = "criteria"
    NATURE = "nature"
    DATE = "date"
    AMOUNT = "amount"
    EMAIL = "email"
    PHONE = "phone"


class FieldRule(Strict):
    label: str = Field(min_length=1)
    variants: list[str] = Field(default_factory=list)
    kind: FieldKind = FieldKind.TEXT
    required: bool = False
    # Required only when another field has this normalised value.
    required_when: dict[str, str] = Field(default_factory=dict)
    # French wording used in the missing-pieces notice.
    notice: str | None = None

    @property
    def notice_text(self) -> str:
        return self.notice or f"le champ « {self.label} »"


class Choice(Strict):
    label: str
    synonyms: list[str] = Field(default_factory=list)


class Thematique(Choice):
    sub_themes: list[str] = Field(default_factory=list)


class LetterSign(Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    pattern: Regex
    weight: float

    @property
    def regex(self) -> re.Pattern[str]:
        return compile_pattern(self.pattern)


class LetterRules(Strict):
    threshold: float = 4.0
    signs: list[LetterSign] = Field(min_length=1)
    filename_hints: list[Regex] = Field(default_factory=list)
    filename_weight: float = 0.5
    notice: str = "le courrier officiel adressé à Monsieur le Maire"


class PiecesRules(Strict):
    dossier_notice: str = "le dossier d'intention complété"
    dossier_filename_hints: list[Regex] = Field(default_factory=list)
    # Minimum number of distinct field labels found for a document to count
    # as the dossier d'intention.
    dossier_min_labels: int = Field(default=4, ge=1)


class Rules(Strict):
    detection: DetectionRules
    fields: dict[str, FieldRule]
    categories: dict[str, Choice]
    natures: dict[str, Choice]
    criteria: dict[str, Choice]
    thematiques: dict[str, Thematique]
    letter: LetterRules
    pieces: PiecesRules = PiecesRules()

    @model_validator(mode="after")
    def _cross_checks(self) -> Rules:
        for key, rule in self.fields.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                raise ValueError(f"field key {key!r} must be lower-case snake_case")
            for other, value in rule.required_when.items():
                if other not in self.fields:
                    raise ValueError(f"fields.{key}.required_when names unknown field {other!r}")
                if other == "categorie_label" and value not in self.categories:
                    raise ValueError(f"fields.{key}.required_when: unknown category {value!r}")
        if len(self.thematiques) != 7:
            raise ValueError(f"expected the 7 thematiques, found {len(self.thematiques)}")
        return self


# --------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Config:
    """Everything loaded from one config directory."""

    directory: Path
    settings: Settings
    rules: Rules
    templates: jinja2.Environment
    template_names: tuple[str, ...]
    env_overrides: tuple[str, ...] = ()

    @property
    def base_dir(self) -> Path:
        """Relative paths in settings are relative to the config dir's parent."""
        return self.directory.parent

    def resolve_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def database_url(self) -> str:
        url = self.settings.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            relative = url[len(prefix) :]
            if relative and relative != ":memory:":
                return prefix + str(self.resolve_path(relative))
        return url

    @property
    def blob_dir(self) -> Path:
        return self.resolve_path(self.settings.storage.blob_dir)


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config DIR``, else ``$MAILBOT_CONFIG``, else ``./config``."""
    if explicit:
        return Path(explicit).resolve()
    return Path(os.environ.get(CONFIG_ENV) or "config").resolve()


def load_config(
    directory: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Load and validate the whole config directory; raise ConfigError listing every problem."""
    root = config_dir(directory)
    env = os.environ if environ is None else environ
    problems: list[ConfigProblem] = []
    if not root.is_dir():
        raise ConfigError([ConfigProblem(str(root), "", "config directory not found")])

    settings_path = root / SETTINGS_FILE
    raw_settings = _read_toml(settings_path, problems)
    overrides: list[str] = []
    if raw_settings is not None:
        overrides = _apply_env_overrides(raw_settings, env, problems, settings_path)
    settings = _validate(Settings, raw_settings, settings_path, problems, overrides_from=env)

    rules_path = root / RULES_FILE
    raw_rules = _read_toml(rules_path, problems)
    rules = _validate(Rules, raw_rules, rules_path, problems)

    if settings is not None and rules is not None:
        names_ = {m.name for m in settings.mailboxes}
        for name in sorted(set(rules.detection.mailbox_weights) - names_):
            problems.append(
                ConfigProblem(
                    str(rules_path),
                    f"detection.mailbox_weights.{name}",
                    "not a mailbox name of mailbot.toml",
                    _find_line(_read_text(rules_path) or "", ("detection", "mailbox_weights")),
                )
            )
    templates, names = _load_templates(root / TEMPLATES_DIR, problems)
    if problems:
        raise ConfigError(problems)
    assert settings is not None and rules is not None
    return Config(
        directory=root,
        settings=settings,
        rules=rules,
        templates=templates,
        template_names=names,
        env_overrides=tuple(overrides),
    )


def check_secrets(config: Config, *, environ: Mapping[str, str] | None = None) -> None:
    """Every ``password_env`` must name a set variable holding a real secret."""
    env = os.environ if environ is None else environ
    demo = config.settings.service.demo_mode
    path = str(config.directory / SETTINGS_FILE)
    problems: list[ConfigProblem] = []
    wanted: list[tuple[str, str]] = [
        (f"mailboxes[{i}].password_env", m.password_env)
        for i, m in enumerate(config.settings.mailboxes)
        if m.enabled
    ]
    if config.settings.smtp.password_env:
        wanted.append(("smtp.password_env", config.settings.smtp.password_env))
    text = _read_text(Path(path))
    for key, var in wanted:
        line = _find_line(text, _split_key(key)) if text else None
        value = env.get(var)
        if value is None:
            problems.append(
                ConfigProblem(path, key, f"environment variable {var} is not set", line)
            )
        elif value.strip().lower() in PLACEHOLDER_SECRETS and not demo:
            problems.append(
                ConfigProblem(path, key, f"{var} holds a placeholder, not a real secret", line)
            )
    if problems:
        raise SecretMissingError(problems)


def secret(var: str | None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret held by environment variable ``var`` (None when no variable is named)."""
    if var is None:
        return None
    env = os.environ if environ is None else environ
    try:
        return env[var]
    except KeyError as err:
        raise SecretMissingError(
            [ConfigProblem(SETTINGS_FILE, var, f"environment variable {var} is not set")]
        ) from err


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _read_toml(path: Path, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(ConfigProblem(str(path), "", "file not found"))
        return None
    except (OSError, UnicodeDecodeError) as err:
        problems.append(ConfigProblem(str(path), "", f"cannot read: {err}"))
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"line (\d+)", str(err))
        line = int(match.group(1)) if match else None
        problems.append(ConfigProblem(str(path), "", f"invalid TOML: {err}", line))
        return None


def _env_segment_matches(segment: str, name: str) -> bool:
    return re.sub(r"[^A-Z0-9]", "_", name.upper()) == segment


def _apply_env_overrides(
    raw: dict[str, Any], env: Mapping[str, str], problems: list[ConfigProblem], path: Path
) -> list[str]:
    """Merge ``MAILBOT_<SECTION>__<KEY>`` variables into the parsed settings."""
    applied: list[str] = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        parts = var[len(ENV_PREFIX) :].split("__")
        if any(not p for p in parts):
            problems.append(ConfigProblem(var, "", "malformed override variable name"))
            continue
        value = _env_value(env[var])
        section = parts[0].lower()
        if section == "mailboxes":
            if len(parts) != 3:
                problems.append(
                    ConfigProblem(var, "", "use MAILBOT_MAILBOXES__<INDEX|NAME>__<KEY>")
                )
                continue
            boxes = raw.get("mailboxes")
            target = None
            if isinstance(boxes, list):
                if parts[1].isdigit() and int(parts[1]) < len(boxes):
                    target = boxes[int(parts[1])]
                else:
                    target = next(
                        (
                            b
                            for b in boxes
                            if isinstance(b, dict)
                            and _env_segment_matches(parts[1], str(b.get("name", "")))
                        ),
                        None,
                    )
            if not isinstance(target, dict):
                problems.append(ConfigProblem(var, "", f"no mailbox {parts[1]!r} in {path.name}"))
                continue
            target[parts[2].lower()] = value
        else:
            node = raw.setdefault(section, {})
            for part in parts[1:-1]:
                if not isinstance(node, dict):
                    break
                node = node.setdefault(part.lower(), {})
            if not isinstance(node, dict):
                problems.append(ConfigProblem(var, "", "does not name a setting"))
                continue
            node[parts[-1].lower()] = value
        applied.append(var)
    return applied


def _env_value(text: str) -> Any:
    """Lists and tables are written in TOML syntax; scalars stay strings for pydantic."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError:
            return text
    return text


def _validate(model, raw, path: Path, problems: list[ConfigProblem], overrides_from=None):
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        text = _read_text(path) or ""
        for error in err.errors():
            loc = tuple(error["loc"])
            key = _format_key(loc)
            message = error["msg"]
            if "input" in error and error["type"] not in ("missing", "extra_forbidden"):
                value = error["input"]
                if not isinstance(value, (dict, list)):
                    message = f"{message} (got {value!r})"
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            env_var = _override_var_for(loc, raw, overrides_from)
            if env_var:
                problems.append(ConfigProblem(env_var, key, message))
            else:
                problems.append(ConfigProblem(str(path), key, message, _find_line(text, loc)))
        return None


def _override_var_for(loc: tuple, raw: dict, environ: Mapping[str, str] | None) -> str | None:
    """Name the environment variable a bad value came from, if any."""
    if not environ or not loc:
        return None
    str_parts = [str(p).upper() for p in loc]
    candidates = ["MAILBOT_" + "__".join(str_parts)]
    if loc[0] == "mailboxes" and len(loc) >= 3 and isinstance(loc[1], int):
        boxes = raw.get("mailboxes") or []
        if loc[1] < len(boxes) and isinstance(boxes[loc[1]], dict):
            name = re.sub(r"[^A-Z0-9]", "_", str(boxes[loc[1]].get("name", "")).upper())
            candidates.append(f"MAILBOT_MAILBOXES__{name}__{str_parts[2]}")
    return next((c for c in candidates if c in environ), None)


def _format_key(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _split_key(key: str) -> tuple:
    parts: list[Any] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _find_line(text: str, loc: tuple) -> int | None:
    """Best-effort line of a key path in a TOML file (tables, arrays of tables, keys)."""
    wanted = tuple(loc)
    table: tuple = ()
    array_counts: dict[tuple, int] = {}
    best: tuple[int, int] | None = None  # (matched length, line)
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = tuple(p.strip().strip("\"'") for p in header.group(2).split("."))
            if header.group(1) == "[[":
                index = array_counts.get(names, -1) + 1
                array_counts[names] = index
                table = (*names, index)
            else:
                table = names
            path = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            path = table + tuple(p.strip("\"'") for p in key.group(1).split("."))
        matched = _common_prefix(path, wanted)
        if matched == len(path) and (best is None or matched > best[0]):
            best = (matched, number)
    return best[1] if best else None


def _common_prefix(a: tuple, b: tuple) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def _load_templates(
    directory: Path, problems: list[ConfigProblem]
) -> tuple[jinja2.Environment, tuple[str, ...]]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        keep_trailing_newline=True,
    )
    if not directory.is_dir():
        problems.append(ConfigProblem(str(directory), "", "templates directory not found"))
        return env, ()
    names = tuple(
        sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.j2") if p.is_file())
    )
    for name in names:
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as err:
            problems.append(
                ConfigProblem(
                    str(directory / name), "", f"template error: {err.message}", err.lineno
                )
            )
    return env, names
