"""A poll runs the cyclic collector less often, and gives its thresholds back.

``mailbot.intake._fewer_collections``: while a poll runs, the collector's
first threshold is ``_POLL_GC_THRESHOLD`` (the young-generation scans of a
first poll found no garbage, only the batch alive); the thresholds in force
before come back after the last running poll, also when a poll fails or
several threads poll at once. Reference cycles are still collected during a
poll, and what a poll files is the same as with the default thresholds
(real Dovecot, real SQLite).
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from mailbot import intake
from mailbot.imap import MailboxClient
from mailbot.intake import poll_mailbox
from tests.fixtures.polls import app_over, filed_rows, mixed_mailbox

NB = "n.bataillon"
SMALL_BATCH = {"MAILBOT_INTAKE__FETCH_BATCH": "4"}


@pytest.fixture
def thresholds():
    """The collector's thresholds set to Python's defaults for the test, then restored."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_a_poll_files_the_same_with_fewer_collections(
    config_dir, service_env, dovecot, tmp_path, monkeypatch, thresholds
):
    dovecot.append_many(NB, mixed_mailbox())
    fewer = app_over(config_dir, tmp_path / "fewer", **SMALL_BATCH)
    usual = app_over(config_dir, tmp_path / "usual", **SMALL_BATCH)
    seen: list[tuple[int, int, int]] = []
    try:
        report = poll_mailbox(
            fewer,
            fewer.config.settings.mailbox(NB),
            progress=lambda *_args: seen.append(gc.get_threshold()),
        )
        assert report.error is None and report.filed == 2, report.summary()
        assert gc.get_threshold() == thresholds
        # Every batch was read with the raised threshold (17 messages, batches of 4).
        assert seen == [(intake._POLL_GC_THRESHOLD, 10, 10)] * 5
        with monkeypatch.context() as patch:
            patch.setattr(intake, "_POLL_GC_THRESHOLD", 700)  # as before: nothing raised
            usual_report = poll_mailbox(usual, usual.config.settings.mailbox(NB))
        assert usual_report.summary() == report.summary()
        assert filed_rows(fewer.engine) == filed_rows(usual.engine)
    finally:
        fewer.close()
        usual.close()


class _Refused(MailboxClient):
    def connect(self) -> None:
        raise OSError("connection refused")


def test_the_thresholds_come_back_when_a_poll_fails(config_dir, service_env, tmp_path, thresholds):
    app = app_over(config_dir, tmp_path / "failed")
    try:
        report = poll_mailbox(app, app.config.settings.mailbox(NB), client_factory=_Refused)
        assert report.error is not None
        assert gc.get_threshold() == thresholds
        with pytest.raises(RuntimeError), intake._fewer_collections():
            assert gc.get_threshold()[0] == intake._POLL_GC_THRESHOLD
            raise RuntimeError("a bug in a poll")
        assert gc.get_threshold() == thresholds
    finally:
        app.close()


def test_polls_in_several_threads_give_back_the_first_thresholds(thresholds):
    """A ends before B: the raised threshold stays until B ends, then the first ones come back."""
    a_in, a_out, b_in, b_out = (threading.Event() for _ in range(4))
    during: list[tuple[int, int, int]] = []

    def poll_a() -> None:
        with intake._fewer_collections():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def poll_b() -> None:
        a_in.wait(5)
        with intake._fewer_collections():
            b_in.set()
            a_out.wait(5)
            during.append(gc.get_threshold())
        b_out.set()

    threads = [threading.Thread(target=poll_a), threading.Thread(target=poll_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert b_out.is_set()
    assert during == [(intake._POLL_GC_THRESHOLD, 10, 10)]
    assert gc.get_threshold() == thresholds


def test_a_collector_turned_off_or_set_higher_is_left_alone(thresholds):
    gc.set_threshold(0, 10, 10)
    with intake._fewer_collections():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)
    gc.set_threshold(50_000, 5, 5)
    with intake._fewer_collections():
        assert gc.get_threshold() == (50_000, 5, 5)
    assert gc.get_threshold() == (50_000, 5, 5)


class _Node:
    def __init__(self) -> None:
        self.other: object = self


def test_reference_cycles_are_still_collected_during_a_poll(thresholds):
    assert gc.isenabled()
    with intake._fewer_collections():
        cycle = _Node()
        gone = weakref.ref(cycle)
        del cycle
        # Containers kept alive, as a batch is: the collector still runs on its own.
        kept = []
        for _ in range(20):
            if gone() is None:
                break
            kept.extend([] for _ in range(intake._POLL_GC_THRESHOLD))
        assert gone() is None
        del kept
