"""`mailbot demo` from the installed entry point: embedded servers, sample mail, real code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

MAILBOT = Path(sys.executable).parent / "mailbot"


def test_demo_runs_the_whole_service(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [str(MAILBOT), "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(tmp_path),
            "TMPDIR": str(scratch),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    references = set(re.findall(r"BSC-\d{4}-\d{4}", out))
    assert len(references) == 3, out
    # Three candidatures: two complete at once, one completed by the letter sent later.
    assert out.count("complete") >= 3
    assert "d.berteloot, n.bataillon" in out  # the one sent to both mailboxes: one dossier
    assert out.count("Objet : [BSC-") == 4  # 2 acknowledgements, 1 notice, 1 completed
    assert "pièces manquantes" in out and "est complet" in out
    assert "ignoré (auto_reply)" in out
    # The throwaway directory (database, blobs, config copy) is gone.
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "var").exists()
