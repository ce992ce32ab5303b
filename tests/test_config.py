"""The config loader and `mailbot config check` on the shipped and broken configs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from mailbot.cli import main
from mailbot.config import Settings, load_config
from parsers import classify
from parsers.rules import ChainStep
from tests.fixtures.config import REPO_ROOT, SHIPPED_CONFIG, TEST_SECRETS


def run_check(config_dir: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["--config", str(config_dir), "config", "check", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_shipped_config_passes(config_dir, secrets_env, capsys):
    code, out, err = run_check(config_dir, capsys)
    assert code == 0, err
    assert "configuration OK" in out
    assert "2 mailboxes (n.bataillon, d.berteloot)" in out
    assert "19 dossier fields" in out


def test_shipped_config_models(secrets_env):
    config = load_config(SHIPPED_CONFIG)
    names = [m.name for m in config.settings.mailboxes]
    assert names == ["n.bataillon", "d.berteloot"]
    assert config.settings.mailboxes[0].port == 993
    assert config.rules.fields["maturite"].required_when == {"categorie_label": "projet"}
    assert set(config.rules.thematiques) == {
        "habitat_environnement",
        "mobilite_transports",
        "education_emploi",
        "alimentation_consommation",
        "loisirs_culture",
        "sante_bien_etre",
        "entraide_solidarite",
    }
    required = {k for k, f in config.rules.fields.items() if f.required}
    assert required == {
        "intitule",
        "categorie_label",
        "thematique",
        "criteres",
        "justification_criteres",
        "description",
        "lieu",
        "date_realisation",
        "porteur_structure",
        "contact_nom",
        "contact_email",
    }
    # Patterns are compiled for accent-folded text.
    sign = next(s for s in config.rules.letter.signs if s.name == "town_hall")
    assert sign.regex.search("mairie de bethune")
    assert "n.bataillon@ville-bethune.fr" in config.settings.own_addresses


def test_missing_secret_named_with_file_line_and_key(config_dir, capsys, monkeypatch):
    for name in TEST_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD_DBERTELOOT", "x-real-secret")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "x-real-secret")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    line = line_of(config_dir / "mailbot.toml", 'password_env = "MAILBOT_IMAP_PASSWORD_NBATAILLON"')
    assert f"mailbot.toml:{line}: mailboxes[0].password_env" in err
    assert "MAILBOT_IMAP_PASSWORD_NBATAILLON is not set" in err
    assert "DBERTELOOT" not in err


def test_no_secrets_flag_skips_secret_check(config_dir, capsys, monkeypatch):
    for name in TEST_SECRETS:
        monkeypatch.delenv(name, raising=False)
    code, out, _err = run_check(config_dir, capsys, "--no-secrets")
    assert code == 0
    assert "secrets not checked" in out


def test_placeholder_secret_refused_outside_demo_mode(
    config_dir, secrets_env, edit_config, capsys, monkeypatch
):
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "changeme")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    assert "smtp.password_env" in err and "placeholder" in err
    edit_config("mailbot.toml", "demo_mode = false", "demo_mode = true")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 0, err


def test_broken_regex_named(config_dir, secrets_env, edit_config, capsys):
    edit_config("rules.toml", "pattern = 'smart\\s*city'", "pattern = 'smart(city'")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    line = line_of(config_dir / "rules.toml", "pattern = 'smart(city'")
    assert f"rules.toml:{line}: detection.signs[3].pattern" in err
    assert "invalid regular expression" in err


def test_unknown_key_named(config_dir, secrets_env, edit_config, capsys):
    edit_config("mailbot.toml", "backlog_days = 30", "backlog_days = 30\nbacklog_dayz = 3")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    line = line_of(config_dir / "mailbot.toml", "backlog_dayz")
    assert f"mailbot.toml:{line}: intake.backlog_dayz: unknown key" in err


def test_bad_enum_named(config_dir, secrets_env, edit_config, capsys):
    edit_config(
        "mailbot.toml", 'security = "tls"\n# IMAP login.', 'security = "ssl"\n# IMAP login.'
    )
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    line = line_of(config_dir / "mailbot.toml", 'security = "ssl"')
    assert f"mailbot.toml:{line}: mailboxes[0].security" in err
    assert "'ssl'" in err


def test_bad_kind_and_unknown_chain_rule_named(config_dir, secrets_env, edit_config, capsys):
    edit_config("rules.toml", 'kind = "amount"', 'kind = "money"')
    edit_config("rules.toml", 'rule = "list_headers"', 'rule = "list_headerz"')
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    line = line_of(config_dir / "rules.toml", 'kind = "money"')
    assert f"rules.toml:{line}: fields.budget.kind" in err
    assert "detection.chain[5].rule" in err and "unknown rule 'list_headerz'" in err


def test_every_problem_reported_at_once(config_dir, secrets_env, edit_config, capsys):
    edit_config("mailbot.toml", 'at = "08:00"', 'at = "25:00"')
    edit_config("rules.toml", "threshold = 4.0", "threshold = 'high'")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    assert "digest.at" in err and "HH:MM" in err
    assert "letter.threshold" in err


def test_toml_syntax_error_has_line(config_dir, secrets_env, edit_config, capsys):
    edit_config("mailbot.toml", "fetch_batch = 200", "fetch_batch = = 200")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    line = line_of(config_dir / "mailbot.toml", "fetch_batch = = 200")
    assert f"mailbot.toml:{line}: invalid TOML" in err


def test_template_syntax_error_has_file_and_line(config_dir, secrets_env, capsys):
    path = config_dir / "templates" / "acknowledgement.txt.j2"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "{% if reference %}oops"
    path.write_text("\n".join(lines), encoding="utf-8")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    assert "acknowledgement.txt.j2" in err and "template error" in err


def test_environment_overrides(config_dir, secrets_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MAILBOT_DATABASE__URL", "postgresql+psycopg://mailbot@db/mailbot")
    monkeypatch.setenv("MAILBOT_MAILBOXES__N_BATAILLON__HOST", "127.0.0.1")
    monkeypatch.setenv("MAILBOT_MAILBOXES__1__PORT", "1143")
    monkeypatch.setenv("MAILBOT_DIGEST__RECIPIENTS", '["chef@ville-bethune.fr"]')
    monkeypatch.setenv("MAILBOT_INTAKE__BACKLOG_DAYS", "7")
    config = load_config(config_dir)
    assert config.database_url == "postgresql+psycopg://mailbot@db/mailbot"
    assert config.settings.mailboxes[0].host == "127.0.0.1"
    assert config.settings.mailboxes[1].port == 1143
    assert config.settings.digest.recipients == ["chef@ville-bethune.fr"]
    assert config.settings.intake.backlog_days == 7
    assert "MAILBOT_MAILBOXES__N_BATAILLON__HOST" in config.env_overrides


def test_bad_environment_override_names_the_variable(config_dir, secrets_env, monkeypatch, capsys):
    monkeypatch.setenv("MAILBOT_SMTP__PORT", "not-a-port")
    monkeypatch.setenv("MAILBOT_MAILBOXES__NOBODY__HOST", "x")
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    assert "MAILBOT_SMTP__PORT: smtp.port" in err
    assert "MAILBOT_MAILBOXES__NOBODY__HOST" in err and "no mailbox" in err


def test_relative_paths_resolve_beside_config_dir(config_dir, secrets_env):
    config = load_config(config_dir)
    var = config_dir.parent / "var"
    assert config.database_url == f"sqlite:///{var / 'mailbot.sqlite3'}"
    assert config.blob_dir == var / "blobs"


def test_missing_config_dir_is_a_config_error(tmp_path, capsys):
    code, _out, err = run_check(tmp_path / "nowhere", capsys)
    assert code == 2
    assert "config directory not found" in err


def test_every_setting_is_shown_in_shipped_file():
    """Admins discover settings by reading mailbot.toml: every key must appear there."""
    text = (SHIPPED_CONFIG / "mailbot.toml").read_text(encoding="utf-8")
    for section_name, section in Settings.model_fields.items():
        assert re.search(rf"^\[\[?{section_name}\]\]?", text, re.M), section_name
        model = section.annotation
        model = getattr(model, "__args__", (model,))[0]
        for key in model.model_fields:
            assert re.search(rf"^#? ?{key} =", text, re.M), f"{section_name}.{key}"


def test_installed_entry_point_exit_codes(config_dir):
    """The real `mailbot` executable in .venv/bin, as users run it."""
    exe = Path(sys.executable).parent / "mailbot"
    assert exe.exists(), exe
    ok = subprocess.run(
        [exe, "--config", str(config_dir), "config", "check", "--no-secrets"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    usage = subprocess.run(
        [exe, "dossiers", "list", "--bogus"], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr


def test_templates_rendered_with_sample_data(config_dir, secrets_env, capsys):
    path = config_dir / "templates" / "missing_pieces.txt.j2"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = "Il manque {{ pieces_manquantes }}"
    path.write_text("\n".join(lines), encoding="utf-8")
    (config_dir / "templates" / "completed.html.j2").unlink()
    code, _out, err = run_check(config_dir, capsys)
    assert code == 2
    assert "missing_pieces.txt.j2:5: cannot render" in err
    assert "'pieces_manquantes' is undefined" in err
    assert "completed.html.j2: template missing" in err


def test_a_new_rule_class_is_a_name_the_chain_accepts(monkeypatch):
    # The names rules.toml may use come from the rule classes: no list to update.
    monkeypatch.setattr(classify, "RULES", dict(classify.RULES))
    with pytest.raises(ValidationError, match="unknown rule 'same_day_twice'"):
        ChainStep(rule="same_day_twice", action="follow_up")

    class SameDayTwice(classify.Rule):
        name = "same_day_twice"

    assert ChainStep(rule="same_day_twice", action="follow_up").rule == "same_day_twice"
    assert classify.RULES["same_day_twice"] is SameDayTwice


def test_two_rule_classes_cannot_share_a_name(monkeypatch):
    monkeypatch.setattr(classify, "RULES", dict(classify.RULES))
    with pytest.raises(TypeError, match="two rule classes are named 'loop_header'"):

        class Duplicate(classify.Rule):
            name = "loop_header"
