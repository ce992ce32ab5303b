"""The next batch's structures and headers, fetched while the worker reads this batch.

The first pass over a full mailbox alternates between waiting for the server
(Dovecot builds a message's BODYSTRUCTURE the first time it is asked for it)
and reading what the server sent. ``StructurePrefetch`` asks for the next
batch's ``RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER]`` on a second,
read-only connection (EXAMINE), in a thread, while the worker reads the
current batch on its own connection; the server's work and ours overlap.

What it fetched is used only for exactly the UIDs the worker asks for, in
the folder the worker selected, under the same UIDVALIDITY; otherwise the
worker fetches them itself, as without a prefetch. A failure of the second
connection (login, EXAMINE, a FETCH) turns the prefetch off for the rest of
the poll and is logged: it never changes what is filed. Nothing is written
on that connection, and ``BODY.PEEK`` sets no flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from mailbot.imap import FolderState, ImapError, MailboxClient
from parsers.mail.bodystructure import FetchedStructure

log = logging.getLogger(__name__)


class StructurePrefetch:
    """One batch ahead, on a connection of its own; use as a context manager."""

    def __init__(
        self,
        open_client: Callable[[], MailboxClient],
        *,
        folder: FolderState,
        batch: int,
        enabled: bool = True,
    ) -> None:
        self._open_client = open_client
        self._folder = folder
        self._batch = batch
        self._client: MailboxClient | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailbot-prefetch")
        self._pending: tuple[tuple[int, ...], Future[list[FetchedStructure]]] | None = None
        # Off: never started (one batch has nothing to overlap), or failed.
        self.off = not enabled

    def __enter__(self) -> StructurePrefetch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, uids: Sequence[int]) -> None:
        """Start fetching the structures of ``uids`` (the next batch) in the thread."""
        self._drop_pending()
        if self.off or not uids:
            return
        wanted = tuple(uids)
        self._pending = (wanted, self._pool.submit(self._fetch, wanted))

    def take(self, uids: Sequence[int]) -> list[FetchedStructure] | None:
        """The structures of ``uids`` if they were prefetched, else None (fetch them yourself)."""
        pending, self._pending = self._pending, None
        if pending is None or pending[0] != tuple(uids):
            if pending is not None:
                pending[1].cancel()
            return None
        try:
            return pending[1].result()
        except Exception as err:  # any failure of the second connection: go on without it
            log.warning(
                "%s: prefetch connection failed (%s); going on without it",
                self._folder.name,
                err,
            )
            self.off = True
            return None

    def close(self) -> None:
        """Wait for a fetch in progress (one batch at most), then log out."""
        self._drop_pending()
        self._pool.shutdown(wait=True, cancel_futures=True)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].cancel()

    def _fetch(self, uids: tuple[int, ...]) -> list[FetchedStructure]:
        """In the thread: connect once (read-only), then one FETCH of the batch."""
        if self._client is None:
            client = self._open_client()
            try:
                state = client.select(self._folder.name, readonly=True)
            except BaseException:
                client.close()
                raise
            self._client = client
            if state.uidvalidity != self._folder.uidvalidity:
                raise ImapError(
                    f"UIDVALIDITY {state.uidvalidity} on the second connection, "
                    f"{self._folder.uidvalidity} on the first"
                )
        return list(self._client.fetch_structures(list(uids), batch=self._batch))
