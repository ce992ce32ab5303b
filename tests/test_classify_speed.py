"""Classifying ordinary mail fast answers exactly what the slower classifier answered (issue 18).

The classifier was made faster (folding each value once, literal pre-checks
before the sign and reference regexes, trace entries and contexts built
once); nothing it answers may change. ``tests/fixtures/classify_corpus.py``
classifies a wide corpus and ``classify_traces.json`` holds what the
classifier of commit e81233b answered on it: verdict, deciding rule, score,
reference and the trace's digest, for the whole read and the header-only
decision. The pieces the speed rests on are checked on their own: the fast
``fold`` and ``header_safe`` against their former definitions, the literal
pre-check against the regex on generated patterns and texts, and the four
non-ASCII case twins of ASCII letters against every code point.
"""

from __future__ import annotations

import json
import re
import string
import tracemalloc
import unicodedata
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.pipeline import Analyser
from parsers.classify import _ASCII_CASE_TWINS, _caseless, _Literals
from parsers.rules import compile_pattern
from parsers.text import fold, header_safe, strip_accents
from parsers.types import ParsedMail
from tests.fixtures.classify_corpus import BODIES, RECORDED, SUBJECTS, config, outcomes


def test_classifications_are_those_recorded_before_the_speed_up():
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    found = outcomes()
    assert found.keys() == recorded.keys()
    changed = {
        name: (recorded[name], found[name]) for name in found if found[name] != recorded[name]
    }
    assert not changed, changed
    # The corpus reaches every verdict and most rules, and some header decisions.
    reached = {outcome.split()[1] for outcome in found.values() if outcome}
    assert {"score", "over_limits", "dossier_reference", "reply_to_our_mail"} <= reached
    assert {
        "robot_sender",
        "own_sender",
        "same_sender_open_dossier",
        "not_the_applicant",
    } <= reached
    assert any(name.endswith(":headers") and found[name] for name in found)


# --------------------------------------------------------------------------
# fold and header_safe, against their former definitions

_OLD_WS = re.compile(r"\s+")
_OLD_APOSTROPHES = re.compile("[\u2019\u2018\u02bc\u2032\u00b4`]")
_OLD_UNSAFE = re.compile(r"[\r\n\x00\u2028\u2029\x85\x0b\x0c]")


def old_strip_accents(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    marks = "".join(sorted(ch for ch in set(decomposed) if unicodedata.combining(ch)))
    return re.sub("[" + re.escape(marks) + "]", "", decomposed) if marks else decomposed


def old_fold(text: str) -> str:
    folded = old_strip_accents(_OLD_APOSTROPHES.sub("'", text)).casefold()
    folded = folded.replace("œ", "oe").replace("æ", "ae")
    return _OLD_WS.sub(" ", folded).strip()


def old_header_safe(text: str, *, max_length: int = 200) -> str:
    cleaned = _OLD_UNSAFE.sub(" ", text)
    return _OLD_WS.sub(" ", cleaned).strip()[:max_length]


# Characters where folding or splitting could go wrong: every kind of space,
# apostrophes, ligatures, case twins, combining marks, NUL and line breaks.
_TRICKY = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u200b\u2028\u2029\u202f\u205f"
    "\u3000\ufeff\x00`'\u2019\u2018\u02bc\u2032\u00b4œŒæÆßẞﬁﬀİıſ\u212a\u0301\u0327ÉéÀçÇ"
    "ǅǄꭰᏣ€«»…–—°½²ABCxyz019"
)
_text = st.text(alphabet=st.sampled_from(_TRICKY) | st.characters(), max_size=60)


@settings(max_examples=3000, deadline=None)
@given(_text)
def test_fold_is_the_former_fold(text):
    assert strip_accents(text) == old_strip_accents(text)
    assert fold(text) == old_fold(text)


@settings(max_examples=1500, deadline=None)
@given(_text, st.integers(0, 80))
def test_header_safe_is_the_former_one(text, length):
    assert header_safe(text, max_length=length) == old_header_safe(text, max_length=length)


def test_fold_is_the_former_fold_on_every_character_and_the_corpus():
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    for start in range(0, len(every), 4096):
        chunk = every[start : start + 4096]
        assert fold(chunk) == old_fold(chunk)
        # A few marks at a time too (they are removed one by one then).
        for piece in (chunk[at : at + 64] for at in range(0, len(chunk), 64)):
            assert strip_accents(piece) == old_strip_accents(piece)
        assert header_safe(chunk, max_length=10_000) == old_header_safe(chunk, max_length=10_000)
    for text in [*SUBJECTS, *BODIES]:
        assert fold(text) == old_fold(text)
        assert header_safe(text) == old_header_safe(text)


