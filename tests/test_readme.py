"""The README's promises: two Quickstart commands, the second being what CI runs."""

from __future__ import annotations

import re

from tests.fixtures.config import REPO_ROOT


def quickstart_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S)
    assert block, "no fenced block under ## Quickstart"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_has_exactly_two_commands():
    assert quickstart_commands() == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert quickstart_commands()[1] in lines


def test_makefile_targets_exist():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "setup"):
        assert re.search(rf"^{target}:", makefile, re.M), target
