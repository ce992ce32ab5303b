"""Partial index on sightings whose server action is pending.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Every poll asks whether a flag or move is still pending in its folder; with
a row per message ever seen, that was a scan of the folder's sightings
(2 ms per poll at 20,000 messages). Written by hand: autogenerate does not
compare the WHERE clause of partial indexes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("server_action = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_sighting_pending",
        "sighting",
        ["mailbox", "folder", "uidvalidity"],
        unique=False,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_sighting_pending", table_name="sighting")
