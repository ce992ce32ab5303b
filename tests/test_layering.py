"""The layers only point down: mailbot -> parsers, storage; never back up.

``parsers/`` is pure (bytes in, frozen data out) and must not import
``mailbot`` or ``storage``; ``storage/`` never parses mail and must not
import ``parsers`` or ``mailbot``. Every module's source is read as an AST,
so imports under ``if TYPE_CHECKING:``, inside functions and through
``importlib.import_module("...")`` all count. ``mailbot/`` may import both;
it is walked too, to show the walker sees the imports it should.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Package -> top-level packages it must never import.
FORBIDDEN = {
    "parsers": frozenset({"mailbot", "storage"}),
    "storage": frozenset({"parsers", "mailbot"}),
    "mailbot": frozenset(),
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module a ``from ... import`` names, relative ones resolved."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in one file, wherever it is written."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, _absolute(node, path)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(package: str) -> list[str]:
    """``file:line imports module`` for every import ``package`` must not make."""
    banned = FORBIDDEN[package]
    out = []
    for path in _modules(package):
        for line, module in sorted(imports_of(path)):
            if module.split(".")[0] in banned:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("package", ["parsers", "storage"])
def test_layer_imports_nothing_above_it(package):
    found = violations(package)
    assert not found, f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(
        found
    )


def test_the_walker_sees_mailbot_importing_the_layers_below():
    # mailbot wires parsers and storage together: if the walker did not see
    # those imports, the two tests above could not fail either.
    seen = {module.split(".")[0] for path in _modules("mailbot") for _, module in imports_of(path)}
    assert {"parsers", "storage"} <= seen


def test_the_walker_finds_every_kind_of_import(tmp_path, monkeypatch):
    package = tmp_path / "parsers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from mailbot.config import Rules\n"
        "def late():\n"
        "    import storage.models\n"
        "    importlib.import_module('mailbot.cli')\n"
        "from .text import fold\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("parsers") == [
        "parsers/bad.py:3 imports mailbot.config",
        "parsers/bad.py:5 imports storage.models",
        "parsers/bad.py:6 imports mailbot.cli",
    ]
