"""What a candidature still lacks, and what each attachment is.

A candidature is complete when the dossier d'intention and the official
letter are there and every required field has a value (``[fields.*]`` of
``config/rules.toml``, described in ``docs/admin.md``). ``missing_pieces``
names what is not, in the stable codes of the JSON output (``dossier``,
``letter``, ``field:KEY``); ``describe_missing`` turns them into the French
wording of the notice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from parsers.documents import DocumentText

if TYPE_CHECKING:
    from parsers.rules import Rules

DOSSIER = "dossier"
LETTER = "letter"
FIELD_PREFIX = "field:"
# Pictures smaller than this are logos and signature images in mail footers.
SMALL_IMAGE_BYTES = 10 * 1024
ROLES = ("dossier", "letter", "supporting", "ignored")


def _has_value(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str | list | tuple | dict | set):
        return bool(value)
    return True


def is_required(key: str, fields: Mapping[str, Any], rules: Rules) -> bool:
    """Whether field ``key`` must have a value, given the other fields' values."""
    rule = rules.fields[key]
    if rule.required_when:
        return all(fields.get(other) == value for other, value in rule.required_when.items())
    return rule.required


def missing_pieces(
    *, fields: Mapping[str, Any], dossier_present: bool, letter_present: bool, rules: Rules
) -> tuple[str, ...]:
    """``dossier``, ``letter``, then ``field:KEY`` per required field without a value.

    Fields are only checked when a dossier is present: without one, "the
    dossier" already says everything and a list of every field would bury it.
    """
    missing: list[str] = []
    if not dossier_present:
        missing.append(DOSSIER)
    if not letter_present:
        missing.append(LETTER)
    if dossier_present:
        for key in rules.fields:
            if is_required(key, fields, rules) and not _has_value(fields.get(key)):
                missing.append(f"{FIELD_PREFIX}{key}")
    return tuple(missing)


def describe_missing(missing: Sequence[str], *, rules: Rules) -> list[str]:
    """The French wording of each missing piece, for the notice to the applicant."""
    out: list[str] = []
    for code in missing:
        if code == DOSSIER:
            out.append(rules.pieces.dossier_notice)
        elif code == LETTER:
            out.append(rules.letter.notice)
        elif code.startswith(FIELD_PREFIX) and code[len(FIELD_PREFIX) :] in rules.fields:
            out.append(rules.fields[code[len(FIELD_PREFIX) :]].notice_text)
        else:
            out.append(code)
    return out


def _negligible(doc: DocumentText, small_image_bytes: int) -> bool:
    if doc.kind == "image":
        return doc.size < small_image_bytes
    return doc.kind == "other" and doc.detected in ("empty", "binary")


def attachment_roles(
    documents: Sequence[DocumentText],
    *,
    dossier_sha256: str | None,
    letter_sha256: str | None,
    small_image_bytes: int = SMALL_IMAGE_BYTES,
) -> dict[str, str]:
    """sha256 -> ``dossier``, ``letter``, ``supporting`` or ``ignored``.

    A letter that is a page of the dossier's PDF leaves that file a dossier.
    Tiny pictures (logos, signatures) and empty or unknown files are ignored;
    anything else that could not be read stays ``supporting`` so staff see it.
    """
    roles: dict[str, str] = {}
    for doc in documents:
        if doc.sha256 == dossier_sha256:
            role = "dossier"
        elif doc.sha256 == letter_sha256:
            role = "letter"
        elif _negligible(doc, small_image_bytes):
            role = "ignored"
        else:
            role = "supporting"
        # The same file attached twice keeps its strongest role.
        if roles.get(doc.sha256) in ("dossier", "letter"):
            continue
        roles[doc.sha256] = role
    return roles
