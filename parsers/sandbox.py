"""Run untrusted-input parsing in a child process with hard limits.

PDF, DOCX and image libraries have known inputs that recurse forever, loop
forever or allocate gigabytes (pdfminer among them). Such work runs here, in
a child process that has an address-space limit (``RLIMIT_AS``) and a CPU
limit (``RLIMIT_CPU``) and is killed, with anything it started, when its
wall-clock deadline passes. A failure becomes a ``SandboxFailure`` value, never
an exception or a hang in the worker.

Children come from multiprocessing's *forkserver*: a clean server process
(no threads, no database connections, no open mailboxes inherited) that has
already imported the parsing libraries, so starting a child costs a fork and
not an interpreter start plus a second of imports.

``map_sandboxed`` runs many items (all the documents of one message) in ONE
child; the child reports progress item by item, so when an item kills the
child only that item fails and a fresh child carries on with the rest. The
items reach the child through a private temp file (pickled once, large
bytes written straight to it), not through the process arguments, which
multiprocessing pickles into a buffer in the worker's memory.

Costs, measured on the development machine: the forkserver starts once per
worker process (about 0.9 s, the parsing libraries' imports); then a call
costs about 5-10 ms on top of the work. The forkserver lives as long as the
worker and exits with it; children never outlive their call.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import resource
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parsers.rules import ParseLimits

# Modules the forkserver imports once, so that each child starts warm
# (parsers.documents imports its libraries lazily, so they are named too).
PRELOAD = ("parsers.documents", "pdfplumber", "pypdf", "pypdfium2", "docx", "PIL.Image")

_CONTEXT_LOCK = threading.Lock()
_CONTEXT: Any = None
# In the child: the connection to the parent, for extend_deadline().
_CHILD_CONN: Connection | None = None


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed item: wall-clock seconds, address space, CPU seconds."""

    timeout_seconds: float = 60.0
    memory_mb: int = 1024
    cpu_seconds: int = 60

    @classmethod
    def from_settings(cls, limits: ParseLimits) -> SandboxLimits:
        return cls(
            timeout_seconds=limits.parse_timeout_seconds,
            memory_mb=limits.parse_memory_mb,
            cpu_seconds=limits.parse_cpu_seconds,
        )


@dataclass(frozen=True)
class SandboxFailure:
    """Why an item produced no result.

    ``reason`` is one of ``timeout``, ``memory``, ``cpu``, ``crashed``,
    ``exception``; ``detail`` is a short human-readable explanation.
    """

    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


# Name of every sandbox child (``multiprocessing.Process(name=...)``).
_CHILD_NAME = "mailbot-sandbox"


