"""What names a person in stored data, and how to remove it: text, JSON and whole messages.

An erasure knows a person by their address and, from their own dossiers and
mail, by their full name(s) and phone number(s). ``Mentions`` finds and
replaces those in a text, in a JSON document (keys included) and in a raw
MIME message: every header is decoded (RFC 2047) and every text part is
decoded (base64, quoted-printable, its charset) before it is searched, so an
encoded part cannot hide the person; a redacted part is written back in
base64 UTF-8. Names are matched whole (first and last name, in either
order), never a lone first name; phone numbers whatever their separators,
in national or ``+33`` form.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import encoders
from email.header import Header, decode_header, make_header
from email.message import Message as MimeMessage
from typing import Any

from mailbot.privacy.person import address_pattern

# What replaces each kind of mention. ASCII where it goes into raw bytes.
ERASED_TEXT = "[adresse effacée]"
ERASED_BYTES = b"[adresse effacee]"
ERASED_NAME = "[nom effacé]"
ERASED_PHONE = "[téléphone effacé]"

# A name shorter than this, or of one word, is too common to be erased blindly.
_MIN_NAME_LENGTH = 5
_MIN_PHONE_DIGITS = 9
_PHONE_SEPARATOR = r"[\s.\-\u00a0]?"


def _name_pattern(name: str) -> re.Pattern[str] | None:
    words = name.split()
    if len(words) < 2 or len(name) < _MIN_NAME_LENGTH:
        return None
    orders = {tuple(words), (words[-1], *words[:-1])}
    alternatives = [r"\s+".join(re.escape(w) for w in order) for order in orders]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _phone_pattern(phone: str) -> re.Pattern[str] | None:
    digits = re.sub(r"\D", "", phone)
    if phone.strip().startswith("+33") or digits.startswith("0033"):
        digits = "0" + digits.removeprefix("00").removeprefix("33")
    if len(digits) < _MIN_PHONE_DIGITS:
        return None
    national = _PHONE_SEPARATOR.join(digits)
    forms = [national]
    if digits.startswith("0"):
        rest = _PHONE_SEPARATOR.join(digits[1:])
        forms.append(r"(?:\+|00)\s?33\s?(?:\(0\)\s?)?" + rest)
    return re.compile(r"(?<!\d)(?:" + "|".join(forms) + r")(?!\d)")


@dataclass
class Mentions:
    """The patterns naming one person, and their replacements."""

    address: str
    names: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] = [
            (address_pattern(self.address), ERASED_TEXT)
        ]
        for name in sorted(set(self.names), key=len, reverse=True):
            pattern = _name_pattern(name)
            if pattern is not None:
                self._patterns.append((pattern, ERASED_NAME))
        for phone in sorted(set(self.phones)):
            pattern = _phone_pattern(phone)
            if pattern is not None:
                self._patterns.append((pattern, ERASED_PHONE))

    @classmethod
    def of(cls, address: str, *, names: Iterable[Any], phones: Iterable[Any]) -> Mentions:
        """From raw values (None and non-texts skipped, whitespace normalised)."""

        def clean(values: Iterable[Any]) -> list[str]:
            return sorted({" ".join(v.split()) for v in values if isinstance(v, str) and v.strip()})

        return cls(address=address, names=clean(names), phones=clean(phones))

    # -- text and JSON --------------------------------------------------------------

    def found_in(self, text: str) -> bool:
        return any(pattern.search(text) for pattern, _ in self._patterns)

    def redact(self, text: str) -> str:
        for pattern, replacement in self._patterns:
            text = pattern.sub(replacement, text)
        return text

    def found_in_value(self, value: Any) -> bool:
        """Whether a text, or any key or value of a JSON document, names the person."""
        if isinstance(value, str):
            return self.found_in(value)
        if isinstance(value, dict):
            return any(self.found_in_value(k) or self.found_in_value(v) for k, v in value.items())
        if isinstance(value, list):
            return any(self.found_in_value(v) for v in value)
        return False

    def redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        return value

    # -- raw messages ---------------------------------------------------------------

    def found_in_message(self, raw: bytes) -> bool:
        """Whether the raw bytes, a decoded header or a decoded text part names the person."""
        if self.found_in(raw.decode("latin-1")) or self.found_in(raw.decode("utf-8", "replace")):
            return True
        message = _parse(raw)
        for part in message.walk():
            if any(self.found_in(_decoded_header(v)) for _k, v in part._headers):
                return True
            text = _text_payload(part)
            if text is not None and self.found_in(text):
                return True
        return False

    def redact_message(self, raw: bytes) -> bytes:
        """The message with every mention replaced, in headers and decoded text parts.

        Unchanged bytes when nothing names the person. Non-text parts (PDF,
        images) cannot be rewritten: callers delete such a message instead
        when it is the person's own.
        """
        if not self.found_in_message(raw):
            return raw
        message = _parse(raw)
        for part in message.walk():
            part._headers = [(k, self._redact_header(v)) for k, v in part._headers]
            text = _text_payload(part)
            if text is not None and self.found_in(text):
                _replace_text_payload(part, self.redact(text))
        linesep = "\r\n" if b"\r\n" in raw else "\n"
        out = message.as_bytes(policy=email.policy.compat32.clone(linesep=linesep))
        # What the parser could not decode (preamble, broken encodings): plain bytes.
        return self._redact_bytes(out)

    def _redact_header(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        decoded = _decoded_header(value)
        if not self.found_in(decoded):
            return value
        redacted = self.redact(decoded)
        if redacted.isascii():
            return redacted
        return Header(redacted, "utf-8").encode()

    def _redact_bytes(self, raw: bytes) -> bytes:
        text = raw.decode("latin-1")
        if not self.found_in(text):
            return raw
        for pattern, replacement in self._patterns:
            ascii_replacement = replacement.replace("é", "e")
            text = pattern.sub(ascii_replacement, text)
        return text.encode("latin-1")


def _parse(raw: bytes) -> MimeMessage:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _decoded_header(value: Any) -> str:
    text = str(value)
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, ValueError, UnicodeError):
        return text


def _text_payload(part: MimeMessage) -> str | None:
    """The decoded text of a ``text/*`` leaf part, None for anything else."""
    if part.is_multipart() or part.get_content_maintype() != "text":
        return None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _replace_text_payload(part: MimeMessage, text: str) -> None:
    """Put ``text`` back as UTF-8 in base64, whatever the part's encoding was."""
    del part["Content-Transfer-Encoding"]
    part.set_payload(text.encode("utf-8"))
    part.set_param("charset", "utf-8")
    encoders.encode_base64(part)
