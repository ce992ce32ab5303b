"""Write a new migration by comparing the models with a database at head.

Usage: ``.venv/bin/python -m storage.migrations.revision "what changed"``.
A throwaway SQLite database is upgraded to the current head, then Alembic
autogenerates the difference with ``storage.models``; review the file it
writes in ``storage/migrations/versions/`` before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from storage.db import alembic_config, open_database


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print('usage: python -m storage.migrations.revision "message"', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'head.sqlite3'}"
        open_database(url).dispose()
        command.revision(alembic_config(url), message=argv[0], autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
