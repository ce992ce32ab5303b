"""RFC 2047 encoded words and charsets, decoded with every fallback named.

Declared charset first (with the aliases mail software uses), then utf-8,
cp1252 and latin-1; codecs that are no charset are refused. Each fallback
becomes a warning so staff can see what was guessed.
"""

from __future__ import annotations

import binascii
import codecs
import re

from parsers.mail.report import _Report
from parsers.text import header_safe, nfc

# --------------------------------------------------------------------------
# RFC 2047 encoded words and charsets
# --------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([qQbB])\?([^?\s]*)\?=")
# Names mail software uses that Python does not know, or knows differently.
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "windows-874": "cp874",
    "x-user-defined": "latin-1",
    "unknown-8bit": "",
    "x-unknown": "",
}
_CHARSET_NAME = re.compile(r"[a-z0-9][a-z0-9._:+-]{0,39}")
# Real codecs that are no charset: they interpret escapes or always fail.
_REFUSED_CODECS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined", "mbcs", "oem"}
)


def _decode_words(text: str, report: _Report | None, label: str) -> str:
    """Decode RFC 2047 words; white space between two words is dropped."""
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0
    previous_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        if not (previous_was_word and not between.strip()):
            out.append(between)
        out.append(_decode_word(match, report, label))
        pos = match.end()
        previous_was_word = True
    out.append(text[pos:])
    return "".join(out)


def _decode_word(match: re.Match[str], report: _Report | None, label: str) -> str:
    charset = match.group(1).split("*", 1)[0]
    payload = match.group(3).encode("utf-8", "replace")
    try:
        if match.group(2) in "bB":
            data = _lenient_b64decode(payload)
        else:
            data = binascii.a2b_qp(payload, header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    text, problem, used = _decode_bytes(data, charset)
    if problem and report is not None:
        report.warn(f"{problem} in {label}; decoded as {used}")
    return text


def _lenient_b64decode(payload: bytes) -> bytes:
    """Base64 the way mail clients read it: bad characters and padding ignored."""
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", payload)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))


def _codec_for(declared: str) -> str | None:
    """Python codec name for a MIME charset, or None when unknown or refused."""
    name = declared.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not _CHARSET_NAME.fullmatch(name):
        return None  # codecs.lookup raises ValueError on a NUL, for one
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def _decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None, str]:
    """Decode text bytes; returns (text, problem or None, what was used).

    Declared charset first; then utf-8; then utf-8 with replacement when the
    bytes are mostly valid utf-8; then cp1252; then latin-1, which never
    fails.
    """
    if not declared:
        codec, problem = "utf-8", "8-bit text without a declared charset"
    else:
        codec = _codec_for(declared)
        problem = f"unknown charset {_quoted(declared, 40)}"
        if codec is not None:
            problem = f"bytes not valid in the declared charset {_quoted(declared, 40)}"
    if codec is not None:
        try:
            return data.decode(codec), None, codec
        except (UnicodeError, LookupError, ValueError):
            pass
    text, used = _fallback_decode(data)
    return text, problem, used


def _fallback_decode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    replaced = data.decode("utf-8", "replace")
    bad = replaced.count("\ufffd")
    good = len(replaced) - len(replaced.encode("ascii", "ignore")) - bad
    if good > bad:
        return replaced, "utf-8 with replacement characters"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _quoted(text: str, limit: int = 80) -> str:
    """Quote untrusted text for a warning: one line, bounded."""
    return "'" + header_safe(text, max_length=limit) + "'"


# Characters never kept in body text: C0/C1 controls but tab and newline,
# and lone surrogates left by lax codecs.
_TEXT_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    return nfc(_TEXT_JUNK.sub("", text))
