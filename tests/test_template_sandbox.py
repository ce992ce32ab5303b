"""Admin templates cannot run code: `mailbot config check` names an unsafe one and runs nothing.

The attack of issue 14 (finding 6): a template reaching Python through
``cycler.__init__.__globals__.os`` ran during ``config check`` and printed a
password variable. Each test puts such a template in a copy of the shipped
config, with the password variables set, and runs the real ``mailbot``
executable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot.cli import main
from mailbot.config import load_config
from tests.fixtures.config import TEST_SECRETS

PASSWORD = TEST_SECRETS["MAILBOT_SMTP_PASSWORD"]


def run_mailbot(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "mailbot"
    return subprocess.run(
        [str(exe), "--config", str(config_dir), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=config_dir.parent,
        env={**os.environ, **TEST_SECRETS},
        timeout=120,
    )


def add_line(config_dir: Path, name: str, line: str) -> tuple[Path, int]:
    """Append ``line`` to a template; return its path and the line's number."""
    path = config_dir / "templates" / name
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")
    return path, len((text + line).splitlines())


@pytest.mark.parametrize(
    ("name", "expression"),
    [
        (
            "acknowledgement.txt.j2",
            "{{ cycler.__init__.__globals__.os.popen('echo $MAILBOT_SMTP_PASSWORD;"
            " touch MARKER').read() }}",
        ),
        ("acknowledgement.txt.j2", "{{ reference.__class__.__mro__ }}"),
        ("completed.subject.j2", '{{ reference|attr("__class__") }}'),
        ("digest.txt.j2", "{{ lipsum['__globals__'] }}"),
        ("missing_pieces.html.j2", "{% for c in ().__class__.__base__.mro() %}{{ c }}{% endfor %}"),
    ],
)
def test_config_check_names_an_unsafe_template_and_runs_nothing(config_dir, name, expression):
    marker = config_dir.parent / "MARKER"
    path, line = add_line(config_dir, name, expression.replace("MARKER", str(marker)))
    done = run_mailbot(config_dir, "config", "check")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"{path}:{line}: unsafe template" in output
    assert PASSWORD not in output
    assert not marker.exists()


def test_the_sandbox_refuses_what_the_check_cannot_see(config_dir, capsys):
    """A key built at run time is refused by the sandbox when the template runs."""
    marker = config_dir.parent / "MARKER"
    key = "'__glo' ~ 'bals__'"
    path, line = add_line(
        config_dir,
        "acknowledgement.txt.j2",
        f"{{{{ cycler.__init__[{key}].os.popen('touch {marker}').read() }}}}",
    )
    # The static check does see __init__; remove it to reach the run-time sandbox.
    path.write_text(
        path.read_text(encoding="utf-8").replace("cycler.__init__", "cycler['__ini' ~ 't__']"),
        encoding="utf-8",
    )
    code = main(["--config", str(config_dir), "config", "check", "--no-secrets"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}:{line}: cannot render" in err and "unsafe" in err
    assert not marker.exists()


def test_the_shipped_templates_render_in_the_immutable_sandbox(config_dir):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    config = load_config(config_dir)
    assert isinstance(config.templates, ImmutableSandboxedEnvironment)
    done = run_mailbot(config_dir, "config", "check")
    assert done.returncode == 0, done.stderr
