"""Commands that render no template load the config without compiling the templates.

``dossiers list`` paid about 70 ms compiling sixteen templates it never used
(issue 18). With ``load_config(check_templates=False)`` they are only listed;
each is compiled when first used, and refused then exactly as ``config
check`` refuses it at load (file, line, nothing run). The service and
``config check`` still load with every template checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from mailbot import digest, replies
from mailbot.cli import main
from mailbot.config import load_config
from mailbot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _append(config_dir: Path, name: str, line: str) -> tuple[Path, int]:
    path = config_dir / "templates" / name
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n" + line + "\n"
    path.write_text(text, encoding="utf-8")
    return path, len(text.splitlines())


def test_loading_without_the_templates_check_lists_them_and_imports_no_jinja2(config_dir):
    script = (
        "import json, sys\n"
        "from mailbot.config import load_config\n"
        "config = load_config(sys.argv[1], check_templates=False)\n"
        "print(json.dumps([list(config.template_names), 'jinja2' in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(config_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names, jinja2_imported = json.loads(done.stdout)
    assert names == list(load_config(config_dir).template_names)
    assert len(names) >= 16
    assert jinja2_imported is False


def test_templates_compiled_on_demand_render_as_when_checked_at_load(config_dir):
    config = load_config(config_dir, check_templates=False)
    replies.check_templates(config)  # renders every reply template with sample data
    digest.check_templates(config)
    name = "acknowledgement.txt.j2"
    context = {**replies.common_template_context(config), **replies.sample_context(config)}
    on_demand = config.templates.get_template(name).render(context)
    assert on_demand == load_config(config_dir).templates.get_template(name).render(context)


def test_an_unsafe_template_is_refused_when_first_compiled(config_dir):
    marker = config_dir.parent / "MARKER"
    path, line = _append(
        config_dir,
        "acknowledgement.txt.j2",
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
    )
    config = load_config(config_dir, check_templates=False)  # not compiled yet
    with pytest.raises(ConfigError) as refused:
        config.templates.get_template("acknowledgement.txt.j2")
    assert [(p.file, p.line) for p in refused.value.problems] == [(str(path), line)] * 2
    assert all("unsafe template" in p.message for p in refused.value.problems)
    with pytest.raises(ConfigError) as at_load:
        load_config(config_dir)
    assert at_load.value.problems == refused.value.problems
    assert not marker.exists()


def test_a_broken_template_is_refused_when_first_compiled(config_dir):
    path, line = _append(config_dir, "completed.subject.j2", "{% if %}")
    config = load_config(config_dir, check_templates=False)
    with pytest.raises(jinja2.TemplateSyntaxError) as refused:
        config.templates.get_template("completed.subject.j2")
    assert refused.value.lineno == line
    with pytest.raises(ConfigError) as at_load:
        load_config(config_dir)
    assert [(p.file, p.line) for p in at_load.value.problems] == [(str(path), line)]
    assert "template error" in at_load.value.problems[0].message


def test_only_the_commands_that_render_nothing_skip_the_templates_check(
    config_dir, secrets_env, capsys
):
    path, line = _append(config_dir, "digest.txt.j2", "{{ reference.__class__ }}")
    base = ["--config", str(config_dir)]
    assert main([*base, "dossiers", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    for command in (["config", "check"], ["send"], ["health"]):
        assert main([*base, *command]) == 2, command
        assert f"{path}:{line}: unsafe template" in capsys.readouterr().err, command


def test_a_missing_templates_directory_is_reported_either_way(config_dir):
    for name in sorted((config_dir / "templates").rglob("*"), reverse=True):
        name.unlink() if name.is_file() else name.rmdir()
    (config_dir / "templates").rmdir()
    for check in (True, False):
        with pytest.raises(ConfigError, match="templates directory not found"):
            load_config(config_dir, check_templates=check)
