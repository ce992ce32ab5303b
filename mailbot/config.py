"""Loading and validating what admins edit in ``config/``.

Three things live there: ``mailbot.toml`` (service settings), ``rules.toml``
(how mail is classified and dossiers are read) and ``templates/`` (the mail
we send). Everything is parsed into frozen pydantic models at load time:
unknown keys are rejected, regexes compiled, enums checked, templates parsed,
so a bad file is found by ``mailbot config check`` and not at 3 a.m. by the
worker. Each problem names the file, the key and, where it can, the line.
Commands that render no template (``dossiers list``, ``show``...) load with
``check_templates=False``: the templates are then compiled, and checked the
same way, only if and when one is used, and Jinja2 is not even imported.
Those that classify nothing load with ``check_rules=False`` too: ``rules.toml``
is validated (and the classifier imported) when ``Config.rules`` is first read.

Any service setting can be overridden by an environment variable
``MAILBOT_<SECTION>__<KEY>`` (``MAILBOT_DATABASE__URL``); for the list of
mailboxes the second part is the mailbox's index or its name in upper case
with non-alphanumerics as ``_`` (``MAILBOT_MAILBOXES__N_BATAILLON__HOST``).
Secrets never live in files: ``password_env`` names the variable holding one.

What is valid lives elsewhere: service settings in ``mailbot.settings``, the
rule vocabulary (and the parsers' limits) in ``parsers.rules``. Both are
re-exported here so that the rest of ``mailbot`` imports them from one place.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mailbot.errors import ConfigError, ConfigProblem, SecretMissingError

# Re-exported: mailbot modules import the settings and the rule vocabulary
# from here, the one place that loads them.
from mailbot.settings import (
    DatabaseSettings,
    DigestSettings,
    IntakeSettings,
    LimitsSettings,
    MailboxSettings,
    RepliesSettings,
    RetentionSettings,
    ScheduleSettings,
    ServiceSettings,
    Settings,
    SmtpSettings,
    StorageSettings,
    WebSettings,
)
from parsers.rules import (
    ACTIONS,
    ChainStep,
    Choice,
    DetectionRules,
    FieldKind,
    FieldRule,
    LetterRules,
    LetterSign,
    ParseLimits,
    PiecesRules,
    Rules,
    Sign,
    Strict,
    Thematique,
    Verdict,
    chain_rule_names,
    compile_pattern,
)

if TYPE_CHECKING:
    import jinja2
    import jinja2.nodes

__all__ = [
    "CHAIN_ACTIONS",
    "CHAIN_RULES",  # noqa: F822 (made on first use by __getattr__)
    "CONFIG_ENV",
    "RULES_FILE",
    "SETTINGS_FILE",
    "TEMPLATES_DIR",
    "ChainStep",
    "Choice",
    "Config",
    "DatabaseSettings",
    "DetectionRules",
    "DigestSettings",
    "FieldKind",
    "FieldRule",
    "IntakeSettings",
    "LetterRules",
    "LetterSign",
    "LimitsSettings",
    "MailboxSettings",
    "ParseLimits",
    "PiecesRules",
    "RepliesSettings",
    "RetentionSettings",
    "Rules",
    "ScheduleSettings",
    "ServiceSettings",
    "Settings",
    "Sign",
    "SmtpSettings",
    "StorageSettings",
    "Strict",
    "Thematique",
    "Verdict",
    "WebSettings",
    "check_reply_authentication",
    "check_secrets",
    "compile_pattern",
    "config_dir",
    "load_config",
    "secret",
]

ENV_PREFIX = "MAILBOT_"
CONFIG_ENV = "MAILBOT_CONFIG"
SETTINGS_FILE = "mailbot.toml"
RULES_FILE = "rules.toml"
TEMPLATES_DIR = "templates"

# Values that are obviously not a real secret; refused outside demo mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "password", "secret", "xxx", "todo"})

# The words a chain step may use, derived from the rule classes and the
# action table of parsers (kept under their old names for callers).
# CHAIN_RULES is made on first use (see __getattr__): it imports the classifier.
CHAIN_ACTIONS = frozenset(ACTIONS)


def __getattr__(name: str) -> Any:
    if name == "CHAIN_RULES":
        return chain_rule_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Config:
    """Everything loaded from one config directory."""

    directory: Path
    settings: Settings
    template_names: tuple[str, ...]
    env_overrides: tuple[str, ...] = ()
    # Validated by load_config, or on first use when it was told not to.
    _rules: Rules | None = field(default=None, repr=False, compare=False)
    # Built by load_config when it checks the templates, else on first use.
    _templates: jinja2.Environment | None = field(default=None, repr=False, compare=False)

    @property
    def rules(self) -> Rules:
        """The rules of ``rules.toml``; validated now if load_config left them (ConfigError)."""
        if self._rules is None:
            problems: list[ConfigProblem] = []
            rules = _load_rules(self.directory, settings=self.settings, problems=problems)
            if problems:
                raise ConfigError(problems)
            object.__setattr__(self, "_rules", rules)
        assert self._rules is not None
        return self._rules

    @property
    def templates(self) -> jinja2.Environment:
        """The templates in Jinja2's sandbox; each is checked when it is compiled."""
        if self._templates is None:
            object.__setattr__(
                self, "_templates", _template_environment(self.directory / TEMPLATES_DIR)
            )
        assert self._templates is not None
        return self._templates

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
    directory: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    check_templates: bool = True,
    check_rules: bool = True,
) -> Config:
    """Load and validate the whole config directory; raise ConfigError listing every problem.

    With ``check_templates=False`` the templates are only listed: each is
    compiled and checked when first used (a bad one raises ConfigError then).
    With ``check_rules=False`` ``rules.toml`` is read and validated (with the
    classifier it names) when ``Config.rules`` is first used, ConfigError then.
    """
    root = config_dir(directory)
    env = os.environ if environ is None else environ
    problems: list[ConfigProblem] = []
    if not root.is_dir():
        raise ConfigError([ConfigProblem(str(root), "", "config directory not found")])

    settings_path = root / SETTINGS_FILE
    raw_settings = _read_toml(settings_path, problems)
    overrides: list[str] = []
    if raw_settings is not None:
        overrides = _apply_env_overrides(
            raw_settings, env=env, problems=problems, path=settings_path
        )
    settings = _validate(
        Settings, raw_settings, path=settings_path, problems=problems, overrides_from=env
    )

    rules = _load_rules(root, settings=settings, problems=problems) if check_rules else None
    templates, names = _load_templates(root / TEMPLATES_DIR, problems, check=check_templates)
    if problems:
        raise ConfigError(problems)
    assert settings is not None and (rules is not None or not check_rules)
    return Config(
        directory=root,
        settings=settings,
        template_names=names,
        env_overrides=tuple(overrides),
        _rules=rules,
        _templates=templates,
    )


