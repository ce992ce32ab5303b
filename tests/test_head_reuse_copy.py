"""The draft a whole message carries on with after its header stage (``_Draft.carried_on``).

``parse_message`` given the first pass's ``HeadReading`` copies the header
stage's draft; ``carried_on`` gives what ``dataclasses.replace`` gave: the
same values, the same objects for every field but the header map and the
attachment list, which are the copy's own. Compared on the golden, hostile,
seed and everyday mail; the whole reading with and without the header
stage is compared end to end by ``tests/test_head_speed*.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from parsers.mail import read_head
from tests.fixtures.head_corpus import CORPUS
from tests.fixtures.mutations import LIMITS


def _heads() -> dict[str, object]:
    heads = {}
    for name, raw in CORPUS.items():
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            continue
        heads[name] = (read_head(raw[: end + 4], size=len(raw), limits=LIMITS), raw)
    return heads


HEADS = _heads()


@pytest.mark.parametrize("name", sorted(HEADS))
def test_carried_on_is_replace(name: str) -> None:
    head, raw = HEADS[name]
    draft = head.draft
    before = dataclasses.asdict(draft)
    sha = "f" * 64
    new = draft.carried_on(sha256=sha, size=len(raw))
    old = dataclasses.replace(
        draft, sha256=sha, size=len(raw), headers=dict(draft.headers), attachments=[]
    )
    assert type(new) is type(old)
    assert new == old
    assert vars(new).keys() == vars(old).keys()
    for field in dataclasses.fields(old):
        mine, theirs = getattr(new, field.name), getattr(old, field.name)
        assert mine == theirs, field.name
        if field.name in ("headers", "attachments"):
            assert mine is not getattr(draft, field.name), field.name
        elif field.name not in ("sha256", "size"):
            assert mine is getattr(draft, field.name), field.name
    # What the whole reading does to its copy leaves the header stage as it was.
    new.headers["x-added"] = ("1",)
    new.attachments.append(object())
    new.text = "changed"
    new.content_types = ("text/plain",)
    assert dataclasses.asdict(draft) == before


def test_the_corpus_has_headers() -> None:
    assert len(HEADS) > 20
    assert all(head.draft.headers for head, _raw in HEADS.values())
