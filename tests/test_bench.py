"""The benchmark scripts still run end to end, on small corpora.

Speed and memory are measured in ``bench/``, not judged here: this only
checks that each bench runs against the current code, that the outcomes it
checks itself hold (every message ignored, filed or answered as expected),
and that it reports well-formed figures, so that a change elsewhere cannot
silently break the measurements.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench import backlog, dossiers, harness, latency, memory, watching
from tests.fixtures.dovecot import require_dovecot


@pytest.fixture(scope="module")
def srv() -> Iterator[harness.Servers]:
    require_dovecot()
    with harness.servers() as servers:
        yield servers


def _check(figures: list[harness.Figure], bench: str, lines: int) -> None:
    assert len(figures) == lines
    for figure in figures:
        assert figure.bench == bench
        assert figure.measured, figure
        assert figure.met in (True, False, None)
        if figure.ratio:
            assert float(figure.ratio) > 0, figure
    table = [f.row() for f in figures]
    assert all(len(row) == 7 for row in table)


def test_watching_bench_runs(srv: harness.Servers) -> None:
    srv.dovecot.reset()
    _check(watching.run(srv, quick=True, big=300, small=30), "1 watching", 2)


def test_backlog_bench_runs(srv: harness.Servers) -> None:
    srv.dovecot.reset()
    _check(backlog.run(srv, quick=True, count=120), "2 backlog", 4)


def test_dossiers_bench_runs(srv: harness.Servers) -> None:
    srv.dovecot.reset()
    figures = dossiers.run(srv, quick=True, count=2)
    _check(figures, "3 dossiers", 2)
    assert all("2 filed, 0 to review" in f.what for f in figures)


def test_latency_bench_runs(srv: harness.Servers) -> None:
    srv.dovecot.reset()
    figures = latency.run(srv, quick=True)
    _check(figures, "4 latency", 2)
    assert "0/10 not answered" in figures[1].what


def test_memory_bench_runs(srv: harness.Servers) -> None:
    srv.dovecot.reset()
    _check(memory.run(srv, quick=True), "5 memory", 4)
