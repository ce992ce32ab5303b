"""The BODYSTRUCTURE reader against its frozen reference, on real Dovecot answers.

``parsers/mail/bodystructure.py`` tokenizes the FETCH answer with one regular
expression pass and ``json.loads`` (C) instead of a Python loop per token.
``tests/fixtures/bodystructure_reference.py`` is the reader as it was before;
both must give the same ``FetchedStructure`` lists, field by field, on what a
real Dovecot answers for everyday, candidature-like and hostile mail, and the
same result or the same refusal (``BodyStructureError``, same message) on
thousands of deterministic mutations of those answers.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from bench.harness import everyday_messages
from parsers.mail import bodystructure as fast
from tests.fixtures import bodystructure_reference as reference
from tests.fixtures import faults as f
from tests.fixtures.hostile_mail import CASES
from tests.fixtures.mail import as_bytes, forward_as_attachment, make_mail

NB = "n.bataillon"
# What MailboxClient.fetch_structures asks for, in batches as config/mailbot.toml's fetch_batch.
FETCH_ITEMS = "(UID RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER])"
BATCH = 50


def _attachments_mails() -> list[bytes]:
    """Candidature-like mail: attachments with 8-bit and long names, nested forwards."""
    names = [
        "dossier.pdf",
        "Lettre à Monsieur le Maire (version définitive) – été 2026.pdf",
        'guillemets "et" \\ barre.txt',
        "x" * 120 + ".docx",
        "日本語の書類.pdf",
    ]
    out = []
    for i, name in enumerate(names):
        mail = make_mail(
            subject=f"Candidature n°{i} – label",
            sender="Chloé Dupont <chloe@asso-perroy.fr>",
            html="<p>Bonjour</p>" if i % 2 else None,
            attachments=[
                (name, b"%PDF-1.4 " * 40, "application/pdf"),
                ("annexe.txt", "Intitulé : Potager".encode(), "text/plain"),
            ],
        )
        out.append(as_bytes(mail))
        inner = mail
        for depth in range(1, 4):
            inner = forward_as_attachment(
                inner, sender=f"Relais {depth} <relais{depth}@asso.fr>", filename=f"fwd{depth}.eml"
            )
            out.append(as_bytes(inner))
    out += [f.candidature(n).raw for n in range(1, 6)]
    return out


def corpus_messages(everyday: int) -> list[bytes]:
    """Everyday mail, candidature-like mail and every hostile case, as raw messages."""
    return (
        everyday_messages(everyday) + _attachments_mails() + [build() for build in CASES.values()]
    )


def capture_answers(server, messages: list[bytes]) -> list[list]:
    """The raw imaplib ``data`` of each first-pass FETCH over ``messages``, delivered to ``server``.

    ``server`` is a started ``DovecotServer`` (tests/fixtures/dovecot.py); bench and
    measurement scripts may call this on their own throwaway one.
    """
    server.fill_maildir(NB, messages)
    answers = []
    with server.mailbox_client(NB) as box:
        typ, data = box.client.uid("SEARCH", None, "ALL")
        assert typ == "OK"
        uids = [int(u) for u in data[0].split()]
        assert len(uids) == len(messages)
        for start in range(0, len(uids), BATCH):
            uid_set = ",".join(str(u) for u in uids[start : start + BATCH])
            typ, data = box.client.uid("FETCH", uid_set, FETCH_ITEMS)
            assert typ == "OK"
            answers.append(list(data))
    return answers


@pytest.fixture(scope="module")
def answers(dovecot_server):
    """First-pass FETCH answers of real Dovecot over the corpus (batches of ``BATCH``)."""
    dovecot_server.reset()
    try:
        return capture_answers(dovecot_server, corpus_messages(300))
    finally:
        dovecot_server.reset()


def _single_messages(answers: list[list]) -> list[list]:
    """Each message's part of the answers (its literal tuple and closing ``)``), as one answer."""
    out = []
    for data in answers:
        current: list = []
        for item in data:
            current.append(item)
            if isinstance(item, bytes) and item.endswith(b")"):
                out.append(current)
                current = []
        if current:
            out.append(current)
    return out


def _plain(value: object) -> object:
    """Results as plain comparable data: dataclasses by class name and fields, NIL by name."""
    if dataclasses.is_dataclass(value):
        names = [field.name for field in dataclasses.fields(value)]
        assert list(vars(value)) == names, "instance dict not as the dataclass constructor sets it"
        return (type(value).__name__, tuple((n, _plain(getattr(value, n))) for n in names))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_plain(item) for item in value))
    if isinstance(value, dict) or type(value).__name__ == "mappingproxy":
        return (type(value).__name__, tuple((k, _plain(v)) for k, v in value.items()))
    if value is fast.NIL or value is reference.NIL:
        return "NIL"
    return (type(value).__name__, value)


def _outcome(function, data: list) -> object:
    try:
        return ("ok", _plain(function(data)))
    except Exception as err:  # a ValueError escapes the reference too ("²" as a size)
        return ("raised", type(err).__name__, str(err))


