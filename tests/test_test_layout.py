"""No module imports a test module: shared test helpers live in ``tests/fixtures/``.

A test module importing another couples their collection (running one file runs the other's
module-level set-up) and hides shared helpers where nobody looks for them. This walks the AST
of every Python file under ``tests/``, ``bench/`` and ``scripts/``, including imports inside
functions and scripts written as strings for a child process.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [
    path
    for folder in ("tests", "bench", "scripts")
    for path in sorted((ROOT / folder).rglob("*.py"))
    if path != Path(__file__).resolve()  # this file's examples below are strings
]
IMPORT_IN_TEXT = re.compile(
    r"^\s*(?:from|import)\s+(tests\.test_\w+|tests\s+import\s+test_\w+)", re.M
)


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "tests" and parts[1].startswith("test_")


def imported_test_modules(source: str) -> list[str]:
    """The test modules ``source`` imports (by statement, or in a script held in a string)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import test_x / from .test_x import y
                names = [node.module or ""] + [alias.name for alias in node.names]
                found += [f".{n}" for n in names if n.split(".")[0].startswith("test_")]
            elif node.module == "tests":
                found += [f"tests.{a.name}" for a in node.names if a.name.startswith("test_")]
            elif node.module and _is_test_module(node.module):
                found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [m.group(1) for m in IMPORT_IN_TEXT.finditer(node.value)]
    return found


def test_no_module_imports_a_test_module():
    assert len(SCANNED) > 40 and ROOT / "tests" / "test_try.py" in SCANNED
    offenders = {
        str(path.relative_to(ROOT)): names
        for path in SCANNED
        if (names := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert not offenders, offenders


def test_the_check_sees_every_form_of_import():
    assert imported_test_modules("from tests.test_replies import RULES") == ["tests.test_replies"]
    assert imported_test_modules("import tests.test_intake as t") == ["tests.test_intake"]
    assert imported_test_modules("from tests import test_faults, fixtures") == ["tests.test_faults"]
    assert imported_test_modules("def f():\n    from .test_x import y\n") == [".test_x"]
    assert imported_test_modules('S = """\nfrom tests.test_sandbox import probe\n"""') == [
        "tests.test_sandbox"
    ]
    assert imported_test_modules("from tests.fixtures.corpus import POTAGER") == []
    assert imported_test_modules("from tests import fixtures") == []
