"""A version number on each dossier, raised by the database on every change its page shows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

The back-office keeps the rendered body of recently viewed dossier pages
(``mailbot.web.dossier_page``) keyed by ``dossier.version``; the key must
change whenever anything the page shows changes: the dossier row itself,
its pieces, its messages (and the mailboxes they were seen in), its replies
and its history. Rather than trusting every writer of those six tables
(the poller, the replies, the CLI, the pages, retention) to remember a
bump, the database raises the version itself, with triggers:

- ``dossier``: any update that does not already change ``version``;
- ``piece``, ``message``, ``outbox``, ``event``: any insert, update or
  delete, for the dossier of the new and of the old row (a message moved to
  another dossier changes both pages);
- ``sighting``: any insert, update or delete, for the dossier of its message.

A later revision that rebuilds one of these tables on SQLite (batch mode
copies the table) drops its triggers and must create them again:
``tests/test_web_page_cache.py`` fails when one is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose rows name their dossier in ``dossier_id``.
_CHILDREN = ("piece", "message", "outbox", "event")
_BUMP = "UPDATE dossier SET version = version + 1 WHERE id = {row}"
_BUMP_BY_MESSAGE = (
    "UPDATE dossier SET version = version + 1"
    " WHERE id = (SELECT dossier_id FROM message WHERE id = {row})"
)


def _sqlite_triggers() -> list[str]:
    statements = [
        # Recursive triggers are off (SQLite's default): this inner UPDATE
        # fires no trigger; the WHEN clause would stop a loop anyway.
        "CREATE TRIGGER dossier_version_on_update AFTER UPDATE ON dossier"
        " WHEN NEW.version = OLD.version BEGIN"
        " UPDATE dossier SET version = OLD.version + 1 WHERE id = NEW.id; END"
    ]
    for table in _CHILDREN:
        statements += [
            f"CREATE TRIGGER {table}_dossier_version_on_insert AFTER INSERT ON {table}"
            f" BEGIN {_BUMP.format(row='NEW.dossier_id')}; END",
            f"CREATE TRIGGER {table}_dossier_version_on_update AFTER UPDATE ON {table}"
            f" BEGIN {_BUMP.format(row='NEW.dossier_id')};"
            f" {_BUMP.format(row='OLD.dossier_id')} AND OLD.dossier_id IS NOT NEW.dossier_id;"
            " END",
            f"CREATE TRIGGER {table}_dossier_version_on_delete AFTER DELETE ON {table}"
            f" BEGIN {_BUMP.format(row='OLD.dossier_id')}; END",
        ]
    statements += [
        "CREATE TRIGGER sighting_dossier_version_on_insert AFTER INSERT ON sighting"
        f" BEGIN {_BUMP_BY_MESSAGE.format(row='NEW.message_pk')}; END",
        "CREATE TRIGGER sighting_dossier_version_on_update AFTER UPDATE ON sighting"
        f" BEGIN {_BUMP_BY_MESSAGE.format(row='NEW.message_pk')};"
        f" {_BUMP_BY_MESSAGE.format(row='OLD.message_pk')}"
        " AND OLD.message_pk IS NOT NEW.message_pk; END",
        "CREATE TRIGGER sighting_dossier_version_on_delete AFTER DELETE ON sighting"
        f" BEGIN {_BUMP_BY_MESSAGE.format(row='OLD.message_pk')}; END",
    ]
    return statements


_PG_FUNCTIONS = [
    """CREATE FUNCTION dossier_version_on_update() RETURNS trigger AS $$
BEGIN
    IF NEW.version = OLD.version THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql""",
    """CREATE FUNCTION dossier_version_of_child() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        UPDATE dossier SET version = version + 1 WHERE id = NEW.dossier_id;
    END IF;
    IF TG_OP = 'DELETE' OR OLD.dossier_id IS DISTINCT FROM NEW.dossier_id THEN
        UPDATE dossier SET version = version + 1 WHERE id = OLD.dossier_id;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql""",
    """CREATE FUNCTION dossier_version_of_sighting() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        UPDATE dossier SET version = version + 1
        WHERE id = (SELECT dossier_id FROM message WHERE id = NEW.message_pk);
    END IF;
    IF TG_OP = 'DELETE' OR OLD.message_pk IS DISTINCT FROM NEW.message_pk THEN
        UPDATE dossier SET version = version + 1
        WHERE id = (SELECT dossier_id FROM message WHERE id = OLD.message_pk);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql""",
]


def _pg_triggers() -> list[str]:
    statements = [
        *_PG_FUNCTIONS,
        "CREATE TRIGGER dossier_version_on_update BEFORE UPDATE ON dossier"
        " FOR EACH ROW EXECUTE FUNCTION dossier_version_on_update()",
        "CREATE TRIGGER sighting_dossier_version AFTER INSERT OR UPDATE OR DELETE ON sighting"
        " FOR EACH ROW EXECUTE FUNCTION dossier_version_of_sighting()",
    ]
    statements += [
        f"CREATE TRIGGER {table}_dossier_version AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION dossier_version_of_child()"
        for table in _CHILDREN
    ]
    return statements


def upgrade() -> None:
    with op.batch_alter_table("dossier") as batch:
        batch.add_column(
            sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _sqlite_triggers() if sqlite else _pg_triggers():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        names = ["dossier_version_on_update"] + [
            f"{table}_dossier_version_on_{when}"
            for table in (*_CHILDREN, "sighting")
            for when in ("insert", "update", "delete")
        ]
        for name in names:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS dossier_version_on_update ON dossier")
        for table in (*_CHILDREN, "sighting"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_dossier_version ON {table}")
        for function in (
            "dossier_version_on_update",
            "dossier_version_of_child",
            "dossier_version_of_sighting",
        ):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    with op.batch_alter_table("dossier") as batch:
        batch.drop_column("version")
