"""Outside demo mode the service refuses to answer mail it cannot authenticate (issue 14, #2).

With ``replies.authserv_id`` unset no Authentication-Results header can be
trusted, and a forged From made the city send acknowledgements to anyone.
``mailbot config check``, ``poll`` and ``run`` now refuse such a configuration
(exit 2, naming the file, line and key) unless ``auth_policy = "ignore"`` is
written explicitly; the default policy replies only on a pass.
"""

from __future__ import annotations

import pytest

from mailbot.cli import main
from mailbot.config import load_config
from mailbot.settings import RepliesSettings
from tests.fixtures.config import SHIPPED_CONFIG, TEST_AUTHSERV_ID

UNSET = f'authserv_id = "{TEST_AUTHSERV_ID}"'
COMMENTED = '# authserv_id = "mx.ville-bethune.fr"'


def run(config_dir, capsys, *args: str) -> tuple[int, str]:
    code = main(["--config", str(config_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def line_of(path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)


def test_the_shipped_config_asks_for_the_authserv_id():
    text = (SHIPPED_CONFIG / "mailbot.toml").read_text(encoding="utf-8")
    assert COMMENTED in text
    assert 'auth_policy = "reply_only_if_pass"' in text
    assert "UNSAFE" in text
    replies = load_config(SHIPPED_CONFIG).settings.replies
    assert replies.authserv_id is None and replies.auth_policy == "reply_only_if_pass"
    assert RepliesSettings().auth_policy == "reply_only_if_pass"


@pytest.mark.parametrize(
    "command",
    [("config", "check"), ("config", "check", "--no-secrets"), ("poll", "--no-send"), ("run",)],
)
def test_without_authserv_id_config_check_and_start_up_refuse(
    config_dir, edit_config, secrets_env, capsys, command
):
    edit_config("mailbot.toml", UNSET, COMMENTED)
    code, output = run(config_dir, capsys, *command)
    assert code == 2, output
    path = config_dir / "mailbot.toml"
    assert f"{path}:{line_of(path, COMMENTED)}: replies.authserv_id: not set" in output
    assert 'auth_policy = "ignore"' in output


def test_the_policy_of_the_shipped_config_is_refused_too(
    config_dir, edit_config, secrets_env, capsys
):
    """Back to the shipped [replies] as is (the fixture sets a test authserv-id)."""
    edit_config(
        "mailbot.toml", 'auth_policy = "reply_unless_fail"', 'auth_policy = "reply_only_if_pass"'
    )
    edit_config("mailbot.toml", UNSET, COMMENTED)
    code, output = run(config_dir, capsys, "config", "check")
    assert code == 2 and "replies.authserv_id: not set" in output


def test_ignore_written_explicitly_is_accepted(config_dir, edit_config, secrets_env, capsys):
    edit_config("mailbot.toml", UNSET, COMMENTED)
    edit_config("mailbot.toml", 'auth_policy = "reply_unless_fail"', 'auth_policy = "ignore"')
    code, output = run(config_dir, capsys, "config", "check")
    assert code == 0, output


def test_an_authserv_id_makes_the_config_acceptable(config_dir, secrets_env, capsys):
    code, output = run(config_dir, capsys, "config", "check")
    assert code == 0, output


def test_demo_mode_needs_no_authserv_id(config_dir, edit_config, secrets_env, capsys):
    edit_config("mailbot.toml", UNSET, COMMENTED)
    edit_config("mailbot.toml", "demo_mode = false", "demo_mode = true")
    code, output = run(config_dir, capsys, "config", "check")
    assert code == 0, output


def test_an_environment_override_counts(config_dir, edit_config, secrets_env, capsys, monkeypatch):
    edit_config("mailbot.toml", UNSET, COMMENTED)
    monkeypatch.setenv("MAILBOT_REPLIES__AUTHSERV_ID", "mx.ville-bethune.fr")
    code, output = run(config_dir, capsys, "config", "check")
    assert code == 0, output
