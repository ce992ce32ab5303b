"""The sandbox: limits, failures as values, no leaked processes, small overhead.

The functions run in the child are module-level so that the child can import
them by name.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsers.documents import detect_kind
from parsers.sandbox import (
    SandboxFailure,
    SandboxLimits,
    extend_deadline,
    map_sandboxed,
    run_sandboxed,
)

LIMITS = SandboxLimits(timeout_seconds=1.5, memory_mb=512, cpu_seconds=2)


def double(x: int) -> int:
    return 2 * x


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 2**20))


def spin(_: object) -> None:
    while True:
        pass


def fail(message: str) -> None:
    raise ValueError(message)


def die(_: object) -> None:
    os._exit(3)


def abort(_: object) -> None:
    os.abort()


def start_grandchild(pid_file: str) -> None:
    child = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(60)


def slow_but_announced(seconds: float) -> float:
    extend_deadline(seconds + 2)
    time.sleep(seconds)
    return seconds


def unpicklable(_: object) -> object:
    return lambda: None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def test_results_in_order():
    assert map_sandboxed(double, [1, 2, 3], limits=LIMITS) == [2, 4, 6]
    assert run_sandboxed(double, 21, limits=LIMITS) == 42


def test_empty_input_starts_nothing():
    assert map_sandboxed(double, [], limits=LIMITS) == []


def test_timeout_kills_the_item_and_the_rest_go_on():
    started = time.monotonic()
    results = map_sandboxed(sleep_for, [0.01, 30, 0.02], limits=LIMITS)
    elapsed = time.monotonic() - started
    assert results[0] == 0.01 and results[2] == 0.02
    assert isinstance(results[1], SandboxFailure) and results[1].reason == "timeout"
    assert elapsed < LIMITS.timeout_seconds + 2


def test_memory_limit():
    results = map_sandboxed(allocate, [10, 2048, 10], limits=LIMITS)
    assert results[0] == results[2] == 10 * 2**20
    assert isinstance(results[1], SandboxFailure) and results[1].reason == "memory"


def test_cpu_limit():
    limits = SandboxLimits(timeout_seconds=20, memory_mb=512, cpu_seconds=1)
    started = time.monotonic()
    (result,) = map_sandboxed(spin, [None], limits=limits)
    assert isinstance(result, SandboxFailure) and result.reason == "cpu"
    assert time.monotonic() - started < 5


def test_cpu_budget_is_per_item():
    limits = SandboxLimits(timeout_seconds=20, memory_mb=512, cpu_seconds=1)
    assert map_sandboxed(double, list(range(50)), limits=limits) == [2 * n for n in range(50)]


def test_exception_is_a_value():
    (result,) = map_sandboxed(fail, ["bad input"], limits=LIMITS)
    assert result == SandboxFailure("exception", "ValueError: bad input")


@pytest.mark.parametrize(("func", "reason"), [(die, "crashed"), (abort, "crashed")])
def test_crashes(func, reason):
    results = map_sandboxed(func, [None, None], limits=LIMITS)
    assert all(isinstance(r, SandboxFailure) and r.reason == reason for r in results)


def test_unpicklable_result():
    (result,) = map_sandboxed(unpicklable, [None], limits=LIMITS)
    assert isinstance(result, SandboxFailure) and result.reason == "exception"


def test_extend_deadline_for_announced_slow_work():
    limits = SandboxLimits(timeout_seconds=0.5, memory_mb=512, cpu_seconds=2)
    assert map_sandboxed(slow_but_announced, [1.0], limits=limits) == [1.0]


def test_a_killed_child_takes_its_own_children_along(tmp_path):
    pid_file = tmp_path / "pid"
    limits = SandboxLimits(timeout_seconds=1, memory_mb=512, cpu_seconds=2)
    (result,) = map_sandboxed(start_grandchild, [str(pid_file)], limits=limits)
    assert isinstance(result, SandboxFailure) and result.reason == "timeout"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_no_leaked_processes_or_pipes():
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(5):
        map_sandboxed(sleep_for, [0.0, 30], limits=SandboxLimits(0.3, 512, 2))
        map_sandboxed(fail, ["x"], limits=LIMITS)
    gc.collect()
    assert multiprocessing.active_children() == []
    assert set(os.listdir("/proc/self/fd")) <= before | set()


def test_overhead_is_reported(capsys):
    # A function the forkserver has preloaded, as extract_document is (this
    # test module's functions are imported afresh by each child). Timed for
    # information only: bench/ measures speed, tests do not assert it.
    map_sandboxed(detect_kind, [b""], limits=LIMITS)  # the forkserver is started
    runs = 20
    started = time.perf_counter()
    for _ in range(runs):
        assert map_sandboxed(detect_kind, [b"%PDF-1.7"], limits=LIMITS) == [("pdf", "pdf")]
    per_call = (time.perf_counter() - started) / runs
    with capsys.disabled():
        print(f"\nsandbox overhead: {per_call * 1000:.1f} ms per call (warm forkserver)")


_MAIN_SCRIPT = """
import json, os, sys
# Each import of this file as a module (__main__, __mp_main__) leaves a line.
with open(os.environ["MARKER"], "a") as marker:
    marker.write(__name__ + "\\n")
import sqlalchemy  # the service's main module imports the database layer
from parsers.sandbox import map_sandboxed, SandboxLimits
from tests.fixtures.sandbox_probe import child_modules

if __name__ == "__main__":
    limits = SandboxLimits(timeout_seconds=20, memory_mb=512, cpu_seconds=10)
    print(json.dumps(map_sandboxed(child_modules, [0, 1], limits=limits)))
"""


def test_children_never_import_the_main_script(tmp_path):
    """The service's main script (the CLI) is imported neither by the children nor the forkserver.

    It used to be preloaded in the forkserver: 47 MB more in the server and in
    every child, for nothing they use.
    """
    script, marker = tmp_path / "main_script.py", tmp_path / "imports"
    script.write_text(_MAIN_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "MARKER": str(marker), "PYTHONPATH": str(Path(__file__).parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], []]
    assert marker.read_text().split() == ["__main__"]


def warmed_up(_item: int) -> bool:
    return "parsers.sandbox_warmup" in sys.modules


def test_children_start_with_the_readers_warm():
    """The forkserver read the built-in documents before forking (``PRELOAD``)."""
    assert map_sandboxed(warmed_up, [0], limits=LIMITS) == [True]


def test_the_warmup_document_runs_every_pdf_reading_path():
    """Page 1 through pdfium with the table search and a drawn ticked box; page 2 the
    full pdfminer way (too little text for pdfium) with a form field. The committed
    file is the one ``make_warmup_pdf`` makes."""
    from parsers.documents import DocumentLimits, extract_document, pdfium
    from parsers.sandbox_warmup import WARMUP_PDF, make_warmup_pdf
    from tests.fixtures.corpus import attachment

    data = WARMUP_PDF.read_bytes()
    assert data == make_warmup_pdf()
    assert sorted(pdfium._pdfium_pages(data, 2)) == [1]
    doc = extract_document(attachment("warmup.pdf", data), limits=DocumentLimits(), tesseract=None)
    assert doc.warnings == ()
    assert "☒ Initiative réalisée" in doc.pages[0]
    assert doc.tables[0][0][0] == ("Libellé 1", "Valeur 1")
    assert doc.form_fields["intitule"].value == "Jardin partagé"
    assert doc.form_fields["intitule"].widgets[0].label_left == "Intitulé du projet"