def _load_rules(
    root: Path, *, settings: Settings | None, problems: list[ConfigProblem]
) -> Rules | None:
    """Validate ``rules.toml`` (and its mailbox names against ``settings``); None on problems."""
    rules_path = root / RULES_FILE
    raw_rules = _read_toml(rules_path, problems)
    rules = _validate(Rules, raw_rules, path=rules_path, problems=problems)
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
    return rules


def check_reply_authentication(config: Config) -> None:
    """Outside demo mode, replies need ``replies.authserv_id`` unless ``auth_policy = "ignore"``.

    Without our own server's authserv-id no Authentication-Results header can
    be trusted, so a forged From would make the city answer anyone (issue 14):
    ``config check`` and start-up (``run``, ``poll``) refuse such a
    configuration; ``auth_policy = "ignore"`` must be written to run without
    it (unsafe, documented as such).
    """
    replies = config.settings.replies
    if config.settings.service.demo_mode or replies.authserv_id or replies.auth_policy == "ignore":
        return
    path = config.directory / SETTINGS_FILE
    text = _read_text(path) or ""
    # The commented example of the shipped file, else the [replies] table.
    commented = re.compile(r"^\s*#\s*authserv_id\s*=")
    line = next(
        (n for n, row in enumerate(text.splitlines(), start=1) if commented.match(row)),
        _find_line(text, ("replies",)),
    )
    raise ConfigError(
        [
            ConfigProblem(
                str(path),
                "replies.authserv_id",
                "not set: the authserv-id of our own mail server is required to trust its "
                'Authentication-Results (or write auth_policy = "ignore", which lets a '
                "forged sender receive our replies: unsafe)",
                line,
            )
        ]
    )


def check_secrets(config: Config, *, environ: Mapping[str, str] | None = None) -> None:
    """What start-up needs: replies' authentication settings, and every ``password_env``
    naming a set variable that holds a real secret."""
    check_reply_authentication(config)
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
    raw: dict[str, Any], *, env: Mapping[str, str], problems: list[ConfigProblem], path: Path
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


