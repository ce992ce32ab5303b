"""``mailbot run``: the long-running service.

An APScheduler ``BlockingScheduler`` (service time zone) runs a timer poll
per mailbox, the outbox delivery, the daily digest and the retention purge.
Where the server has IDLE, a watcher thread per mailbox keeps an IDLE
connection and triggers that mailbox's poll as soon as mail arrives; the
timer poll stays as the safety net. One poll of a mailbox runs at a time: a
trigger arriving during a poll makes that poll go round once more.

SIGTERM/SIGINT stop the service cleanly: the message in hand is finished,
no new one is started, connections are closed. A heartbeat file is touched
every few seconds for the container's health check.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.blocking import BlockingScheduler

from mailbot.app import App
from mailbot.config import MailboxSettings, secret
from mailbot.imap import MailboxClient
from mailbot.intake import poll_mailbox
from mailbot.pipeline import Analyser

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15
IDLE_POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0


class MailboxPoller:
    """Serialises the polls of one mailbox; triggers during a poll are not lost."""

    def __init__(self, service: Service, mailbox: MailboxSettings) -> None:
        self.service = service
        self.mailbox = mailbox
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        # The IDLE watcher hands polls to this thread so that it can go
        # straight back to IDLE and hear about the next message.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"poll-{mailbox.name}")

    def trigger_soon(self) -> None:
        """Ask for a poll without waiting for it (from the IDLE watcher)."""
        self._dirty.set()
        if not self.service.stopping.is_set():
            self._executor.submit(self.trigger)

    def shutdown(self) -> None:
        """Wait for the poll in hand to finish its current message."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def trigger(self) -> None:
        self._dirty.set()
        while self._dirty.is_set() and not self.service.stopping.is_set():
            if not self._lock.acquire(blocking=False):
                return  # the running poll sees the flag and goes round again
            try:
                while self._dirty.is_set() and not self.service.stopping.is_set():
                    self._dirty.clear()
                    self._poll_once()
            finally:
                self._lock.release()

    def _poll_once(self) -> None:
        report = poll_mailbox(
            self.service.app,
            self.mailbox,
            analyser=self.service.analyser,
            should_stop=self.service.stopping.is_set,
        )
        if report.error:
            log.error("poll %s failed: %s", self.mailbox.name, report.error)
        elif report.new:
            log.info("poll %s", report.summary())
            self.service.send()


class IdleWatcher(threading.Thread):
    """Keeps an IDLE connection to one mailbox and triggers its poller on new mail."""

    def __init__(self, service: Service, poller: MailboxPoller) -> None:
        super().__init__(name=f"idle-{poller.mailbox.name}", daemon=True)
        self.service = service
        self.poller = poller
        self.mailbox = poller.mailbox

    def run(self) -> None:
        backoff = 1.0
        while not self.service.stopping.is_set():
            try:
                if not self._watch():
                    return  # the server has no IDLE: the timer poll does the work
                backoff = 1.0
            except Exception as err:  # any failure of the connection: reconnect
                delay = backoff * random.uniform(0.5, 1.5)
                log.warning("IDLE %s: %s; reconnecting in %.1f s", self.mailbox.name, err, delay)
                self.service.stopping.wait(delay)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _watch(self) -> bool:
        password = secret(self.mailbox.password_env) or ""
        renew = self.service.app.config.settings.schedule.idle_renew_minutes * 60
        with MailboxClient(self.mailbox, password) as client:
            client.select(self.mailbox.folder)
            if not client.has_capability("IDLE"):
                log.info("IDLE %s: not supported by the server; timer poll only", self.mailbox.name)
                return False
            log.info("IDLE %s: watching %s", self.mailbox.name, self.mailbox.folder)
            # Catch up on what arrived while we were not connected.
            self.poller.trigger_soon()
            while not self.service.stopping.is_set():
                news = client.start_idle()
                started = time.monotonic()
                while (
                    not news
                    and time.monotonic() - started < renew
                    and not self.service.stopping.is_set()
                ):
                    news = client.wait_in_idle(timeout=IDLE_POLL_SECONDS)
                news = client.stop_idle() or news
                if news:
                    self.poller.trigger_soon()
        return True


