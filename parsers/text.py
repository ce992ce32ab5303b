"""Text normalisation shared by every matcher: NFC, accent and case folding.

All matching (detection keywords, field labels, letter signs) is done on our
side on folded text, never by the IMAP server: servers reject or mangle
accented SEARCH criteria.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_WS = re.compile(r"\s+")
# Characters that are line breaks for a reader but not for str.splitlines()
# users who only expect \n; also the ones that must never reach a header.
_UNSAFE_HEADER_CHARS = re.compile(r"[\r\n\x00\u2028\u2029\x85\x0b\x0c]")


def nfc(text: str) -> str:
    """Return ``text`` in Unicode NFC form."""
    return unicodedata.normalize("NFC", text)


def strip_accents(text: str) -> str:
    """Remove combining marks: ``Béthune`` -> ``Bethune``, ``œ`` kept as is.

    Ligatures are expanded by NFKD (``ﬁ`` -> ``fi``) which is what a reader
    expects when matching.
    """
    if text.isascii():
        return text  # nothing to decompose
    decomposed = unicodedata.normalize("NFKD", text)
    # The distinct characters are few: test each once, then drop them in C
    # (a regex substitution; str.translate looks every character up in a dict).
    marks = "".join(sorted(ch for ch in set(decomposed) if unicodedata.combining(ch)))
    return _remover(marks).sub("", decomposed) if marks else decomposed


@functools.lru_cache(maxsize=256)
def _remover(chars: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(chars) + "]")


# Word and Outlook write typographic apostrophes; patterns and labels use '.
_APOSTROPHES = re.compile("[\u2019\u2018\u02bc\u2032\u00b4`]")


def fold(text: str) -> str:
    """Accent- and case-folded text, apostrophes unified, runs of whitespace collapsed."""
    folded = strip_accents(_APOSTROPHES.sub("'", text)).casefold()
    folded = folded.replace("œ", "oe").replace("æ", "ae")
    return _WS.sub(" ", folded).strip()


def header_safe(text: str, *, max_length: int = 200) -> str:
    """Text that may go into a header: no CR, LF, NUL or Unicode line breaks."""
    cleaned = _UNSAFE_HEADER_CHARS.sub(" ", text)
    cleaned = _WS.sub(" ", cleaned).strip()
    return cleaned[:max_length]
