"""Text normalisation shared by every matcher: NFC, accent and case folding.

All matching (detection keywords, field labels, letter signs) is done on our
side on folded text, never by the IMAP server: servers reject or mangle
accented SEARCH criteria.
"""

from __future__ import annotations

import functools
import re
import unicodedata


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
    # The distinct characters are few, and no ASCII one is a mark: test each
    # other once, then drop the marks in C. Usually one to three (acute,
    # grave, cedilla): one str.replace each, a fast scan; many, one regex
    # substitution (str.translate looks every character up in a dict).
    marks = sorted(ch for ch in set(decomposed) - _ASCII if unicodedata.combining(ch))
    if len(marks) > _FEW_MARKS:
        return _remover("".join(marks)).sub("", decomposed)
    for mark in marks:
        decomposed = decomposed.replace(mark, "")
    return decomposed


_ASCII = frozenset(map(chr, range(128)))
_FEW_MARKS = 4


@functools.lru_cache(maxsize=256)
def _remover(chars: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(chars) + "]")


# Word and Outlook write typographic apostrophes; patterns and labels use '.
_APOSTROPHES = "\u2019\u2018\u02bc\u2032\u00b4`"


def fold(text: str) -> str:
    """Accent- and case-folded text, apostrophes unified, runs of whitespace collapsed."""
    if text.isascii():
        # The one ASCII apostrophe to unify is the backquote, and casefold()
        # is lower() on ASCII: no regex, no decomposition (most headers,
        # addresses and folded-again text).
        folded = text.replace("`", "'").lower()
    else:
        # One str.replace per apostrophe: each a fast scan, together faster
        # than one regex substitution.
        for apostrophe in _APOSTROPHES:
            text = text.replace(apostrophe, "'")
        folded = strip_accents(text).casefold()
        folded = folded.replace("œ", "oe").replace("æ", "ae")
    # str.split() splits on exactly the characters \s matches (both ask
    # Py_UNICODE_ISSPACE) and drops the ends: the same as collapsing runs to
    # one space and stripping, several times faster than a substitution.
    return " ".join(folded.split())


def header_safe(text: str, *, max_length: int = 200) -> str:
    """Text that may go into a header: no CR, LF, NUL or Unicode line breaks."""
    # The characters that must never reach a header are CR, LF, NUL, U+2028,
    # U+2029, U+0085, VT and FF (line breaks for some reader or other).
    # Every unsafe character but NUL is whitespace to str.split(), which
    # splits on what \s matches: splitting on whitespace and NUL and joining
    # with one space is the substitution of each by a space, runs collapsed.
    return " ".join(text.replace("\x00", " ").split())[:max_length]
