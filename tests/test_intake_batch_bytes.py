"""A batch's whole messages are bounded in bytes, not only in number.

``mailbot.intake.BATCH_BYTES``: the bodies of a batch are fetched in FETCH
commands of at most that many bytes (by the server's RFC822.SIZE; a bigger
message alone), the messages fetched beyond it are spooled, and a run of
mail that is not for us that holds more is filed at once. So the worker's
memory does not grow with ``fetch_batch``.

A real Dovecot mailbox is polled into two fresh databases, once as shipped
and once with a budget of a few KB: the FETCH commands keep to the budget,
messages are spooled, and what the poll files (ledger, sightings, dossiers,
cursor) is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from bench.harness import everyday_messages
from mailbot import intake
from mailbot.app import App
from mailbot.imap import FetchedMessage, MailboxClient
from mailbot.intake import poll_mailbox
from tests.fixtures.polls import app_over, filed_rows, mixed_mailbox

NB = "n.bataillon"
BUDGET = 2_000


class _RecordingClient(MailboxClient):
    """A real client that notes the messages of each whole-message FETCH."""

    commands: ClassVar[list[list[tuple[int, int]]]] = []

    def fetch(self, uids, *, batch, headers_only=False):  # type: ignore[no-untyped-def]
        got: list[tuple[int, int]] = []
        self.commands.append(got)
        for message in super().fetch(uids, batch=batch, headers_only=headers_only):
            got.append((message.uid, len(message.raw)))
            yield message


def _poll(app: App) -> tuple[intake.MailboxReport, list[list[tuple[int, int]]]]:
    _RecordingClient.commands = []
    report = poll_mailbox(app, app.config.settings.mailbox(NB), client_factory=_RecordingClient)
    return report, _RecordingClient.commands


def test_a_tight_budget_fetches_in_small_commands_and_files_the_same(
    config_dir, service_env, dovecot, tmp_path, monkeypatch
):
    dovecot.append_many(NB, mixed_mailbox())
    shipped = app_over(config_dir, tmp_path / "shipped")
    tight = app_over(config_dir, tmp_path / "tight")
    spooled: list[int] = []
    original = tight.blobs.spool

    def spool(data: bytes) -> Path:
        spooled.append(len(data))
        return original(data)

    tight.blobs.spool = spool  # type: ignore[method-assign]
    try:
        report, commands = _poll(shipped)
        assert report.error is None and report.filed == 2, report.summary()
        assert len(commands) == 1  # everything in one batch, one FETCH

        with monkeypatch.context() as patch:
            patch.setattr(intake, "BATCH_BYTES", BUDGET)
            tight_report, tight_commands = _poll(tight)
        assert tight_report.summary() == report.summary()
        # The same messages fetched whole, in commands that keep to the budget.
        fetched = sorted(uid for command in commands for uid, _size in command)
        assert sorted(uid for command in tight_commands for uid, _s in command) == fetched
        assert len(tight_commands) > 3
        for command in tight_commands:
            assert len(command) == 1 or sum(size for _uid, size in command) <= BUDGET, command
        # Beyond the budget, the batch's messages wait in the spool, not in memory.
        assert spooled
        assert _left_in_spool(shipped) == _left_in_spool(tight) == []
        assert filed_rows(tight.engine) == filed_rows(shipped.engine)
    finally:
        shipped.close()
        tight.close()


def _left_in_spool(app: App) -> list[Path]:
    """Files left in the spool (none: a poll removes what it spooled)."""
    spool = app.blobs.root / ".spool"
    return list(spool.iterdir()) if spool.exists() else []


def test_a_quiet_run_over_the_budget_is_filed_in_several_transactions(
    config_dir, service_env, dovecot, tmp_path, monkeypatch
):
    dovecot.append_many(NB, everyday_messages(12))
    app = app_over(config_dir, tmp_path / "quiet")
    runs: list[int] = []
    original = intake.file_ignored

    def recorded(**kwargs: Any) -> Any:
        runs.append(len(kwargs["items"]))
        return original(**kwargs)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(intake, "BATCH_BYTES", BUDGET)
            patch.setattr(intake, "file_ignored", recorded)
            report = poll_mailbox(app, app.config.settings.mailbox(NB))
        assert report.error is None and report.ignored == 12, report.summary()
        assert sum(runs) == 12 and len(runs) > 1, runs
        filed = filed_rows(app.engine)
        assert [uid for uid, _action, _key in filed["sighting"]] == list(range(1, 13))
        assert [row[3] for row in filed["cursor"]] == [12]
    finally:
        app.close()


@pytest.mark.parametrize(
    ("sizes", "batch", "expected"),
    [
        ({1: 10, 2: 10, 3: 10}, 50, [[1, 2, 3]]),
        ({1: 10, 2: 10, 3: 10}, 2, [[1, 2], [3]]),
        ({1: 5_000, 2: 5_000, 3: 100}, 50, [[1], [2, 3]]),
        ({1: 20_000, 2: 10, 3: 20_000}, 50, [[1], [2], [3]]),
        ({1: 10, 3: 10}, 50, [[1], [2], [3]]),  # 2, of unknown size, counts as SPOOL_BYTES
    ],
)
def test_fetch_groups(sizes, batch, expected, monkeypatch):
    asked: list[list[int]] = []

    class Client:
        def fetch(self, uids: list[int], *, batch: int) -> list[FetchedMessage]:
            asked.append(list(uids))
            return [FetchedMessage(uid=uid, raw=b"x", flags=()) for uid in uids]

    monkeypatch.setattr(intake, "BATCH_BYTES", 8_000)
    monkeypatch.setattr(intake, "SPOOL_BYTES", 7_995)
    got = list(intake._fetch_whole(Client(), [1, 2, 3], sizes=sizes, batch=batch))  # type: ignore[arg-type]
    assert asked == expected
    assert [message.uid for message in got] == [1, 2, 3]