class Service:
    """The scheduler, the pollers and the watchers of one ``mailbot run``."""

    def __init__(self, app: App) -> None:
        self.app = app
        # Open (and migrate) the database before any thread needs it.
        app.engine  # noqa: B018
        self.stopping = threading.Event()
        self.analyser = Analyser(app.config)
        self._send_lock = threading.Lock()
        settings = app.config.settings
        self.zone = ZoneInfo(settings.service.timezone)
        self.scheduler = BlockingScheduler(
            timezone=self.zone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        self.pollers = {m.name: MailboxPoller(self, m) for m in settings.mailboxes if m.enabled}
        self.watchers = [IdleWatcher(self, p) for p in self.pollers.values() if p.mailbox.idle]
        self.heartbeat = app.config.resolve_path(settings.service.heartbeat_file)

    # -- jobs -------------------------------------------------------------------

    def send(self) -> None:
        from mailbot.smtp import send_outbox

        if not self._send_lock.acquire(blocking=False):
            return
        try:
            report = send_outbox(self.app)
            if report.sent or report.failed or report.retrying:
                log.info(report.summary())
        except Exception:
            log.exception("outbox delivery failed")
        finally:
            self._send_lock.release()

    def beat(self) -> None:
        self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
        self.heartbeat.touch()

    def digest(self) -> None:
        try:
            from mailbot.digest import digest_due, queue_digest
        except ImportError:  # pragma: no cover - digest module not installed
            return
        try:
            if digest_due(self.app, now=datetime.now(self.zone)):
                queue_digest(self.app)
                self.send()
        except Exception:
            log.exception("daily digest failed")

    def purge(self) -> None:
        try:
            from mailbot.privacy import purge
        except ImportError:  # pragma: no cover - privacy module not installed
            return
        try:
            report = purge(self.app, actor="system:retention")
            log.info("retention purge: %s", report)
        except Exception:
            log.exception("retention purge failed")

    # -- life cycle -------------------------------------------------------------

    def _guarded_job(self, function: Callable[[], None]) -> Callable[[], None]:
        """``function`` as a scheduler job: skipped once stopping, failures logged."""

        def run() -> None:
            if self.stopping.is_set():
                return
            try:
                function()
            except Exception:
                log.exception("job %s failed", getattr(function, "__name__", function))

        return run

    def start(self) -> None:
        settings = self.app.config.settings
        now = datetime.now(self.zone)
        for name, poller in self.pollers.items():
            self.scheduler.add_job(
                self._guarded_job(poller.trigger),
                "interval",
                seconds=settings.schedule.poll_interval_seconds,
                id=f"poll:{name}",
                next_run_time=now,
            )
        self.scheduler.add_job(
            self._guarded_job(self.send),
            "interval",
            seconds=settings.schedule.send_interval_seconds,
            id="outbox",
            next_run_time=now,
        )
        hour, minute = settings.digest.at.split(":")
        self.scheduler.add_job(
            self._guarded_job(self.digest), "cron", hour=int(hour), minute=int(minute), id="digest"
        )
        # A digest missed while the service was down is sent at start-up.
        self.scheduler.add_job(
            self._guarded_job(self.digest), "date", run_date=now, id="digest-catchup"
        )
        hour, minute = settings.schedule.purge_at.split(":")
        self.scheduler.add_job(
            self._guarded_job(self.purge), "cron", hour=int(hour), minute=int(minute), id="purge"
        )
        self.scheduler.add_job(
            self.beat, "interval", seconds=HEARTBEAT_SECONDS, id="heartbeat", next_run_time=now
        )
        for watcher in self.watchers:
            watcher.start()
        log.info(
            "mailbot running: %d mailboxes, timer poll every %d s, IDLE on %s",
            len(self.pollers),
            settings.schedule.poll_interval_seconds,
            ", ".join(w.mailbox.name for w in self.watchers) or "none",
        )
        self.scheduler.start()  # blocks until stop()

    def stop(self, *_args: object) -> None:
        if self.stopping.is_set():
            return
        log.info("stopping: finishing the message in hand")
        self.stopping.set()
        self.scheduler.shutdown(wait=False)


def run_service(app: App) -> None:
    service = Service(app)
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    try:
        service.start()
    finally:
        service.stopping.set()
        # Running jobs finish the message in hand (polls check `stopping`).
        for executor in service.scheduler._executors.values():
            executor.shutdown(wait=True)
        for watcher in service.watchers:
            watcher.join(timeout=5)
        for poller in service.pollers.values():
            poller.shutdown()
        Path(service.heartbeat).unlink(missing_ok=True)
        log.info("stopped")
