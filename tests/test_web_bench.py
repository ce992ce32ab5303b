"""`python -m bench.web` runs end to end on a small database (no timing asserted)."""

from __future__ import annotations

from bench import web
from bench.__main__ import BENCHES


def test_web_bench_runs_on_50_dossiers() -> None:
    figures = web.run(quick=True, count=50)
    timed = [f for f in figures if not f.what.startswith("(info)")]
    parts = [f for f in figures if f.what.startswith("(info) dossier page, CPU of one part")]
    [thread] = [f for f in figures if f.what.startswith("(info) dossier page, CPU time of this")]
    assert thread.measured.endswith(" ms") and float(thread.ratio) > 0 and thread.met is None
    assert [f.what.split(",")[0] for f in timed] == [
        f"{page} page ({how})"
        for page in ("list", "search", "dossier")
        for how in (
            "ASGI call",
            "TestClient",
            "HTTP to uvicorn in a child process",
            "CPU time of the ASGI call",
        )
    ]
    for figure in timed:
        assert figure.bench == "6 web"
        assert "50 dossiers" in figure.what
        assert figure.measured.endswith(" ms")
        assert float(figure.ratio) > 0
        assert figure.met in (True, False)
        assert len(figure.row()) == 7
    assert [f.what.split(": ")[1] for f in parts] == [
        "check",
        "kept page",
        "read (on a change)",
        "wording (on a change)",
        "render (on a change)",
    ]
    assert all(f.met is None and float(f.ratio) > 0 for f in parts)
    assert BENCHES["web"] is web.run
