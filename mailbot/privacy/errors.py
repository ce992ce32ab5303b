"""The error a privacy request raises when it cannot be carried out as asked."""

from __future__ import annotations

from mailbot.errors import MailbotError


class PrivacyError(MailbotError):
    """A privacy request that cannot be carried out as asked (unknown dossier, bad address...)."""
