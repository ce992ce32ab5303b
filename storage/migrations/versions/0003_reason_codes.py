"""Reasons as codes: message.reason, outbox.failure_reason and outbox.suppressed_details.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Until now the service stored its reasons as English sentences (a reply's
``suppressed_reason``, a message's ``error``, a failed reply's
``last_error``) and the digest translated them with regular expressions.
From this revision a reason is a code (``parsers.reasons``) worded by
``mailbot/wording.py``; the sentences already stored are converted once,
here. A sentence this revision does not recognise is left as it is: it is
shown under a generic label.

Written by hand (data conversion); like every revision it imports no
application code, so the codes are spelled out below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_message = sa.table(
    "message",
    sa.column("id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("verdict", sa.String()),
    sa.column("reason", sa.String()),
    sa.column("error", sa.Text()),
    sa.column("rule_trace", sa.JSON()),
)
_outbox = sa.table(
    "outbox",
    sa.column("id", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("status", sa.String()),
    sa.column("to_addr", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("suppressed_reason", sa.Text()),
    sa.column("suppressed_details", sa.JSON()),
    sa.column("failure_reason", sa.String()),
    sa.column("last_error", sa.Text()),
)

# (pattern of the old sentence, code, the details it carried). The sentences
# are those written by mailbot/replies.py before this revision.
_HOLDS: tuple[tuple[re.Pattern[str], str, Callable[[re.Match[str]], dict[str, Any]]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), code, details)
    for pattern, code, details in (
        (r"^automatic replies are disabled", "replies_disabled", lambda m: {}),
        (r"^no usable sender address", "no_sender_address", lambda m: {}),
        (r"^the sender \S+ is one of our own mailboxes or staff", "recipient_is_ours", lambda m: {}),
        (
            r"^the message comes from our own address (\S+)",
            "from_our_address",
            lambda m: {"address": m[1]},
        ),
        (r"^Authentication-Results: the sender failed", "authentication_failed", lambda m: {}),
        (
            r"^Authentication-Results: the sender did not pass",
            "authentication_not_passed",
            lambda m: {},
        ),
        (r"^an? \w+ reply was already sent for \S+", "already_sent", lambda m: {}),
        (
            r"^\S+ already had (\d+) replies today \(cap (\d+)\)",
            "sender_daily_cap",
            lambda m: {"count": int(m[1]), "cap": int(m[2])},
        ),
        (
            r"^(\d+) replies in the last hour \(cap (\d+)\)",
            "hourly_cap",
            lambda m: {"count": int(m[1]), "cap": int(m[2])},
        ),
    )
)
# Prefixes of message.error before this revision, and their codes.
_ERRORS = (
    ("parse error: ", "parse_error"),
    ("analysis error: ", "analysis_error"),
    ("filing error: ", "filing_error"),
)
_UNKNOWN_DOSSIER = re.compile(r"^follow-up names an unknown dossier '?([^']*)'?$", re.DOTALL)
_GAVE_UP = re.compile(r"^gave up after \d+ attempts: (.*)$", re.DOTALL)


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("reason", sa.String(32), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("suppressed_details", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("failure_reason", sa.String(32), nullable=True))
    if op.get_context().as_sql:
        return  # offline SQL script: the rows are not there to convert
    connection = op.get_bind()
    _messages_to_codes(connection)
    _replies_to_codes(connection)


def downgrade() -> None:
    if not op.get_context().as_sql:
        connection = op.get_bind()
        _messages_to_sentences(connection)
        _replies_to_sentences(connection)
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failure_reason")
        batch.drop_column("suppressed_details")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("reason")


def _messages_to_codes(connection: sa.Connection) -> None:
    rows = connection.execute(
        sa.select(_message).where(_message.c.status.in_(("needs_review", "failed")))
    ).all()
    for row in rows:
        reason, error = _message_code(row.error, row.verdict, row.rule_trace)
        if reason is not None:
            connection.execute(
                sa.update(_message)
                .where(_message.c.id == row.id)
                .values(reason=reason, error=error)
            )


def _message_code(error: str | None, verdict: str | None, trace: Any) -> tuple[str | None, Any]:
    if error:
        for prefix, code in _ERRORS:
            if error.startswith(prefix):
                return code, error[len(prefix) :]
        unknown = _UNKNOWN_DOSSIER.match(error)
        if unknown:
            return "unknown_dossier", unknown[1]
        return None, error
    if verdict != "needs_review":
        return None, error
    hits = [h for h in (trace or []) if isinstance(h, dict) and h.get("hit")]
    rules = [str(h.get("rule")) for h in hits]
    if "over_limits" in rules:
        return "over_limits", None
    if rules and rules[-1] == "score" and str(hits[-1].get("reason", "")).endswith("needs_review"):
        return "uncertain_score", None
    return None, error


def _replies_to_codes(connection: sa.Connection) -> None:
    suppressed = connection.execute(
        sa.select(_outbox).where(_outbox.c.status == "suppressed")
    ).all()
    for row in suppressed:
        text = (row.suppressed_reason or "").strip()
        for pattern, code, details in _HOLDS:
            match = pattern.match(text)
            if match:
                connection.execute(
                    sa.update(_outbox)
                    .where(_outbox.c.id == row.id)
                    .values(suppressed_reason=code, suppressed_details=details(match))
                )
                break
    failed = connection.execute(sa.select(_outbox).where(_outbox.c.status == "failed")).all()
    for row in failed:
        error = row.last_error or ""
        gave_up = _GAVE_UP.match(error)
        if error.startswith("interrupted while sending"):
            values: dict[str, Any] = {"failure_reason": "interrupted"}
        elif gave_up:
            values = {"failure_reason": "gave_up", "last_error": gave_up[1]}
        else:
            values = {"failure_reason": "refused"}
        connection.execute(sa.update(_outbox).where(_outbox.c.id == row.id).values(**values))


# Back to the sentences the previous release reads.

_ERROR_PREFIXES = {code: prefix for prefix, code in _ERRORS}


def _messages_to_sentences(connection: sa.Connection) -> None:
    rows = connection.execute(sa.select(_message).where(_message.c.reason.is_not(None))).all()
    for row in rows:
        if row.reason in _ERROR_PREFIXES:
            error = _ERROR_PREFIXES[row.reason] + (row.error or "")
        elif row.reason == "unknown_dossier":
            error = f"follow-up names an unknown dossier {row.error!r}"
        else:
            continue
        connection.execute(
            sa.update(_message).where(_message.c.id == row.id).values(error=error)
        )


def _hold_sentence(code: str, row: Any) -> str | None:
    details = row.suppressed_details or {}
    count, cap = details.get("count", "?"), details.get("cap", "?")
    sentences = {
        "replies_disabled": "automatic replies are disabled in config (replies.enabled = false)",
        "no_sender_address": "no usable sender address",
        "recipient_is_ours": f"the sender {row.to_addr} is one of our own mailboxes or staff",
        "from_our_address": (
            f"the message comes from our own address {details.get('address', '?')}"
        ),
        "authentication_failed": "Authentication-Results: the sender failed DMARC/SPF/DKIM",
        "authentication_not_passed": (
            "Authentication-Results: the sender did not pass DMARC/SPF/DKIM"
        ),
        "already_sent": f"a {row.kind} reply was already sent for this dossier",
        "sender_daily_cap": f"{row.to_addr} already had {count} replies today (cap {cap})",
        "hourly_cap": f"{count} replies in the last hour (cap {cap})",
    }
    return sentences.get(code)


def _replies_to_sentences(connection: sa.Connection) -> None:
    rows = connection.execute(
        sa.select(_outbox).where(
            sa.or_(_outbox.c.status == "suppressed", _outbox.c.failure_reason.is_not(None))
        )
    ).all()
    for row in rows:
        values: dict[str, Any] = {}
        if row.status == "suppressed":
            sentence = _hold_sentence(row.suppressed_reason or "", row)
            if sentence is not None:
                values["suppressed_reason"] = sentence
        if row.failure_reason == "gave_up":
            values["last_error"] = f"gave up after {row.attempts} attempts: {row.last_error}"
        if values:
            connection.execute(sa.update(_outbox).where(_outbox.c.id == row.id).values(**values))
