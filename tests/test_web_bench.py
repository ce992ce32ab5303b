"""`python -m bench.web` runs end to end on a small database (no timing asserted)."""

from __future__ import annotations

from bench import web
from bench.__main__ import BENCHES


def test_web_bench_runs_on_50_dossiers() -> None:
    figures = web.run(quick=True, count=50)
    assert [f.what.split(" page")[0] for f in figures] == ["list", "search", "dossier"]
    for figure in figures:
        assert figure.bench == "6 web"
        assert "50 dossiers" in figure.what
        assert figure.measured.endswith(" ms")
        assert float(figure.ratio) > 0
        assert figure.met in (True, False)
        assert len(figure.row()) == 7
    assert BENCHES["web"] is web.run
