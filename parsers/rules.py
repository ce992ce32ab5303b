"""The rule vocabulary the parsers read: what ``config/rules.toml`` is loaded into.

Verdicts, the words of the classification chain, weighted signs, field
rules, thématiques, the official-letter and pieces rules, and the limits a
parser must stay within. These are frozen pydantic models: unknown keys are
rejected and regexes compiled when a file is loaded, so a bad rule is found
by ``mailbot config check`` and not by the worker at 3 a.m.

``mailbot.config`` reads the admin's files into these models; the parsers
take them as arguments and never import ``mailbot`` (the layering test,
``tests/test_layering.py``, keeps it so).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from parsers.text import strip_accents


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an admin's regex for matching against accent-folded text.

    Text is matched after accent folding, so accents are folded in the
    pattern too (``Béthune`` matches ``BETHUNE``); case is ignored.
    """
    try:
        return re.compile(strip_accents(pattern), re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"invalid regular expression {pattern!r}: {err}") from err


Regex = Annotated[str, AfterValidator(lambda p: compile_pattern(p).pattern and p)]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values frozen.

    The validation schemas are built when rules are first validated, not at
    import: a command that never reads the rules (``dossiers list``) does
    not pay for them (bench.startup).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------
# Limits (the [limits] table of mailbot.toml)


class ParseLimits(Strict):
    """How much of an untrusted message and its documents a parser may read."""

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
    # All the documents of one message, OCR included: wall-clock and CPU
    # seconds. When spent, the documents left are not read and the message
    # is for staff to review (``over_budget`` on the documents read).
    message_wall_seconds: float = Field(default=120, gt=0)
    message_cpu_seconds: float = Field(default=90, gt=0)


# --------------------------------------------------------------------------
# rules.toml


class Verdict(StrEnum):
    CANDIDATURE = "candidature"
    FOLLOW_UP = "follow_up"
    NOT_CANDIDATURE = "not_candidature"
    AUTO_REPLY = "auto_reply"
    NEEDS_REVIEW = "needs_review"


# What a chain step's action turns into. The chain (order, action) is admin
# data; these are the words it may use.
ACTIONS: dict[str, Verdict] = {
    "auto_reply": Verdict.AUTO_REPLY,
    "not_candidature": Verdict.NOT_CANDIDATURE,
    "follow_up": Verdict.FOLLOW_UP,
    "needs_review": Verdict.NEEDS_REVIEW,
}


def chain_rule_names() -> frozenset[str]:
    """Names a chain step may use: one per rule class of ``parsers.classify``.

    Derived from the classes themselves (each subclass of ``Rule`` registers
    its ``name``), so a new rule is known to ``rules.toml`` as soon as it is
    written, and there is no second list to keep in step.
    """
    # Imported here, not at the top: classify imports this module.
    from parsers.classify import RULES

    return frozenset(RULES)


class ChainStep(Strict):
    rule: str
    action: str

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        known = chain_rule_names()
        if value not in known:
            raise ValueError(f"unknown rule {value!r}; known: {', '.join(sorted(known))}")
        return value

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            known = ", ".join(sorted(ACTIONS))
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
# What the classifier reads of a loaded configuration


class LoadedConfig(Protocol):
    """The shape of ``mailbot.config.Config`` that parsers may read.

    ``settings`` is mailbot's ``Settings`` (``own_addresses``,
    ``replies.loop_header``, ``smtp.message_id_domain`` are read); it is
    typed loosely here so that parsers need not know mailbot's settings.
    """

    @property
    def settings(self) -> Any: ...

    @property
    def rules(self) -> Rules: ...