# --------------------------------------------------------------------------
# The literal pre-check


def test_the_case_twins_of_ascii_are_every_one():
    """A case-insensitive ASCII character matches only itself, lower-cased, in a caseless text."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    twins = set()
    for code in range(128):
        for match in re.compile(re.escape(chr(code)), re.IGNORECASE).finditer(every):
            found = match.group(0)
            if found != chr(code).lower():
                twins.add(found)
                assert not _caseless(found), hex(ord(found))
    assert twins == set(string.ascii_uppercase) | set(_ASCII_CASE_TWINS)


def test_the_shipped_signs_and_reference_have_literals():
    """Without literals every message runs every regex: the speed-up is gone."""
    rules = config().rules.detection
    for sign in rules.signs:
        assert _Literals.of(sign.regex).required, sign.name
    assert _Literals.of(compile_pattern(rules.reference_pattern)).required == ("bsc-",)


# Small patterns of every shape the pre-check reads or must leave alone.
_atom = st.sampled_from(
    [
        "a", "b", "ab", "ba", "K", "S", "I", "é", "ı", "ſ", "\u212a", "-", " ", ".", "'",
        r"\s", r"\b", "^", "$", "[ab]", "[^a]", r"\w", "(?-i:a)", "(?-i:AB)", "(?i:b)",
        "(?=ab)", "(?!a)", "(?<=a)", "(?<!b)",
    ]
)  # fmt: skip


def _patterns(children):
    return st.one_of(
        st.tuples(children, children).map("".join),
        st.tuples(children, children).map("|".join),
        children.map(lambda p: f"({p})"),
        children.map(lambda p: f"(?:{p})"),
        children.map(lambda p: f"(?>{p})"),
        st.tuples(children, st.sampled_from(["?", "*", "+", "{2}", "{0,2}", "+?", "*+"])).map(
            "".join
        ),
        children.map(lambda p: f"({p})\\1"),
    )


_pattern = st.recursive(_atom, _patterns, max_leaves=8)
_haystack = st.text(alphabet="abABkKsSiIé ı ſ\u212aİ-.'x", max_size=30)


@settings(max_examples=3000, deadline=None)
@given(_pattern, st.lists(_haystack, min_size=1, max_size=4))
def test_the_literal_search_finds_what_the_regex_finds(pattern, texts):
    try:
        regex = re.compile(strip_accents(pattern), re.IGNORECASE)
    except re.error:
        return
    literals = _Literals.of(regex)
    for text in texts:
        for candidate in (text, fold(text), unicodedata.normalize("NFKD", text).lower()):
            expected = regex.search(candidate)
            found = literals.search(candidate)
            assert (found and found.span()) == (expected and expected.span()), literals.required


def test_a_context_without_texts_is_built_once_per_mailbox():
    analyser = Analyser(config())
    assert analyser._context("n.bataillon") is analyser._context("n.bataillon")
    assert analyser._context("d.berteloot").mailbox == "d.berteloot"
    with_text = analyser._context("n.bataillon", ("Intitulé de l'action",))
    assert with_text.attachment_texts == ("Intitulé de l'action",)
    assert analyser._context("n.bataillon").attachment_texts == ()


def test_the_caches_keep_no_big_value():
    """Folded values, parsed From values and trace entries are kept only when short."""
    analyser = Analyser(config())
    ctx = analyser._context("n.bataillon")
    before = None
    tracemalloc.start()
    try:
        for n in range(40):
            big = f"{n}" + "x" * 200_000
            mail = ParsedMail(
                sha256="0" * 64,
                size=1,
                message_id=None,
                subject=big,
                sender=f"{big}@example.org",
                sender_name="",
                from_address=f"{big}@example.org",
                headers=MappingProxyType(
                    {"from": (f"{big} <{big}@example.org>",), f"list-{big}": ("",)}
                ),
                text=big,
            )
            analyser.classifier.classify(mail, ctx=ctx)
            del mail, big
            if n == 9:  # the caches are warm, and full of small values
                before = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The few long texts kept (the last bodies folded) stay; nothing grows with the count.
    assert after - before < 2_000_000
