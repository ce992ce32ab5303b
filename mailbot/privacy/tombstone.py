"""The erasure tombstone's key: HMAC-SHA256 of the normalised address.

A plain SHA-256 of an address is reversed by hashing guesses; the tombstone
keeps an HMAC keyed with a secret read from the environment variable named
by ``[retention] tombstone_secret_env``. Like the mail passwords, the secret
must be set and must not be a placeholder, except in demo mode (where a
fixed demo key stands in).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from mailbot.app import App
from mailbot.config import PLACEHOLDER_SECRETS
from mailbot.privacy.errors import PrivacyError
from mailbot.privacy.person import normalise_email

DEMO_KEY = "demo-tombstone-key"


def tombstone_key(app: App, *, environ: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key; refused when unset or a placeholder outside demo mode."""
    settings = app.config.settings
    var = settings.retention.tombstone_secret_env
    value = (os.environ if environ is None else environ).get(var)
    demo = settings.service.demo_mode
    if value is None or value.strip().lower() in PLACEHOLDER_SECRETS:
        if demo:
            return DEMO_KEY.encode("utf-8")
        state = "is not set" if value is None else "holds a placeholder, not a real secret"
        raise PrivacyError(
            f"retention.tombstone_secret_env: environment variable {var} {state}; "
            "erasure tombstones need a secret key"
        )
    return value.encode("utf-8")


def keyed_fingerprint(email: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of the normalised address, as kept in ``person.erased`` tombstones."""
    return hmac.new(key, normalise_email(email).encode("utf-8"), hashlib.sha256).hexdigest()