def _as_general(value: object) -> object:
    """A fast-path token tree in ``_values``' terms: latin-1 str to bytes, None to NIL."""
    if isinstance(value, list):
        return [_as_general(item) for item in value]
    if value is None:
        return fast.NIL
    return value.encode("latin-1") if isinstance(value, str) else value


def _tokens_agree(data: list) -> bool:
    """The fast tokenizer gives ``_values``' tokens or steps aside; True unless it stepped aside."""
    try:
        text, literals = fast._join(data)
    except fast.BodyStructureError:
        return False  # refused before any tokenizer runs
    quick = fast._fast_values(text, literals)
    try:
        general = fast._values(text, literals)
    except fast.BodyStructureError:
        assert quick is None, (text[:200], "fast path read what the general path refuses")
        return False
    if quick is None:
        return False
    assert _plain(_as_general(quick)) == _plain(general), text[:200]
    return True


def test_dovecot_answers_read_as_the_reference_reads_them(answers):
    assert len(answers) >= 7
    read = 0
    for data in answers:
        mine, theirs = (
            _outcome(fast.fetched_structures, data),
            _outcome(reference.fetched_structures, data),
        )
        assert mine == theirs
        assert mine[0] == "ok"
        read += len(mine[1][1])
        assert _tokens_agree(data), "the fast tokenizer stepped aside on a real answer"
        assert _outcome(fast.parse_fetch_responses, data) == _outcome(
            reference.parse_fetch_responses, data
        )
    assert read == 300 + len(_attachments_mails()) + len(CASES)


_INSERTS = [
    b"(",
    b")",
    b"((",
    b"))",
    b'"',
    b'\\"',
    b"\\",
    b"\\\\",
    b"{",
    b"}",
    b"{5}",
    b"[",
    b"]",
    b"[HEADER]",
    b"NIL",
    b"nil",
    b"Nil",
    b" ",
    b"\r\n",
    b"\x00",
    b"\x01",
    b"\x0b",
    b"\xc3",
    b"\xb2",
    b'""',
    b'"NIL"',
    b'"\x00"',
    b"NaN",
    b"null",
    b"[1]",
    b'","',
    b"\\u0041",
    b'a"b"',
]


def _mutate(data: list, rng: random.Random) -> list:
    """One deterministic, random-looking breakage of an imaplib answer."""
    data = list(data)
    index = rng.randrange(len(data))
    item = data[index]
    head, literal = item if isinstance(item, tuple) else (item, None)
    kind = rng.randrange(9)
    at = rng.randrange(len(head) + 1)
    if kind == 0:
        head = head[:at] + bytes([rng.randrange(256)]) + head[at + 1 :]
    elif kind in (1, 2, 3):
        head = head[:at] + rng.choice(_INSERTS) + head[at:]
    elif kind == 4:
        head = head[:at] + head[at + rng.randrange(1, 20) :]
    elif kind == 5:
        head = head[:at]
    elif kind == 6:
        data = data[: rng.randrange(len(data) + 1)]
        return data or [b""]
    elif kind == 7:
        head = head.replace(b"BODYSTRUCTURE (", b"BODYSTRUCTURE " + b"(" * _depth(rng) + b"(")
        head = head.replace(b" BODY[HEADER]", b")" * _depth(rng) + b" BODY[HEADER]")
    else:
        digits = [i for i, byte in enumerate(head) if 0x30 <= byte <= 0x39]
        if digits:
            at = rng.choice(digits)
            head = (
                head[:at] + rng.choice([b"\xc2\xb2", b"\xb2", b"\xd9\xa3", b"0"]) + head[at + 1 :]
            )
    data[index] = (head, literal) if literal is not None else head
    return data


def _depth(rng: random.Random) -> int:
    """Extra nesting around the limits (``_MAX_DEPTH`` 200) and well inside them."""
    return rng.choice([1, 3, 30, 31, 32, 33, 150, 198, 199, 200, 201, 202, 260])


def test_broken_answers_are_read_or_refused_as_the_reference_does(answers):
    singles = _single_messages(answers)
    rng = random.Random(20261203)
    outcomes = {"ok": 0, "raised": 0, "fast": 0}
    for _ in range(6000):
        data = _mutate(rng.choice(singles), rng)
        if rng.random() < 0.3:
            data = _mutate(data, rng)
        mine = _outcome(fast.fetched_structures, data)
        assert mine == _outcome(reference.fetched_structures, data), data
        outcomes[mine[0]] += 1
        outcomes["fast"] += _tokens_agree(data)
    # Not vacuous: many mutations are read, many refused, most by the fast tokenizer.
    assert min(outcomes.values()) > 1000, outcomes


def test_parts_built_directly_are_those_the_constructor_builds(answers):
    assert fast._DIRECT_PARTS
    for item in fast.fetched_structures(answers[-1]):
        for part in item.structure.walk():
            again = fast.BodyPart(
                **{f.name: getattr(part, f.name) for f in dataclasses.fields(part)}
            )
            assert part == again and vars(part) == vars(again)
            with pytest.raises(dataclasses.FrozenInstanceError):
                part.size = 1  # type: ignore[misc]
