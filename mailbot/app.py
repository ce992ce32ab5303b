"""The running application's shared objects: config, database, blob store.

The CLI and the scheduler build one ``App`` and hand it to the service
functions; nothing is opened until it is first needed, so commands that only
read the config never touch the database. The modules behind them (the
config loader, SQLAlchemy, the blob store) are imported on first use too, so
importing this module costs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from mailbot.config import Config
    from storage.blobs import BlobStore

log = logging.getLogger(__name__)


@dataclass
class App:
    config_dir: str | None = None
    _config: Config | None = field(default=None, repr=False)
    # False for commands that render no template: each is compiled if and
    # when used instead of all at load (see mailbot.config).
    check_templates: bool = True
    # False for commands that classify nothing: rules.toml is validated if and
    # when the rules are used (a listing of dossiers never does).
    check_rules: bool = True
    # True for the long-running commands (``poll``, ``run``): a database that
    # needs migrating is migrated by a child process, so that Alembic is not
    # held in memory for the life of the worker (see storage.db).
    upgrade_apart: bool = False

    @property
    def config(self) -> Config:
        if self._config is None:
            from mailbot.config import load_config

            self._config = load_config(
                self.config_dir,
                check_templates=self.check_templates,
                check_rules=self.check_rules,
            )
        return self._config

    @cached_property
    def engine(self) -> Engine:
        from storage.db import open_database

        url = self.config.database_url
        log.debug("opening database %s", _redact(url))
        return open_database(url, upgrade_apart=self.upgrade_apart)

    @cached_property
    def blobs(self) -> BlobStore:
        from storage.blobs import BlobStore

        return BlobStore(self.config.blob_dir)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def _redact(url: str) -> str:
    """Hide a password in a database URL before logging it."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable url>"