def _validate(model, raw, *, path: Path, problems: list[ConfigProblem], overrides_from=None):
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


def _template_environment(directory: Path) -> jinja2.Environment:
    """Jinja2's immutable sandbox over ``directory``, refusing unsafe templates as it compiles."""
    import jinja2

    return _checked_sandbox()(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        keep_trailing_newline=True,
    )


@functools.cache
def _checked_sandbox() -> type[jinja2.Environment]:
    """The sandbox class, made on first use so that loading the config needs no Jinja2."""
    import jinja2.sandbox

    class CheckedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
        """Every template parsed (then compiled) is first searched for unsafe accesses."""

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            # Environment._parse is where compile() and parse() turn source
            # into a tree: the one place a template can be refused before use.
            tree = super()._parse(source, name, filename)
            unsafe = _unsafe_accesses(tree)
            if unsafe:
                where = filename or name or "<template>"
                raise ConfigError(
                    [
                        ConfigProblem(where, "", f"unsafe template: {what}", line)
                        for line, what in unsafe
                    ]
                )
            return tree

    return CheckedSandbox


def _load_templates(
    directory: Path, problems: list[ConfigProblem], *, check: bool
) -> tuple[jinja2.Environment | None, tuple[str, ...]]:
    """The templates in Jinja2's immutable sandbox, each checked before any is rendered.

    Templates are admin files, but they are rendered by the worker that holds
    the mail passwords: a template reaching Python internals
    (``cycler.__init__.__globals__.os``) would run code there. The sandbox
    refuses such access when a template runs; ``_unsafe_accesses`` finds it
    in the template's syntax tree first, so ``config check`` names the file
    and line without running anything. Without ``check`` only the names are
    listed (no environment is built): the same check runs when a template is
    first compiled.
    """
    if not directory.is_dir():
        problems.append(ConfigProblem(str(directory), "", "templates directory not found"))
        return None, ()
    names = tuple(
        sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.j2") if p.is_file())
    )
    if not check:
        return None, names
    import jinja2

    env = _template_environment(directory)
    for name in names:
        path = directory / name
        try:
            env.get_template(
                name
            )  # parsed, checked and compiled (unknown filters...), not rendered
        except jinja2.TemplateSyntaxError as err:
            problems.append(
                ConfigProblem(str(path), "", f"template error: {err.message}", err.lineno)
            )
        except ConfigError as err:  # unsafe: every access, each with its line
            problems.extend(err.problems)
        except (OSError, UnicodeDecodeError) as err:
            problems.append(ConfigProblem(str(path), "", f"cannot read template: {err}"))
    return env, names


# Attributes no template needs and the sandbox refuses: Python internals.
_INTERNAL_ATTRIBUTES = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "tb_frame",
        "cr_frame",
        "ag_frame",
        "ag_code",
        "cr_code",
    }
)


@functools.cache
def _unsafe_attributes() -> frozenset[str]:
    import jinja2.sandbox

    return _INTERNAL_ATTRIBUTES | {
        *jinja2.sandbox.UNSAFE_GENERATOR_ATTRIBUTES,
        *jinja2.sandbox.UNSAFE_FUNCTION_ATTRIBUTES,
        *jinja2.sandbox.UNSAFE_METHOD_ATTRIBUTES,
    }


def _unsafe_name(name: object) -> bool:
    return isinstance(name, str) and (name.startswith("_") or name in _unsafe_attributes())


def _unsafe_accesses(tree: jinja2.nodes.Template) -> list[tuple[int, str]]:
    """(line, what) for every access to a Python internal in a template's syntax tree.

    ``x.__class__``, ``x["__class__"]``, ``x|attr("__class__")`` and the
    like: any attribute or key starting with ``_`` or naming an interpreter
    internal (``mro``, ``gi_frame``, ``f_globals``...).
    """
    import jinja2.nodes

    found: list[tuple[int, str]] = []
    for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Filter)):
        if isinstance(node, jinja2.nodes.Getattr):
            name: object = node.attr
        elif isinstance(node, jinja2.nodes.Getitem):
            name = node.arg.value if isinstance(node.arg, jinja2.nodes.Const) else None
        elif node.name == "attr" and node.args and isinstance(node.args[0], jinja2.nodes.Const):
            name = node.args[0].value
        else:
            continue
        if _unsafe_name(name):
            found.append((node.lineno, f"access to {name!r} (a Python internal) is not allowed"))
    return found
