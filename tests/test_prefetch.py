"""The next batch's structures come on a second connection while a batch is read.

``mailbot.prefetch.StructurePrefetch``: a poll of more than one batch asks
for the next batch's structures and headers on a second, read-only
connection. What a poll files is the same with and without it, and the same
when the second connection fails or sees another UIDVALIDITY: the worker
then fetches on its own connection. Real Dovecot, real databases.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from mailbot import intake
from mailbot.imap import FolderState, MailboxClient
from mailbot.intake import poll_mailbox
from mailbot.prefetch import StructurePrefetch
from tests.fixtures.polls import app_over, filed_rows, mixed_mailbox

NB = "n.bataillon"
SMALL_BATCH = {"MAILBOT_INTAKE__FETCH_BATCH": "4"}


class _Counting(StructurePrefetch):
    """The real prefetch, counting the batches it gave the worker."""

    given: ClassVar[list[int]] = []

    def take(self, uids):  # type: ignore[no-untyped-def]
        found = super().take(uids)
        if found is not None:
            type(self).given.append(len(found))
        return found


class _Off(StructurePrefetch):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "enabled": False})


def _poll(app, monkeypatch, prefetch, **kwargs):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as patch:
        patch.setattr(intake, "StructurePrefetch", prefetch)
        return poll_mailbox(app, app.config.settings.mailbox(NB), **kwargs)


def test_a_poll_files_the_same_with_and_without_the_prefetch(
    config_dir, service_env, dovecot, tmp_path, monkeypatch
):
    dovecot.append_many(NB, mixed_mailbox())
    ahead = app_over(config_dir, tmp_path / "ahead", **SMALL_BATCH)
    alone = app_over(config_dir, tmp_path / "alone", **SMALL_BATCH)
    try:
        _Counting.given = []
        report = _poll(ahead, monkeypatch, _Counting)
        assert report.error is None and report.filed == 2, report.summary()
        # 17 messages in batches of 4: the last four batches were prefetched.
        assert _Counting.given == [4, 4, 4, 1]
        alone_report = _poll(alone, monkeypatch, _Off)
        assert alone_report.summary() == report.summary()
        assert filed_rows(ahead.engine) == filed_rows(alone.engine)
        # Read-only and BODY.PEEK: no flag was set on the server.
        assert all("\\Seen" not in flags for flags in dovecot.fetch_flags(NB).values())
    finally:
        ahead.close()
        alone.close()


class _NoSecondConnection(MailboxClient):
    """The real client; any connection after the first one is refused."""

    connections = 0

    def connect(self) -> None:
        type(self).connections += 1
        if type(self).connections > 1:
            raise OSError("second connection refused")
        super().connect()


def test_a_failing_second_connection_changes_nothing(
    config_dir, service_env, dovecot, tmp_path, monkeypatch, caplog
):
    dovecot.append_many(NB, mixed_mailbox())
    broken = app_over(config_dir, tmp_path / "broken", **SMALL_BATCH)
    alone = app_over(config_dir, tmp_path / "alone", **SMALL_BATCH)
    try:
        _NoSecondConnection.connections = 0
        with caplog.at_level(logging.WARNING, logger="mailbot.prefetch"):
            report = _poll(
                broken, monkeypatch, StructurePrefetch, client_factory=_NoSecondConnection
            )
        assert report.error is None and report.filed == 2, report.summary()
        assert _NoSecondConnection.connections == 2  # tried once, then off
        assert "prefetch connection failed" in caplog.text
        assert _poll(alone, monkeypatch, _Off).summary() == report.summary()
        assert filed_rows(broken.engine) == filed_rows(alone.engine)
    finally:
        broken.close()
        alone.close()


def _open(dovecot_settings):  # type: ignore[no-untyped-def]
    def open_client() -> MailboxClient:
        client = MailboxClient(dovecot_settings[0], dovecot_settings[1])
        client.connect()
        return client

    return open_client


def test_structures_are_given_only_for_the_uids_asked_and_the_same_uidvalidity(
    service_app, dovecot
):
    dovecot.append_many(NB, mixed_mailbox()[:6])
    settings = service_app.config.settings.mailbox(NB)
    password = dovecot.users[NB]
    with MailboxClient(settings, password) as client:
        state = client.select(settings.folder)
        uids = client.all_uids()
        expected = list(client.fetch_structures(uids[:3], batch=10))
    open_client = _open((settings, password))

    with StructurePrefetch(open_client, folder=state, batch=10) as prefetch:
        prefetch.submit(uids[:3])
        assert prefetch.take(uids[:3]) == expected
        prefetch.submit(uids[3:])
        assert prefetch.take(uids[2:]) is None  # not what was fetched: fetch it yourself
        assert prefetch.take(uids[3:]) is None  # and it is not kept
        prefetch.submit(uids[3:])
        assert [item.uid for item in prefetch.take(uids[3:]) or []] == uids[3:]
        assert not prefetch.off

    other = FolderState(state.name, state.uidvalidity + 1, state.uidnext, state.exists)
    with StructurePrefetch(open_client, folder=other, batch=10) as prefetch:
        prefetch.submit(uids[:3])
        assert prefetch.take(uids[:3]) is None
        assert prefetch.off
        prefetch.submit(uids[:3])  # off: nothing is asked any more
        assert prefetch.take(uids[:3]) is None

    with StructurePrefetch(open_client, folder=state, batch=10, enabled=False) as prefetch:
        prefetch.submit(uids[:3])
        assert prefetch.take(uids[:3]) is None
