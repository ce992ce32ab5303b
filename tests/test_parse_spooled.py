"""``parse_spooled`` reads a message from its file as ``parse_message`` reads its bytes.

The spooled reading parses a skeleton (the long base64 runs left in the
file) and decodes a big attachment straight into a file of the spool. These
tests compare it with ``parse_message`` on the test corpora (golden, hostile,
seeds, everyday, with the thresholds lowered so that every run is elided and
every attachment decoded to a file) and on big messages made for the odd
cases; then they measure with tracemalloc that neither the message nor the
attachment is held whole.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import hashlib
import io
import os
import tracemalloc
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from parsers.mail import bounds, parse_message, parse_spooled, read_head, structure
from parsers.mail import spooled as spooled_module
from parsers.rules import ParseLimits
from parsers.types import ParsedMail, SpooledData
from tests.fixtures.head_corpus import CORPUS
from tests.fixtures.mutations import LIMITS

ANNEX = os.urandom(3 << 20)


class _Spool:
    """Numbered files in a directory, as ``mailbot.pipeline`` makes them beside the message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: list[Path] = []

    def __call__(self) -> Path:
        path = self.directory / f"message.eml.part{len(self.made)}"
        self.made.append(path)
        return path


def _comparable(mail: ParsedMail) -> ParsedMail:
    """The reading with each spooled attachment's bytes read from its file."""
    attachments = tuple(
        dataclasses.replace(a, data=a.data.path.read_bytes())
        if isinstance(a.data, SpooledData)
        else a
        for a in mail.attachments
    )
    return dataclasses.replace(mail, attachments=attachments)


def _both(
    raw: bytes, tmp_path: Path, *, head: bool = False, limits: ParseLimits = LIMITS
) -> tuple[ParsedMail, ParsedMail]:
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    spool = _Spool(tmp_path)
    reading = None
    if head:
        end = raw.find(b"\r\n\r\n")
        reading = read_head(raw[: end + 4], size=len(raw), limits=limits)
    memory = parse_message(raw, limits=limits, head=reading)
    spooled = parse_spooled(path, limits=limits, head=reading, spool=spool)
    files = [a.data.path for a in spooled.attachments if isinstance(a.data, SpooledData)]
    assert sorted(files) == sorted(p for p in spool.made if p.exists())
    return memory, spooled


@pytest.fixture(params=[1 << 20, 4096, 77], ids=["1MiB-reads", "4KiB-reads", "77B-reads"])
def everything_elided(monkeypatch, request):
    """Every file read through a skeleton, every base64 run elided, every decode to a file.

    The file is read in blocks of 1 MiB (as shipped), 4 KiB or 77 bytes (shorter
    than many lines): runs go on across many block edges.
    """
    monkeypatch.setattr(spooled_module, "_READ", request.param)
    monkeypatch.setattr(spooled_module, "SKELETON_MIN_BYTES", 1)
    monkeypatch.setattr(spooled_module, "_ELIDE_MIN_BYTES", 1)
    monkeypatch.setattr(structure, "_ELIDE_MIN_BYTES", 1)
    monkeypatch.setattr(bounds, "SPOOL_DECODED_BYTES", 1)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_corpus_reads_the_same_from_the_spool(name, tmp_path, everything_elided) -> None:
    raw = CORPUS[name]
    if not raw:
        pytest.skip("empty: refused alike by both (tested below)")
    memory, spooled = _both(raw, tmp_path)
    assert _comparable(spooled) == memory
    if b"\r\n\r\n" in raw:
        memory, spooled = _both(raw, tmp_path, head=True)
        assert _comparable(spooled) == memory


def test_the_lowered_thresholds_reach_the_spooled_paths(tmp_path, everything_elided) -> None:
    """The corpus comparison goes through skeletons and decodes to files (it can fail)."""
    spooled_files = 0
    skeletons = 0
    for raw in CORPUS.values():
        if not raw:
            continue
        directory = tmp_path / str(skeletons)
        directory.mkdir()
        _memory, spooled = _both(raw, directory)
        skeletons += 1
        spooled_files += sum(isinstance(a.data, SpooledData) for a in spooled.attachments)
    assert skeletons > 50 and spooled_files >= 20, (skeletons, spooled_files)


# Attachments over 2 MiB dropped: the annex, not the message, goes over a limit.
SMALL_ATTACHMENTS = LIMITS.model_copy(update={"max_attachment_bytes": 2 << 20})


