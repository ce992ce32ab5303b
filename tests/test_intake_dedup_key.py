"""``quick_dedup_key`` hashes a message only when its key needs the hash.

The first pass reads the key of every header block and of every message
fetched whole; a usable Message-ID makes the key by itself, so the SHA-256
of the bytes is computed only for a message without one (``_key_for``).
The keys are those of the former definition, kept here, on the golden,
hostile, seed and everyday mail, their header blocks, and Message-IDs of
every shape (none, empty, blank, bracketed only, very long, 8-bit, folded,
twice), with LF and CRLF line ends.
"""

from __future__ import annotations

import hashlib

import pytest

from mailbot import intake
from mailbot.intake import quick_dedup_key
from parsers.mail import header_block, read_headers
from storage.models import dedup_key_for
from tests.fixtures.head_corpus import CORPUS
from tests.fixtures.polls import mixed_mailbox


def former_quick_dedup_key(raw: bytes) -> str:
    """``quick_dedup_key`` as it was: the SHA-256 of ``raw`` always computed."""
    end = intake._HEAD_END.search(raw)
    head = raw[: end.start() + 1] if end else raw
    sha = hashlib.sha256(raw).hexdigest()
    if not intake._FIELD_START.match(head) or b"\r" in head.replace(b"\r\n", b""):
        source = raw if len(raw) <= intake._WHOLE_PARSE_LIMIT else header_block(raw)
        message_id = read_headers(source).get("Message-ID")
        return dedup_key_for(str(message_id) if message_id else None, sha)
    found = intake._MESSAGE_ID_FIELD.search(head)
    value = found.group(1).decode("ascii", "replace").strip() if found else ""
    return dedup_key_for(value or None, sha)


_IDS = [
    None,
    b"",
    b" ",
    b"<>",
    b"< >",
    b"<abc@example.org>",
    b"  <ABC@Example.ORG>  (a comment)",
    b"abc@example.org",
    b"<" + b"x" * 3000 + b"@example.org>",
    b"<caf\xc3\xa9@example.org>",
    b"<folded@\r\n example.org>",
    b"\r\n <only-folded@example.org>",
]


def _message(message_id: bytes | None, *, crlf: bool, twice: bool = False) -> bytes:
    lines = [b"From: a@example.org", b"Subject: test"]
    if message_id is not None:
        lines.append(b"Message-ID: " + message_id)
        if twice:
            lines.append(b"Message-ID: <second@example.org>")
    raw = b"\r\n".join(lines) + b"\r\n\r\nBody\r\n"
    return raw if crlf else raw.replace(b"\r\n", b"\n")


def _mails() -> dict[str, bytes]:
    mails = dict(CORPUS)
    mails.update({f"mixed:{n}": raw for n, raw in enumerate(mixed_mailbox())})
    for n, message_id in enumerate(_IDS):
        for crlf in (True, False):
            for twice in (False, True):
                mails[f"id:{n}:{crlf}:{twice}"] = _message(message_id, crlf=crlf, twice=twice)
    # Header blocks alone, as the first pass fetches them.
    for name, raw in list(mails.items()):
        end = raw.find(b"\r\n\r\n")
        if end >= 0:
            mails[f"header:{name}"] = raw[: end + 4]
    # Odd starts and lone CRs (the stdlib path), with and without a Message-ID.
    mails["odd-start"] = b" folded\r\nMessage-ID: <x@y>\r\n\r\nbody"
    mails["lone-cr"] = b"Message-ID: <x@y>\rSubject: a\r\n\r\nbody"
    mails["lone-cr-no-id"] = b"Subject: a\rX: b\r\n\r\nbody"
    mails["no-header"] = b"just a body"
    return mails


MAILS = _mails()


@pytest.mark.parametrize("name", sorted(MAILS))
def test_the_key_is_the_former_one(name: str) -> None:
    raw = MAILS[name]
    assert quick_dedup_key(raw) == former_quick_dedup_key(raw)


def test_both_kinds_of_keys_are_compared() -> None:
    """Not a vacuous comparison: Message-ID keys, long ones and hash keys all occur."""
    keys = [quick_dedup_key(raw) for raw in MAILS.values()]
    assert {key.split(":", 1)[0] for key in keys} == {"mid", "mid-sha", "sha"}
