"""Memory shape of the big-message paths: facts that do not depend on timing.

- ``parse_message`` leaves long base64 bodies out of the stdlib parser and
  decodes them window by window from the raw bytes: the result is the same
  as with every line fed to the parser (checked on the hostile corpus and on
  mutated candidatures, with the elision forced on every run of base64-looking
  lines), and the Python memory it allocates stays below the message's size.
- ``header_block`` gives the header-only parser what it needs (the same
  header fields as the whole message) without the body.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import gc
import io
import os
import tracemalloc

import pytest
from hypothesis import given

from bench.memory import big_pdf
from parsers.documents import pdf_forms
from parsers.mail import header_block, parse_message
from parsers.mail import structure as mail_structure
from tests.fixtures.hostile_mail import CASES
from tests.fixtures.mail import as_bytes, make_mail
from tests.fixtures.mutations import LIMITS, PROPERTY_SETTINGS, SEEDS, mutated, parsed_fields


def _both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    with monkeypatch.context() as patch:
        patch.setattr(mail_structure, "_ELIDE_MIN_BYTES", 1 << 62)
        plain = parsed_fields(raw)
    with monkeypatch.context() as patch:
        patch.setattr(mail_structure, "_ELIDE_MIN_BYTES", 1)
        elided = parsed_fields(raw)
    return plain, elided


def _b64_part(name: str, data: bytes, *, crlf: bool = False) -> bytes:
    body = base64.encodebytes(data)
    if crlf:
        body = body.replace(b"\n", b"\r\n")
    return (
        b"Content-Type: application/octet-stream; name=" + name.encode() + b"\n"
        b"Content-Transfer-Encoding: base64\n\n" + body
    )


def _multipart(parts: list[bytes], *, epilogue: bytes = b"") -> bytes:
    head = (
        b"From: a@example.org\nTo: b@example.org\nSubject: s\nMessage-ID: <m@x>\n"
        b"Date: Tue, 24 Nov 2026 10:00:00 +0100\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="zz"\n\npreamble\n'
    )
    body = b"".join(b"--zz\n" + part + b"\n" for part in parts)
    return head + body + b"--zz--\n" + epilogue


# Bodies the fast path must hand back to the stdlib (or decode the same way).
ODD_BODIES = {
    "bad padding": b"QUJD\nRA\n",
    "padding in the middle": b"QQ==\nQUJD\n",
    "stray characters": b"QUJD\nR*VG\n",
    "length 4n+1": b"QUJDR\n",
    "only padding": b"====\n",
    "qp-looking": b"abc=\ndef=\n",
    "8-bit": b"QUJD\n\xe9\xe9\xe9\xe9\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_eliding_base64_runs_changes_nothing_on_hostile_input(name, monkeypatch):
    plain, elided = _both_ways(CASES[name](), monkeypatch)
    assert elided == plain


@pytest.mark.parametrize("name", list(ODD_BODIES))
@pytest.mark.parametrize("encoding", ["base64", "7bit", "quoted-printable"])
def test_eliding_odd_bodies_changes_nothing(name, encoding, monkeypatch):
    body = ODD_BODIES[name]
    part = (
        b"Content-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\n\n" + body
    )
    attached = part.replace(b"text/plain;", b"application/pdf; name=x.pdf;")
    raw = _multipart([part, attached, _b64_part("y.bin", os.urandom(3000), crlf=True)])
    plain, elided = _both_ways(raw, monkeypatch)
    assert elided == plain


def test_eliding_keeps_structure_in_preamble_epilogue_and_bare_messages(monkeypatch):
    blob = base64.encodebytes(os.urandom(5000))
    raws = [
        _multipart([_b64_part("a.bin", os.urandom(4000))], epilogue=blob),
        _multipart([_b64_part("a.bin", os.urandom(4000))]).replace(b"preamble\n", blob),
        # A part whose headers run straight into base64 (no blank line).
        _multipart([_b64_part("a.bin", os.urandom(4000)).replace(b"base64\n\n", b"base64\n")]),
        # No headers at all, and a single-part base64 message.
        blob,
        b"Content-Transfer-Encoding: base64\nContent-Type: application/pdf\n\n" + blob,
        # Old Mac line ends.
        _multipart([_b64_part("a.bin", os.urandom(4000))]).replace(b"\n", b"\r"),
    ]
    for raw in raws:
        plain, elided = _both_ways(raw, monkeypatch)
        assert elided == plain


@PROPERTY_SETTINGS
@given(mutated())
def test_eliding_changes_nothing_on_mutated_candidatures(raw):
    with pytest.MonkeyPatch.context() as patch:
        plain, elided = _both_ways(raw, patch)
    assert elided == plain


def test_seeds_are_read_the_same_with_and_without_elision(monkeypatch):
    for raw in SEEDS:
        plain, elided = _both_ways(raw, monkeypatch)
        assert elided == plain


def big_message(megabytes: int = 20) -> bytes:
    annex = os.urandom(megabytes * 2**20)
    msg = make_mail(
        subject="Candidature avec annexe",
        sender="Porteur <porteur@example.org>",
        body="Bonjour,\n\nvoici le dossier et une annexe.",
        attachments=[
            ("dossier.txt", "Intitulé : Potager".encode(), "text/plain"),
            ("annexe.pdf", annex, "application/pdf"),
        ],
    )
    return as_bytes(msg)


def test_parsing_a_20_mb_attachment_allocates_less_than_the_message():
    raw = big_message()
    tracemalloc.start()
    try:
        parsed = parse_message(raw, limits=LIMITS)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    annex = parsed.attachments[-1]
    assert annex.size == 20 * 2**20 and len(annex.data) == annex.size
    assert not parsed.over_limits and not parsed.warnings
    # The decoded annex (0.73 of the message) plus windows of 1 MB; the stdlib
    # path allocated 5.5 times the message (lines, joined str, two copies).
    assert peak < 1.0 * len(raw), peak / len(raw)


def test_a_parsed_message_is_freed_without_waiting_for_the_garbage_collector():
    """Nothing of a parse is left in a reference cycle that holds the raw message.

    The MIME parse keeps the raw bytes (the elided base64 runs are decoded
    from them) while it runs; a cycle left behind kept them, 34 MB for the
    25 MB annex of ``bench.memory``, until the next collection, which came
    after the sandbox child had read the annex: the whole tree's peak.
    """
    raw = big_message(megabytes=2)
    gc.collect()
    gc.disable()
    try:
        parsed = parse_message(raw, limits=LIMITS)
        assert parsed.attachments[-1].size == 2 * 2**20
        left = [
            o
            for o in gc.get_objects()
            if isinstance(o, mail_structure._Elided | mail_structure._Budget | mail_structure._Part)
        ]
    finally:
        gc.enable()
    assert left == []


def _headers_of(raw: bytes) -> list[tuple[str, str]]:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    return [(name, str(value)) for name, value in parser.parsebytes(raw).items()]


@pytest.mark.parametrize("name", list(CASES))
def test_header_block_has_the_headers_of_the_whole_message(name):
    raw = CASES[name]()
    assert _headers_of(header_block(raw)) == _headers_of(raw)


def test_header_block_of_candidatures_and_a_big_message():
    for raw in [*SEEDS, big_message(1)]:
        block = header_block(raw)
        assert len(block) < 2000
        assert _headers_of(block) == _headers_of(raw)


def test_reading_a_pdf_form_does_not_copy_the_file():
    data = big_pdf(8)
    tracemalloc.start()
    try:
        fields, _widgets, info = pdf_forms._pdf_form(data, "annexe.pdf")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.page_count == 1 and not info.warnings and fields == {}
    # io.BytesIO made pypdf copy the whole file (getbuffer() unshares it).
    assert peak < 0.25 * len(data), peak / len(data)


def test_pypdf_reads_through_the_stream_as_through_bytesio():
    from pypdf import PdfReader

    data = big_pdf(1)
    ours = pdf_forms._zero_copy_stream(data)
    assert ours.read(8) == data[:8]
    assert ours.seek(-5, os.SEEK_END) == len(data) - 5 and ours.read() == data[-5:]
    assert (
        ours.seek(3) == 3
        and ours.tell() == 3
        and ours.readline() == data[3 : data.index(b"\n", 3) + 1]
    )
    for offset, whence in [(-5, os.SEEK_SET), (-5, os.SEEK_CUR), (-(10**6), os.SEEK_END), (5, 2)]:
        moved, reference = pdf_forms._zero_copy_stream(data), io.BytesIO(data)
        moved.read(3), reference.read(3)
        try:
            expected = (reference.seek(offset, whence), reference.read(4))
        except ValueError:
            with pytest.raises(ValueError):
                moved.seek(offset, whence)
        else:
            assert (moved.seek(offset, whence), moved.read(4)) == expected
    via_stream = PdfReader(pdf_forms._zero_copy_stream(data), strict=False)
    via_bytesio = PdfReader(io.BytesIO(data), strict=False)
    assert len(via_stream.pages) == len(via_bytesio.pages) == 1
    assert via_stream.pages[0].extract_text() == via_bytesio.pages[0].extract_text() != ""
