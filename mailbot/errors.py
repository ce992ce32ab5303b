"""Errors raised by the service layer (configuration, mail servers, CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MailbotError(Exception):
    """Base class: a handled failure the CLI reports without a traceback."""


class RefusedError(MailbotError):
    """A staff action refused, as a code (``parsers.reasons.Refusal``) with its parameters.

    ``str()`` is the English sentence the CLI prints (the CLI speaks English);
    the back-office shows ``mailbot.wording.refusal_text(error)``, in French.
    """

    def __init__(self, code: StrEnum, english: str, **params: Any) -> None:
        super().__init__(english)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in the configuration, located as precisely as we can."""

    file: str
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(MailbotError):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SecretMissingError(ConfigError):
    """A ``password_env`` names an environment variable that is not set."""