def _big(
    *, annex: bytes = ANNEX, name: str = "annexe.bin", linesep: str = "\r\n", **extra
) -> bytes:
    message = EmailMessage()
    message["From"] = "Porteur <porteur@example.org>"
    message["To"] = "n.bataillon@ville-bethune.fr"
    message["Subject"] = "Candidature au label Béthune Smart City"
    message["Message-ID"] = "<big@example.org>"
    message.set_content("Bonjour,\n\nVoici notre dossier.\n")
    message.add_attachment(annex, maintype="application", subtype="octet-stream", filename=name)
    for filename, data in extra.items():
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message.as_bytes(policy=message.policy.clone(linesep=linesep))


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _defective(raw: bytes) -> bytes:
    """Padding in the middle of the annex's base64: the stdlib's reading decides."""
    start = raw.index(b'filename="annexe.bin"')
    sep = b"\r\n" if b"\r\n" in raw else b"\n"
    body = raw.index(sep + sep, start) + 2 * len(sep)
    cut = raw.index(sep, body + 40_000)
    return raw[: cut - 4] + b"AA==" + raw[cut:]


def _forwarded() -> bytes:
    """Staff forward the applicant's message as an attachment (message/rfc822)."""
    inner = email.message_from_bytes(_big(), policy=email.policy.default)
    outer = EmailMessage()
    outer["From"] = "N. Bataillon <n.bataillon@ville-bethune.fr>"
    outer["To"] = "n.bataillon@ville-bethune.fr"
    outer["Subject"] = "TR: Candidature au label Béthune Smart City"
    outer.set_content("Pour information.\n")
    outer.add_attachment(inner)
    return outer.as_bytes(policy=outer.policy.clone(linesep="\r\n"))


BIG_CASES = {
    "forwarded as attachment": _forwarded,
    "crlf": lambda: _big(),
    "lf": lambda: _big(linesep="\n"),
    "two annexes": lambda: _big(second_pdf=os.urandom(2 << 20)),
    "small and big": lambda: _big(small_pdf=b"%PDF-1.4 tiny"),
    "zip": lambda: _big(
        annex=_zip({"a.txt": b"Intitule de l'action : Potager", "b.bin": ANNEX}), name="pieces.zip"
    ),
    "defective base64": lambda: _defective(_big()),
    "base64 lines in a 7bit part": lambda: _big().replace(
        b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: 7bit", 1
    ),
    "no final line end": lambda: _big().rstrip(b"\r\n"),
}


@pytest.mark.parametrize("case", sorted(BIG_CASES))
@pytest.mark.parametrize("limits", [LIMITS, SMALL_ATTACHMENTS], ids=["limits", "small-limit"])
@pytest.mark.parametrize("read", [1 << 20, 4093])
def test_big_messages_read_the_same_from_the_spool(case, limits, read, tmp_path, monkeypatch):
    monkeypatch.setattr(spooled_module, "_READ", read)
    raw = BIG_CASES[case]()
    assert len(raw) >= spooled_module.SKELETON_MIN_BYTES
    for head in (False, True):
        memory, spooled = _both(raw, tmp_path, head=head, limits=limits)
        assert _comparable(spooled) == memory
        assert spooled.size == len(raw) and spooled.sha256 == hashlib.sha256(raw).hexdigest()
        assert memory.attachments  # the body was read, not only the headers


def test_a_big_annex_is_decoded_into_a_file_with_its_digest(tmp_path) -> None:
    memory, spooled = _both(_big(), tmp_path)
    annex = next(a for a in spooled.attachments if a.filename == "annexe.bin")
    assert isinstance(annex.data, SpooledData)
    assert annex.data.path.read_bytes() == ANNEX
    assert annex.sha256 == annex.data.sha256 == hashlib.sha256(ANNEX).hexdigest()
    assert annex.data[:4] == ANNEX[:4] and annex.data.startswith(ANNEX[:8])
    assert next(a.data for a in memory.attachments if a.filename == "annexe.bin") == ANNEX


def test_a_defective_or_odd_annex_is_read_in_memory(tmp_path) -> None:
    """Where the stdlib's reading decides (a defect), nothing is decoded to a file."""
    _memory, spooled = _both(_defective(_big()), tmp_path)
    assert not any(isinstance(a.data, SpooledData) for a in spooled.attachments)
    assert list(tmp_path.glob("*.part*")) == []
    _memory, spooled = _both(_big(), tmp_path, limits=SMALL_ATTACHMENTS)
    assert spooled.over_limits
    assert [(a.filename, a.data, a.size) for a in spooled.attachments] == [
        ("annexe.bin", b"", len(ANNEX))
    ]
    assert list(tmp_path.glob("*.part*")) == []  # the dropped annex's file is removed


def test_the_big_cases_take_the_paths_they_are_for(tmp_path) -> None:
    """Which attachments come as files: the comparison above covers both kinds."""
    kinds = {}
    for case, build in BIG_CASES.items():
        directory = tmp_path / str(len(kinds))
        directory.mkdir()
        _memory, spooled = _both(build(), directory)
        kinds[case] = sorted(
            (a.filename, isinstance(a.data, SpooledData)) for a in spooled.attachments
        )
    assert kinds["crlf"] == kinds["lf"] == kinds["no final line end"] == [("annexe.bin", True)]
    assert kinds["two annexes"] == [("annexe.bin", True), ("second_pdf", True)]
    assert kinds["small and big"] == [("annexe.bin", True), ("small_pdf", False)]
    # The archive is read in its file; a big member is inflated into a file.
    assert kinds["zip"] == [("a.txt", False), ("b.bin", True), ("pieces.zip", True)]
    assert ("annexe.bin", True) in kinds["forwarded as attachment"]
    assert kinds["defective base64"] == [("annexe.bin", False)]
    assert kinds["base64 lines in a 7bit part"] == [("annexe.bin", False)]


