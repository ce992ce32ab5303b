"""The error a privacy request raises when it cannot be carried out as asked."""

from __future__ import annotations

from mailbot.errors import MailbotError, RefusedError


class PrivacyError(MailbotError):
    """A privacy request that cannot be carried out as asked (unknown dossier, bad address...)."""


class PrivacyRefusedError(PrivacyError, RefusedError):
    """A privacy request refused with a code (``parsers.reasons.Refusal``) the pages word."""