def _install_main_filter() -> None:
    """Sandbox children never import the parent's main module.

    multiprocessing sends each child the parent's main script or module
    (``spawn.get_preparation_data``) and the child imports it (as
    ``__mp_main__``) before running its target: for the service, the whole
    CLI with SQLAlchemy, once per child (0.4 s and more). Preloading it in the
    forkserver instead cost 47 MB in the server and in every child. The
    children need nothing from it (their target and work are functions of
    ``parsers``), so the main entries are left out for processes named
    ``_CHILD_NAME``; other processes are not affected.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_mailbot_filter", False):
        return

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        if name == _CHILD_NAME:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    without_main._mailbot_filter = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = without_main


def _context() -> Any:
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(PRELOAD))
            _install_main_filter()
            _CONTEXT = ctx
        return _CONTEXT


# --------------------------------------------------------------------------
# Child side


def extend_deadline(seconds: float) -> None:
    """Called by sandboxed code before slow, separately bounded work (OCR).

    The parent moves the current item's wall-clock deadline by ``seconds``.
    Outside a sandbox this does nothing.
    """
    if _CHILD_CONN is not None:
        _CHILD_CONN.send(("extend", float(seconds)))


def _set_limits(memory_mb: int, cpu_seconds: int) -> None:
    memory = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # Core dumps of a child killed by a limit are of no use and cost disk.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _cpu_budget(cpu_seconds, hard=True)


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_budget(cpu_seconds: int, *, hard: bool = False) -> None:
    """Allow ``cpu_seconds`` more CPU seconds from now (soft limit: SIGXCPU)."""
    soft = int(_cpu_used()) + cpu_seconds + 1
    _, current_hard = resource.getrlimit(resource.RLIMIT_CPU)
    # Each item gets its own CPU budget under one hard limit (which the
    # child cannot raise again), set at the start for all the items.
    new_hard = soft + 1 if hard or current_hard == resource.RLIM_INFINITY else current_hard
    resource.setrlimit(resource.RLIMIT_CPU, (min(soft, new_hard), new_hard))


def _child_main(
    conn: Connection,
    *,
    work_path: str,
    offset: int,
    memory_mb: int,
    cpu_seconds: int,
) -> None:
    global _CHILD_CONN
    # Our own process group: the parent kills it whole, with any tesseract
    # started by the item, when the deadline passes.
    os.setpgid(0, 0)
    _CHILD_CONN = conn
    try:
        with open(work_path, "rb") as work:
            # Our parent wrote it (mkstemp: mode 0600, a name of its own).
            func, items, kwargs = pickle.load(work)  # noqa: S301
        items = items[offset:]
        _set_limits(memory_mb, cpu_seconds * max(1, len(items)) + 1)
        for index, item in enumerate(items):
            _cpu_budget(cpu_seconds)
            conn.send(("start", index))
            try:
                result = func(item, **kwargs)
            except MemoryError:
                conn.send(("failed", index, "memory", "memory limit exceeded"))
                continue
            except RecursionError:
                conn.send(("failed", index, "exception", "recursion too deep"))
                continue
            except Exception as err:
                detail = "".join(traceback.format_exception_only(type(err), err)).strip()
                conn.send(("failed", index, "exception", detail[:500]))
                continue
            try:
                conn.send(("done", index, result))
            except (pickle.PicklingError, TypeError, AttributeError, ValueError) as err:
                # pickle failures: the result cannot cross the pipe.
                conn.send(("failed", index, "exception", f"unpicklable result: {err}"))
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Parent side


@dataclass
class _Run:
    """One child and what it has reported so far."""

    process: Any
    conn: Connection
    offset: int
    current: int | None = None
    deadline: float = 0.0


def _start(work_path: str, offset: int, limits: SandboxLimits) -> _Run:
    ctx = _context()
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        name=_CHILD_NAME,
        args=(child_conn,),
        kwargs={
            "work_path": work_path,
            "offset": offset,
            "memory_mb": limits.memory_mb,
            "cpu_seconds": limits.cpu_seconds,
        },
        daemon=True,
    )
    try:
        process.start()
    finally:
        # The child has its own copy; ours must go or EOF never shows.
        child_conn.close()
    return _Run(process, parent_conn, offset, deadline=time.monotonic() + limits.timeout_seconds)


def _kill(run: _Run) -> None:
    pid = run.process.pid
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    if run.process.is_alive():
        run.process.kill()


def _close(run: _Run) -> None:
    run.process.join(5)
    if run.process.is_alive():
        _kill(run)
        run.process.join()
    run.conn.close()
    run.process.close()


def _death_reason(exitcode: int | None, limits: SandboxLimits) -> SandboxFailure:
    if exitcode is None:
        return SandboxFailure("crashed", "child vanished")
    if exitcode < 0:
        number = -exitcode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else ""
        if number == signal.SIGXCPU:
            return SandboxFailure("cpu", f"CPU limit of {limits.cpu_seconds} s exceeded")
        if number == signal.SIGKILL:
            # Not ours (we only kill on timeout): the kernel's OOM killer.
            return SandboxFailure("memory", "killed by SIGKILL (out of memory?)")
        if number in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
            # Native code that cannot allocate under RLIMIT_AS aborts or
            # segfaults, so the memory limit is the likely cause.
            return SandboxFailure(
                "crashed",
                f"killed by {name} (possibly the memory limit of {limits.memory_mb} MB)",
            )
        return SandboxFailure("crashed", f"killed by signal {name or number}")
    return SandboxFailure("crashed", f"child exited with status {exitcode}")


def _drain(run: _Run, results: list[Any], limits: SandboxLimits) -> bool:
    """Read what the child has sent; True once the pipe is at end of file."""
    while run.conn.poll():
        try:
            message = run.conn.recv()
        except (EOFError, OSError):
            return True
        kind = message[0]
        if kind == "start":
            run.current = run.offset + message[1]
            run.deadline = time.monotonic() + limits.timeout_seconds
        elif kind == "extend":
            run.deadline += message[1]
        elif kind == "done":
            results[run.offset + message[1]] = message[2]
            run.current = None
        elif kind == "failed":
            results[run.offset + message[1]] = SandboxFailure(message[2], message[3])
            run.current = None
    return False


_PENDING = object()


def map_sandboxed(
    func: Callable[..., Any],
    items: Iterable[Any],
    *,
    limits: SandboxLimits,
    kwargs: dict[str, Any] | None = None,
) -> list[Any]:
    """``[func(item, **kwargs) for item in items]`` in one sandboxed child.

    Each item gets ``limits`` (wall clock from the moment the child starts it,
    CPU seconds of its own, the shared address-space limit). An item that
    fails yields a ``SandboxFailure``; a child killed on an item is replaced
    by a new one for the items after it. ``func`` must be a module-level
    function of an importable module, not of the main script (children do
    not import it: such a call yields a ``crashed`` failure per item), and
    items and results picklable.
    """
    todo = list(items)
    results: list[Any] = [_PENDING] * len(todo)
    if not todo:
        return results
    work_path = _write_work(func, todo, dict(kwargs or {}))
    try:
        offset = 0
        while offset < len(todo):
            run = _start(work_path, offset, limits)
            try:
                offset = _supervise(run, results, limits=limits, total=len(todo))
            finally:
                _close(run)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(work_path)
    return results


def _write_work(func: Callable[..., Any], items: list[Any], kwargs: dict[str, Any]) -> str:
    """Pickle the work to a private temp file; return its path.

    Process arguments are pickled into one in-memory buffer (a 25 MB
    attachment cost 29 MB more in the worker at each child start); pickled
    to a file, large bytes go straight to it, and every child (a replacement
    after a crash too) reads them from there.
    """
    fd, path = tempfile.mkstemp(prefix="mailbot-sandbox-", suffix=".pickle")
    try:
        with os.fdopen(fd, "wb") as work:
            pickle.dump((func, items, kwargs), work, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def _supervise(run: _Run, results: list[Any], *, limits: SandboxLimits, total: int) -> int:
    """Watch one child; return the index of the first item still to do."""
    sentinel = run.process.sentinel
    while True:
        remaining = run.deadline - time.monotonic()
        ready = wait([run.conn, sentinel], timeout=remaining) if remaining > 0 else []
        eof = _drain(run, results, limits)
        if all(r is not _PENDING for r in results[run.offset :]):
            return total
        if eof or sentinel in ready:
            # The child is gone (or going) before finishing its items.
            run.process.join(max(0.1, run.deadline - time.monotonic()))
            if run.process.is_alive():
                _kill(run)
                run.process.join()
            return _record_failure(run, results, _death_reason(run.process.exitcode, limits))
        if time.monotonic() >= run.deadline:
            _kill(run)
            run.process.join()
            _drain(run, results, limits)
            if all(r is not _PENDING for r in results[run.offset :]):
                return total
            failure = SandboxFailure("timeout", f"no result after {limits.timeout_seconds:g} s")
            return _record_failure(run, results, failure)


def _record_failure(run: _Run, results: list[Any], failure: SandboxFailure) -> int:
    failed = run.current if run.current is not None else _first_pending(results)
    results[failed] = failure
    return failed + 1


def _first_pending(results: list[Any]) -> int:
    return next(i for i, r in enumerate(results) if r is _PENDING)


def _call(packed: tuple[Callable[..., Any], tuple, dict]) -> Any:
    func, args, kwargs = packed
    return func(*args, **kwargs)


def run_sandboxed(
    func: Callable[..., Any], *args: Any, limits: SandboxLimits, **kwargs: Any
) -> Any:
    """``func(*args, **kwargs)`` in a sandboxed child: its result or a ``SandboxFailure``."""
    return map_sandboxed(_call, [(func, args, kwargs)], limits=limits)[0]