def test_a_run_in_the_header_block_reads_the_file_whole(tmp_path) -> None:
    """A long base64 run before the body: the skeleton cannot stand in; same reading."""
    lines = b"".join(base64.b64encode(os.urandom(57)) + b"\r\n" for _ in range(2000))
    raw = b"Subject: odd\r\n" + lines + b"From: a@example.org\r\n\r\nBody\r\n" + _big()
    memory, spooled = _both(raw, tmp_path)
    assert _comparable(spooled) == memory


def test_an_empty_spool_file_is_refused_like_empty_bytes(tmp_path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(b"")
    with pytest.raises(Exception) as spooled:
        parse_spooled(path, limits=LIMITS, spool=_Spool(tmp_path))
    with pytest.raises(Exception) as memory:
        parse_message(b"", limits=LIMITS)
    assert type(spooled.value) is type(memory.value)
    assert str(spooled.value) == str(memory.value)


def test_neither_the_message_nor_the_annex_is_held_whole(tmp_path) -> None:
    annex = os.urandom(12 << 20)
    raw = _big(annex=annex)
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    del raw
    spool = _Spool(tmp_path)
    tracemalloc.start()
    try:
        mail = parse_spooled(path, limits=LIMITS, spool=spool)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    data = next(a.data for a in mail.attachments if a.filename == "annexe.bin")
    assert isinstance(data, SpooledData) and data.path.read_bytes() == annex
    assert peak < 6 << 20, peak
    # The measure sees a whole read: the same message parsed from its bytes.
    raw = path.read_bytes()
    tracemalloc.start()
    try:
        parse_message(raw, limits=LIMITS)
        whole_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert whole_peak >= 12 << 20


@pytest.mark.parametrize("read", [1 << 20, 4093, 77])
def test_the_skeleton_elides_the_runs_the_in_memory_parse_elides(read, monkeypatch) -> None:
    """Same runs as ``structure._elidable_runs`` on the whole bytes, whatever the reads."""
    monkeypatch.setattr(spooled_module, "_READ", read)
    monkeypatch.setattr(spooled_module, "_ELIDE_MIN_BYTES", 4096)
    monkeypatch.setattr(structure, "_ELIDE_MIN_BYTES", 4096)
    messages = [raw for raw in CORPUS.values() if raw] + [build() for build in BIG_CASES.values()]
    elided_somewhere = 0
    for raw in messages:
        elided = structure._Elided(raw)
        skeleton, lines, digest = spooled_module._skeleton(io.BytesIO(raw), elided)
        runs = list(structure._elidable_runs(raw, 0))
        assert elided.runs == runs
        expected, pos = bytearray(), 0
        for index, (start, end) in enumerate(runs):
            expected += raw[pos:start] + f"{elided.marker}{index}#".encode()
            pos = end
        assert skeleton == bytes(expected + raw[pos:])
        assert lines == raw.count(b"\n") and digest == hashlib.sha256(raw).hexdigest()
        elided_somewhere += bool(runs)
    assert elided_somewhere >= 15, elided_somewhere


def test_a_big_zip_is_expanded_without_holding_it_or_its_big_member(tmp_path) -> None:
    member = os.urandom(12 << 20)
    archive = _zip({"dossier.txt": b"Intitule de l'action : Potager", "plans.bin": member})
    raw = _big(annex=archive, name="pieces.zip")
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    del raw, archive
    tracemalloc.start()
    try:
        mail = parse_spooled(path, limits=LIMITS, spool=_Spool(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    data = {a.filename: a.data for a in mail.attachments}
    assert isinstance(data["plans.bin"], SpooledData)
    assert data["plans.bin"].path.read_bytes() == member
    assert data["dossier.txt"] == b"Intitule de l'action : Potager"
    assert peak < 6 << 20, peak


def test_a_zip_member_over_its_limit_leaves_no_file(tmp_path) -> None:
    """A member inflated past the limit into a file: refused, its file removed."""
    limits = LIMITS.model_copy(update={"max_attachment_bytes": 3 << 20})
    archive = _zip({"a.txt": b"Intitule", "big.bin": bytes(4 << 20)})  # compresses well
    raw = _big(annex=archive, name="pieces.zip")
    memory, spooled = _both(raw, tmp_path, limits=limits)
    assert _comparable(spooled) == memory
    assert all(a.filename != "big.bin" or not a.data for a in spooled.attachments)
    kept = {a.data.path for a in spooled.attachments if isinstance(a.data, SpooledData)}
    assert set(tmp_path.glob("*.part*")) == kept
