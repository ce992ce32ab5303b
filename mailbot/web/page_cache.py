"""The rendered body of recently viewed dossier pages, and the one query that says it is current.

A dossier page is read far more often than its dossier changes, and reading
it in full (six statements, JSON decoding, wording, a Jinja2 render of a few
hundred cells) costs some milliseconds. So the body of the page (everything
under the header) is kept, keyed by the dossier's id and ``version``; the
database raises that version on every change the page shows (triggers of
migration 0005: the dossier, its pieces, messages, sightings, replies and
history), so a kept body whose key still matches is the page as it would be
rendered now. Each request still asks the database, in one statement, both
whether its staff login is still enabled and the dossier's current version:
a page never shows stale data and a removed account is turned away at once.

What belongs to one request is never kept: the body is rendered with a
placeholder in place of the CSRF token (filled in with the session's own
token on every response), and the header (login, notices) is rendered per
request around the body.

On SQLite the check is a keyed read of a local file that takes no lock
(WAL: a reader does not wait for the poller's write transaction), so it is
run on the event loop: a hit then costs no trip to a worker thread, which
on its own (anyio's ``to_thread``) costs more CPU than the whole check, and
more wall-clock time on a loaded machine. On PostgreSQL (a network round
trip) everything runs in the worker thread, as every other page does.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from markupsafe import escape
from sqlalchemy.engine import Engine

# A few hundred pages of about 20 kB: some megabytes at most.
CACHE_SIZE = 256
Stamp = tuple[int, int]  # (dossier id, dossier version)


class DossierPageCache:
    """Kept page bodies by reference, and the check query (see the module docstring)."""

    def __init__(self, engine: Engine, *, size: int = CACHE_SIZE) -> None:
        self.engine = engine
        self.size = size
        database = engine.url.database or ""
        self.inline = engine.dialect.name == "sqlite" and database not in ("", ":memory:")
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        # One row whatever matches: the enabled login (or NULL), the dossier's key (or NULLs).
        self._check = (
            "SELECT (SELECT login FROM staff_account"
            f" WHERE login = {mark} AND NOT disabled), dossier.id, dossier.version"
            f" FROM (SELECT 1 AS one) AS one LEFT JOIN dossier ON dossier.reference = {mark}"
        )
        self._bodies: OrderedDict[str, tuple[Stamp, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._loop_connection = threading.local()
        # Stands for the CSRF token in a kept body; unguessable, so that no
        # applicant text can carry it.
        self.token_slot = f"csrf-slot-{secrets.token_hex(16)}"
        # The page around a body, rendered once with slots for what each
        # response puts in it (``page``); the notice after an action is
        # rendered by the templates instead.
        self.shell: str | None = None
        self.title_slot = f"title-slot-{secrets.token_hex(16)}"
        self.login_slot = f"login-slot-{secrets.token_hex(16)}"
        self.body_slot = f"body-slot-{secrets.token_hex(16)}"

    def check(
        self, *, login: str, reference: str, on_loop: bool = False
    ) -> tuple[str | None, Stamp | None]:
        """``login`` when it names an enabled account, and the stamp of dossier ``reference``.

        ``on_loop``: called from the event loop (SQLite only), on a connection
        of the loop's own, taken from the pool once, configured as every
        connection of the engine (WAL, autocommit: the statement is its own
        snapshot); the pool's checkout and reset would cost more than the
        query. Otherwise a pooled connection.
        """
        # The DBAPI connection itself: this runs on every page view, and
        # SQLAlchemy's statement machinery would cost more than the query.
        if on_loop:
            connection = getattr(self._loop_connection, "value", None)
            if connection is None:
                fairy = self.engine.raw_connection()
                fairy.detach()  # ours for the life of the thread, outside the pool
                connection = self._loop_connection.value = fairy.dbapi_connection
            row = connection.execute(self._check, (login, reference)).fetchone()
        else:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(self._check, (login, reference))
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                raw.close()
        enabled, dossier_id, version = row
        return enabled, (None if dossier_id is None else (dossier_id, version))

    def get(self, reference: str, stamp: Stamp) -> str | None:
        with self._lock:
            kept = self._bodies.get(reference)
            if kept is None or kept[0] != stamp:
                return None
            self._bodies.move_to_end(reference)
            return kept[1]

    def put(self, reference: str, stamp: Stamp, body: str) -> None:
        with self._lock:
            kept = self._bodies.get(reference)
            # A slower reader of an older version must not replace a newer body.
            if kept is not None and kept[0][0] == stamp[0] and kept[0][1] > stamp[1]:
                return
            self._bodies[reference] = (stamp, body)
            self._bodies.move_to_end(reference)
            while len(self._bodies) > self.size:
                self._bodies.popitem(last=False)

    def fill(self, body: str, token: str) -> str:
        """A kept body with this session's CSRF token in its forms."""
        return body.replace(self.token_slot, token)

    def page(self, body: str, *, title: str, login: str, token: str) -> str:
        """The whole page: the shell with this response's title, login, token around ``body``."""
        assert self.shell is not None
        page = self.shell.replace(self.title_slot, escape(title), 1)
        page = page.replace(self.login_slot, escape(login)).replace(self.body_slot, body, 1)
        return page.replace(self.token_slot, token)
