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
multiprocessing pickles into a buffer in the worker's memory. An optional
``MessageBudget`` bounds the wall-clock and CPU time of the whole call: when
it is spent the child is killed and the items left get a ``budget`` failure.

Isolation (``parsers.sandbox_env``): children run with a short environment
(no password, no database URL: the forkserver itself never sees the
worker's), a private ``HOME``/``TMPDIR`` removed after the call, and, where
the kernel allows it, without network. What a child sends back is JSON
(``parsers.sandbox_codec``), never a pickle: a child taken over by a hostile
file cannot run code in the worker, and a malformed message or result is a
``crashed`` item.

Costs, measured on the development machine: the forkserver starts once per
worker process (about 0.9 s, the parsing libraries' imports, and 0.3 s
under load to read ``parsers.sandbox_warmup``'s documents, so that no child
pays the readers' first-use costs: 20-40 ms of CPU a message); then a call
costs about 5-10 ms on top of the work, plus some 5-10 ms for the isolation
(new namespaces, private directory; 19 ms per call in all against 7-13 ms
before, measured back to back on the busy development machine). The forkserver lives as long as the
worker and exits with it; children never outlive their call.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import resource
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from parsers.sandbox_codec import Decoder, MalformedResult, UnencodableResult, dumps, encode, loads
from parsers.sandbox_env import enter_child, install_forkserver_environment

if TYPE_CHECKING:
    from parsers.rules import ParseLimits

# Modules the forkserver imports once, so that each child starts warm
# (parsers.documents imports its libraries lazily, so they are named too);
# the last one reads two built-in documents so that the readers' first-use
# work is done once, in the server, and not in every child.
PRELOAD = (
    "parsers.documents",
    "pdfplumber",
    "pypdf",
    "pypdfium2",
    "docx",
    "PIL.Image",
    "parsers.sandbox_warmup",
)

_CONTEXT_LOCK = threading.Lock()
_CONTEXT: Any = None
# In the child: the connection to the parent, for extend_deadline().
_CHILD_CONN: Connection | None = None
# Largest message a child may send (a DocumentText of 60 pages of 200,000
# characters, with their columns, is some 30 MB of JSON).
MAX_MESSAGE_BYTES = 256 * 2**20
# Time a new child has to start (before its first item's clock runs).
_START_SECONDS = 10.0
# How often the parent looks at a child's CPU time when a budget is set.
_CPU_CHECK_SECONDS = 0.25


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
class MessageBudget:
    """Wall-clock and CPU seconds for ALL the items of one call (one message).

    None: no bound of that kind. CPU is the children's own and that of the
    programs they ran and waited for (Tesseract), as the kernel counts it.
    """

    wall_seconds: float | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class SandboxFailure:
    """Why an item produced no result.

    ``reason`` is one of ``timeout``, ``memory``, ``cpu``, ``crashed``,
    ``exception``, ``budget`` (the call's ``MessageBudget`` was spent before
    or while the item was read); ``detail`` is a short human-readable
    explanation.
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
            install_forkserver_environment()
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
        _CHILD_CONN.send_bytes(dumps(["extend", float(seconds)]))


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
    private_dir: str,
    offset: int,
    memory_mb: int,
    cpu_seconds: int,
) -> None:
    global _CHILD_CONN
    # Our own process group: the parent kills it whole, with any tesseract
    # started by the item, when the deadline passes.
    os.setpgid(0, 0)
    # Before any untrusted byte is read: no secrets, private dirs, no network.
    enter_child(private_dir)
    _CHILD_CONN = conn
    try:
        with open(work_path, "rb") as work:
            # Our parent wrote it (mkstemp: mode 0600, a name of its own).
            func, items, kwargs = pickle.load(work)  # noqa: S301
        items = items[offset:]
        _set_limits(memory_mb, cpu_seconds * max(1, len(items)) + 1)
        for index, item in enumerate(items):
            _cpu_budget(cpu_seconds)
            conn.send_bytes(dumps(["start", index]))
            conn.send_bytes(_run_item(func, item, index=index, kwargs=kwargs))
    finally:
        conn.close()


def _run_item(func: Callable[..., Any], item: Any, *, index: int, kwargs: dict[str, Any]) -> bytes:
    """The message reporting ``func(item, **kwargs)``: its encoded result or why it failed."""
    try:
        result = func(item, **kwargs)
    except MemoryError:
        return dumps(["failed", index, "memory", "memory limit exceeded"])
    except RecursionError:
        return dumps(["failed", index, "exception", "recursion too deep"])
    except Exception as err:
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        return dumps(["failed", index, "exception", detail[:500]])
    try:
        return dumps(["done", index, encode(result)])
    except (UnencodableResult, RecursionError, ValueError) as err:
        return dumps(["failed", index, "exception", f"unencodable result: {err}"[:500]])


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
    # Set when the child sent something that is not a well-formed message.
    malformed: SandboxFailure | None = None


def _start(work_path: str, *, private_dir: str, offset: int, limits: SandboxLimits) -> _Run:
    ctx = _context()
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child_main,
        name=_CHILD_NAME,
        args=(child_conn,),
        kwargs={
            "work_path": work_path,
            "private_dir": private_dir,
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
    # The item's own clock starts when the child says it starts the item;
    # until then the child imports the module of its function (a test
    # module imports pytest: more than half a second on a busy machine).
    start_allowance = max(limits.timeout_seconds, _START_SECONDS)
    return _Run(process, parent_conn, offset, deadline=time.monotonic() + start_allowance)


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


class _Watch:
    """What the parent knows of one call: results, decoder, the call's budget."""

    def __init__(
        self, *, total: int, limits: SandboxLimits, decoder: Decoder, budget: MessageBudget
    ) -> None:
        self.results: list[Any] = [_PENDING] * total
        self.limits = limits
        self.decoder = decoder
        self.budget = budget
        started = time.monotonic()
        self.budget_deadline = (
            started + budget.wall_seconds if budget.wall_seconds is not None else math.inf
        )
        # CPU seconds of the children that have finished, and of the current one.
        self.cpu_spent = 0.0
        self.cpu_current = 0.0

    def over_budget(self) -> SandboxFailure | None:
        if time.monotonic() >= self.budget_deadline:
            return SandboxFailure(
                "budget", f"the message's time budget of {self.budget.wall_seconds:g} s is spent"
            )
        cpu = self.budget.cpu_seconds
        if cpu is not None and self.cpu_spent + self.cpu_current >= cpu:
            return SandboxFailure("budget", f"the message's CPU budget of {cpu:g} s is spent")
        return None


def _drain(run: _Run, watch: _Watch) -> bool:
    """Read what the child has sent; True once the pipe is at end of file."""
    while run.malformed is None and run.conn.poll():
        try:
            data = run.conn.recv_bytes(MAX_MESSAGE_BYTES)
        except (EOFError, OSError):
            # OSError: also a message over MAX_MESSAGE_BYTES.
            return True
        try:
            _handle(run, watch, loads(data))
        except MalformedResult as err:
            run.malformed = SandboxFailure("crashed", f"malformed message from the child: {err}")
    return False


def _handle(run: _Run, watch: _Watch, message: Any) -> None:
    """Act on one decoded message; ``MalformedResult`` when it is not one we send."""
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise MalformedResult("not a message")
    kind, args = message[0], message[1:]
    if kind == "extend":
        if len(args) != 1 or not _is_number(args[0]) or args[0] < 0:
            raise MalformedResult("malformed extend")
        run.deadline += args[0]
        return
    if not args or not isinstance(args[0], int) or isinstance(args[0], bool):
        raise MalformedResult(f"malformed {kind[:20]!r}")
    index = run.offset + args[0]
    if not run.offset <= index < len(watch.results):
        raise MalformedResult("item index out of range")
    if kind == "start" and len(args) == 1:
        run.current = index
        run.deadline = time.monotonic() + watch.limits.timeout_seconds
    elif kind == "done" and len(args) == 2:
        try:
            watch.results[index] = watch.decoder.decode(args[1])
        except MalformedResult as err:
            watch.results[index] = SandboxFailure("crashed", f"malformed result: {err}"[:500])
        run.current = None
    elif kind == "failed" and len(args) == 3 and all(isinstance(a, str) for a in args[1:]):
        reason = args[1] if args[1] in ("memory", "exception") else "crashed"
        watch.results[index] = SandboxFailure(reason, args[2][:500])
        run.current = None
    else:
        raise MalformedResult(f"unknown message {kind[:20]!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_PENDING = object()


def map_sandboxed(
    func: Callable[..., Any],
    items: Iterable[Any],
    *,
    limits: SandboxLimits,
    kwargs: dict[str, Any] | None = None,
    result_types: Iterable[type] = (),
    budget: MessageBudget | None = None,
) -> list[Any]:
    """``[func(item, **kwargs) for item in items]`` in one sandboxed child.

    Each item gets ``limits`` (wall clock from the moment the child starts it,
    CPU seconds of its own, the shared address-space limit); ``budget``
    bounds the whole call. An item that fails yields a ``SandboxFailure``; a
    child killed on an item is replaced by a new one for the items after it.
    ``func`` must be a module-level function of an importable module, not of
    the main script (children do not import it: such a call yields a
    ``crashed`` failure per item), and items picklable. Results are plain
    data (see ``parsers.sandbox_codec``) and instances of the frozen
    dataclasses named in ``result_types``; anything else is a failure.
    """
    todo = list(items)
    if not todo:
        return []
    watch = _Watch(
        total=len(todo),
        limits=limits,
        decoder=Decoder(result_types),
        budget=budget or MessageBudget(),
    )
    private_dir = tempfile.mkdtemp(prefix="mailbot-sandbox-")
    try:
        work_path = _write_work(func, todo, dict(kwargs or {}), directory=private_dir)
        offset = 0
        while offset < len(todo):
            spent = watch.over_budget()
            if spent is not None:
                _fail_pending(watch.results, spent)
                break
            run = _start(work_path, private_dir=private_dir, offset=offset, limits=limits)
            try:
                offset = _supervise(run, watch)
            finally:
                _close(run)
                watch.cpu_spent += watch.cpu_current
                watch.cpu_current = 0.0
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    return watch.results


def _write_work(
    func: Callable[..., Any], items: list[Any], kwargs: dict[str, Any], *, directory: str
) -> str:
    """Pickle the work to a private temp file; return its path.

    Process arguments are pickled into one in-memory buffer (a 25 MB
    attachment cost 29 MB more in the worker at each child start); pickled
    to a file, large bytes go straight to it, and every child (a replacement
    after a crash too) reads them from there. (Parent to child only: the
    child trusts its parent, never the other way round.)
    """
    fd, path = tempfile.mkstemp(prefix="work-", suffix=".pickle", dir=directory)
    with os.fdopen(fd, "wb") as work:
        pickle.dump((func, items, kwargs), work, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _child_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds of a live child and of the programs it waited for (/proc/PID/stat)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): utime is the 14th field.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    except (ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _supervise(run: _Run, watch: _Watch) -> int:
    """Watch one child; return the index of the first item still to do."""
    sentinel = run.process.sentinel
    results, total = watch.results, len(watch.results)
    check_cpu = watch.budget.cpu_seconds is not None
    while True:
        deadline = min(run.deadline, watch.budget_deadline)
        remaining = deadline - time.monotonic()
        if check_cpu:
            remaining = min(remaining, _CPU_CHECK_SECONDS)
        ready = wait([run.conn, sentinel], timeout=remaining) if remaining > 0 else []
        eof = _drain(run, watch)
        if check_cpu:
            cpu = _child_cpu_seconds(run.process.pid)
            if cpu is not None:
                watch.cpu_current = max(watch.cpu_current, cpu)
        if all(r is not _PENDING for r in results[run.offset :]):
            return total
        if run.malformed is not None:
            _kill(run)
            run.process.join()
            return _record_failure(run, results, run.malformed)
        if eof or sentinel in ready:
            # The child is gone (or going) before finishing its items.
            run.process.join(max(0.1, run.deadline - time.monotonic()))
            if run.process.is_alive():
                _kill(run)
                run.process.join()
            return _record_failure(run, results, _death_reason(run.process.exitcode, watch.limits))
        spent = watch.over_budget()
        if spent is not None:
            _kill(run)
            run.process.join()
            _drain(run, watch)
            _fail_pending(results, spent)
            return total
        if time.monotonic() >= run.deadline:
            _kill(run)
            run.process.join()
            _drain(run, watch)
            if all(r is not _PENDING for r in results[run.offset :]):
                return total
            timeout = watch.limits.timeout_seconds
            failure = SandboxFailure("timeout", f"no result after {timeout:g} s")
            return _record_failure(run, results, failure)


def _fail_pending(results: list[Any], failure: SandboxFailure) -> None:
    for index, result in enumerate(results):
        if result is _PENDING:
            results[index] = failure


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
