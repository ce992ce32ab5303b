"""Issue 18, second pass: the header block read and judged faster, with the same answers.

The header fields of lines seen before are kept (``headers._line_field``),
``plain_view`` keeps its readings of short address lists and of dates of the
usual shape, ``envelope`` its cleaned ASCII addresses and display names
without encoded words. Each cache is compared with the function it keeps
the answers of, on generated values, read cold and warm; end to end,
``read_head`` and ``parse_message`` give the same result with every cache
bypassed, on the golden mails, the hostile corpus, the seeds, the everyday
mailbox and mutated messages, the cached run reading each message twice
(the second time from warm caches). Mail-parser's readings of dates are not
kept (it may warn, and each report must say so): checked on a date it warns
about.

``plain_header_block`` (one possessive match instead of a loop over the
lines), ``structure_needs_body`` (no nested generators) and
``decide_from_headers`` (the chain's steps sorted once per chain) are
compared with their former definitions, kept here: on generated blocks and
structures, and on every case of ``tests/fixtures/classify_corpus.py`` with
the shipped, the odd and shuffled chains.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.harness import everyday_messages
from mailbot.pipeline import Analyser
from parsers import headers_first
from parsers.classify import Classification, Classifier, _rule_hit
from parsers.headers_first import decide_from_headers, plain_header_block, structure_needs_body
from parsers.mail import envelope, headers, read_head
from parsers.mail import plain_view as plain_view_module
from parsers.mail import report as report_module
from parsers.mail.bodystructure import BodyPart
from parsers.mail.message import parse_message
from parsers.mail.plain_view import _addresses, _addresses_of, plain_date
from parsers.mail.report import _Report
from parsers.rules import DetectionRules
from tests.fixtures.classify_corpus import MAILBOXES, _structure, config, odd_rules, raw_cases
from tests.fixtures.head_corpus import CORPUS, readings
from tests.fixtures.mutations import LIMITS, PROPERTY_SETTINGS, mutated

CACHES = (
    headers._line_field,
    headers._declared_type_short,
    plain_view_module._usual_date,
    plain_view_module._pairs_short,
    envelope._clean_ascii_address,
    envelope._clean_plain_name,
)


def _clear() -> None:
    for cache in CACHES:
        cache.cache_clear()


def _uncached(patch: pytest.MonkeyPatch) -> None:
    """Every kept reading replaced by the function it keeps the answers of."""
    patch.setattr(headers, "_line_field", headers._split_field)
    patch.setattr(headers, "_declared_type_short", headers._declared_type)
    patch.setattr(plain_view_module, "_usual_date", plain_view_module._plain_date_now)
    patch.setattr(plain_view_module, "_pairs_short", plain_view_module._pairs)
    patch.setattr(envelope, "_clean_ascii_address", envelope._clean_address_now)
    patch.setattr(envelope, "_clean_plain_name", envelope._clean_name_now)


def _cached_and_fresh(raw: bytes, patch: pytest.MonkeyPatch) -> tuple[object, object, object]:
    _clear()
    cold = readings(raw)
    warm = readings(raw)
    with patch.context() as inner:
        _uncached(inner)
        fresh = readings(raw)
    return cold, warm, fresh


@pytest.mark.parametrize("name", list(CORPUS))
def test_reading_is_the_same_without_the_keptreadings(name, monkeypatch):
    cold, warm, fresh = _cached_and_fresh(CORPUS[name], monkeypatch)
    assert cold == fresh
    assert warm == fresh


@PROPERTY_SETTINGS
@given(mutated())
def test_reading_is_the_same_without_the_kept_readings_on_mutated_mail(raw):
    with pytest.MonkeyPatch.context() as patch:
        cold, warm, fresh = _cached_and_fresh(raw, patch)
    assert cold == fresh
    assert warm == fresh


def test_the_kept_readings_serve_the_everyday_mail():
    """Not vacuous: reading ordinary mail hits every cache."""
    _clear()
    date = dt.datetime(2026, 12, 3, 6, 57, 44, tzinfo=dt.UTC)
    for raw in everyday_messages(6, date=date):
        end = raw.find(b"\r\n\r\n")
        head = read_head(raw[: end + 4], size=len(raw), limits=LIMITS)
        parse_message(raw, limits=LIMITS, head=head)
    # Every message has its own Date: only a mailing sent at once repeats one.
    for cache in CACHES:
        if cache is not plain_view_module._usual_date:
            assert cache.cache_info().hits > 0, cache
    assert plain_view_module._usual_date.cache_info().hits == 0
    for raw in everyday_messages(1, date=date) + everyday_messages(1, date=date):
        read_head(raw[: raw.find(b"\r\n\r\n") + 4], size=len(raw), limits=LIMITS)
    assert plain_view_module._usual_date.cache_info().hits > 0


# --------------------------------------------------------------------------
# Each cache against the function it keeps the answers of

_NAME_CHARS = "abcAB .,;:<>@\"'\\()[]=?_\t-éÉ\u212a\u2028\x00\x85\ud800"
_names = st.text(alphabet=_NAME_CHARS, max_size=24)
_DATES = [
    "Thu, 03 Dec 2026 06:57:44 +0000",
    "3 Dec 2026 06:57:44 GMT",
    "Thu, 31 Feb 2026 06:57:44 +0000",
    "Thu, 03 Dec 1899 06:57:44 +0000",
    "Thu, 03 Dec 2026 24:57:44 +0000",
    "Thu, 03 Dec 2026 06:57:60 -0930",
    "Thu, 03 Dec 9999 23:59:59 -1400",
    "Thu, 01 Jan 0001 00:00:00 +0100",
    "Thu, 03 Dec 26 06:57:44 EST",
    "Thu, 03 Dec 2026 06:57:44 +0000 (UTC)",
    "",
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_DATES) | st.text(alphabet="0123456789 :+-ThuDecGMTJan,", max_size=34))
def test_kept_dates_are_read_dates(text):
    plain_view_module._usual_date.cache_clear()
    first = plain_date(text)
    again = plain_date(text)
    expected = plain_view_module._plain_date_now(text)
    if expected is plain_view_module._UNUSUAL:
        expected = plain_view_module.parse_mail_date(text).value
    assert first == again == expected


def test_mail_parser_dates_are_read_each_time(monkeypatch):
    """A date mail-parser reads is read again for the next message (its warnings with it)."""
    calls: list[str] = []
    real = plain_view_module.parse_mail_date

    def counting(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(plain_view_module, "parse_mail_date", counting)
    for _ in range(3):
        plain_date("Thu, 03 Dec 26 06:57:44 EST")
        plain_date("Thu, 03 Dec 2026 06:57:44 +0000")
    assert calls == ["Thu, 03 Dec 26 06:57:44 EST"] * 3


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.tuples(_names, st.sampled_from(["a@b.fr", "A.b@X-y.example", "a@b", "<a@b.fr>"])),
        max_size=3,
    ).map(lambda items: ", ".join(f"{name} <{address}>" for name, address in items))
    | _names
)
def test_kept_address_lists_are_read_lists(text):
    first = _addresses_of(text)
    if first is not None:
        first.append(("mutated", "by@a.caller"))  # the kept answer is not the caller's list
    again = _addresses_of(text)
    assert again == _addresses(text)
    assert again is None or ("mutated", "by@a.caller") not in again


@settings(max_examples=600, deadline=None)
@given(_names | st.sampled_from(["S.Durand@Ville-Bethune.FR", "a@b", "x" * 330, "a@b.fr "]))
def test_kept_addresses_and_names_are_clean_ones(text):
    for _ in range(2):
        assert envelope._clean_address(text) == envelope._clean_address_now(text)
        assert envelope._clean_name(text) == envelope._clean_name_now(text)
    assert envelope._clean_address(None) is None
    assert envelope._clean_name(b"x") == ""


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40) | st.sampled_from([b"X: y", b"X:", b":y", b" X: y", b"X : y\r\r"]))
def test_kept_fields_are_split_fields(line):
    headers._line_field.cache_clear()
    expected = headers._split_field(line)
    for _ in range(2):
        found = headers._line_field(line)
        assert found == expected
        assert repr(found) == repr(expected)
        assert (found and found.key) == (expected and expected.key)


# --------------------------------------------------------------------------
# The first pass's checks and decision, against their former definitions

_OLD_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n|[ \t][^\r\n]*\r?\n")


def old_plain_header_block(header: bytes) -> bool:
    if b"\x00" in header:
        return False
    if header.endswith(b"\r\n\r\n"):
        body = header[:-2]
    elif header.endswith(b"\n\n"):
        body = header[:-1]
    else:
        return False
    if b"\r" in body.replace(b"\r\n", b""):
        return False
    pos = 0
    for match in _OLD_FIELD_LINE.finditer(body):
        if match.start() != pos:
            return False
        pos = match.end()
    return pos == len(body) and not body[:1].isspace()


def old_structure_needs_body(structure: BodyPart) -> bool:
    return any(headers_first._READ_WHOLE_TYPES.match(p.content_type) for p in structure.walk())


def old_decide_from_headers(head, *, structure, classifier, ctx):
    if head.message_id is None or old_structure_needs_body(structure):
        return None
    trace = []
    could_flip = set()
    for rule, verdict in classifier.chain:
        name = rule.name
        if name not in headers_first.HEADER_RULES and name not in headers_first.SENDER_RULES:
            return None
        result = rule.check(head, ctx)
        trace.append(_rule_hit(name, result.hit, result.reason))
        if name in headers_first.SENDER_RULES and not (
            result.hit and name in headers_first._HIT_STANDS
        ):
            if result.hit:
                return None
            could_flip.add(verdict)
            continue
        if not result.hit:
            continue
        if verdict not in headers_first.QUIET_VERDICTS or could_flip - {verdict}:
            return None
        return Classification(
            verdict=verdict,
            trace=tuple(trace),
            score=None,
            reference=result.reference,
            decided_by=name,
        )
    return None


_LINE_PIECES = [
    b"From: a@b.fr",
    b"Subject: x",
    b"X-A:",
    b":x",
    b" folded",
    b"\tfolded",
    b"no colon",
    b"From x",
    b"X\x00: y",
    b"X: a\rb",
    b"X: \xc3\xa9",
    b"X:\r",
    b"",
    b"\x7f: y",
    b"\x21\x39\x3b: y",
]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.sampled_from(_LINE_PIECES) | st.binary(max_size=12), max_size=8),
    st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"\r\n\r\n", b""]), min_size=8),
)
def test_plain_header_block_is_the_former_one(pieces, ends):
    header = b"".join(piece + end for piece, end in zip(pieces, ends, strict=False))
    for block in (header, header + b"\r\n", header + b"\n", header + b"\r\n\r\n"):
        assert plain_header_block(block) == old_plain_header_block(block)


def test_plain_header_block_is_the_former_one_on_the_corpus():
    seen = set()
    for name, case in raw_cases():
        for cut in (b"\r\n\r\n", b"\n\n"):
            end = case.raw.find(cut)
            header = case.raw[: end + len(cut)] if end >= 0 else case.raw
            seen.add(plain_header_block(header))
            assert plain_header_block(header) == old_plain_header_block(header), name
    assert seen == {True, False}


_TYPES = st.sampled_from(
    ["text/plain", "text/html", "message/rfc822", "multipart/report", "multipart/mixed",
     "text/rfc822-headers", "application/pdf", "message/delivery-status", "multipart/reports"]
)  # fmt: skip
_STRUCTURES = st.recursive(
    _TYPES.map(lambda t: BodyPart(section="1", content_type=t)),
    lambda parts: st.tuples(_TYPES, st.lists(parts, max_size=3)).map(
        lambda item: BodyPart(section="", content_type=item[0], parts=tuple(item[1]))
    ),
    max_leaves=8,
)


@settings(max_examples=1000, deadline=None)
@given(_STRUCTURES)
def test_structure_needs_body_is_the_former_one(structure):
    assert structure_needs_body(structure) == old_structure_needs_body(structure)


def _shuffled(shipped, seed: int) -> Classifier:
    data = shipped.model_dump()
    random.Random(seed).shuffle(data["chain"])
    return Classifier(DetectionRules.model_validate(data))


def test_decide_from_headers_is_the_former_one_on_the_classify_corpus():
    cfg = config()
    analyser = Analyser(cfg)
    classifiers = [analyser.classifier, Classifier(odd_rules(cfg.rules.detection))]
    classifiers += [_shuffled(cfg.rules.detection, seed) for seed in range(6)]
    limits = cfg.settings.limits
    decided = 0
    nested = BodyPart(section="", content_type="multipart/mixed", parts=(
        BodyPart(section="1", content_type="text/plain"),
        BodyPart(section="2", content_type="message/rfc822"),
    ))  # fmt: skip
    for index, (name, case) in enumerate(raw_cases()):
        end = case.raw.find(b"\r\n\r\n")
        header = case.raw[: end + 4] if end >= 0 else case.raw
        head = read_head(header, size=len(case.raw), limits=limits).mail
        mail = parse_message(case.raw, limits=limits)
        ctx = analyser._context(MAILBOXES[index % 2])
        for classifier in classifiers:
            for structure in (_structure(mail), nested):
                args = {"structure": structure, "classifier": classifier, "ctx": ctx}
                found = decide_from_headers(head, **args)
                assert found == old_decide_from_headers(head, **args), name
                decided += found is not None
    assert decided > 100  # not vacuous: many are decided, by several chains


def old_declared_content_type(fields) -> str:
    item = headers._first(fields, "content-type")
    if item is None:
        return "text/plain"
    text = headers._header_text(headers._unfold(item.value[: headers._MAX_MIME_HEADER]))[0]
    return headers._clean_content_type(text.split(";", 1)[0])


_TYPE_VALUES = st.sampled_from(
    [b"text/plain; charset=utf-8", b"TEXT/Plain", b" multipart/mixed;\r\n boundary=x", b"",
     b"text/\xe9", b"\xe2\x84\xaaext/plain", b"a/b" * 400, b"text/plain\r\n\t; x=y", b";"]
) | st.binary(max_size=30)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Content-Type", "content-TYPE", "X"]), _TYPE_VALUES)))
def test_declared_content_type_is_the_former_one(items):
    fields = tuple(headers._new_field(name, value, b"") for name, value in items)
    for _ in range(2):  # cold, then kept
        assert headers._declared_content_type(fields) == old_declared_content_type(fields)


# --------------------------------------------------------------------------
# _quiet_libraries, against the generator it was


@contextlib.contextmanager
def old_quiet_libraries(report):
    token = report_module._QUIET.set(True)
    try:
        with report_module._WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        report_module._QUIET.reset(token)
    for item in caught[:10]:
        report.warn(f"library warning: {item.category.__name__}: {item.message}")


def _quietly(quiet, emitted: int, fail: bool) -> tuple:
    report = _Report()
    filters = list(warnings.filters)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("mailparser")
    logger.addHandler(handler)
    raised = None
    try:
        with quiet(report):
            assert report_module._QUIET.get() is True
            for n in range(emitted):
                warnings.warn(
                    f"odd {n % 12}", UserWarning if n % 2 else DeprecationWarning, stacklevel=2
                )
            logger.warning("dropped")
            if fail:
                raise ValueError("inside")
    except ValueError as exc:
        raised = str(exc)
    try:
        logger.warning("kept")
    finally:
        logger.removeHandler(handler)
    lock_free = report_module._WARNINGS_LOCK.acquire(blocking=False)
    if lock_free:
        report_module._WARNINGS_LOCK.release()
    state = (report_module._QUIET.get(), warnings.filters == filters, lock_free)
    return report.result(), report.over_limits, records, raised, state


@pytest.mark.parametrize("emitted", [0, 1, 3, 15])
@pytest.mark.parametrize("fail", [False, True])
def test_quiet_libraries_is_the_former_generator(emitted, fail):
    ours = _quietly(report_module._quiet_libraries, emitted, fail)
    assert ours == _quietly(old_quiet_libraries, emitted, fail)
    assert ours[2] == ["kept"] and ours[4] == (False, True, True)
    assert len(ours[0]) == (0 if fail else min(emitted, 10))
