"""`mailbot staff add|list|remove`: back-office accounts, argon2 hashes, audited."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from sqlmodel import select

from mailbot.app import App
from mailbot.cli import main
from mailbot.staff import verify_password
from storage.db import session_scope
from storage.models import Event, StaffAccount

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(config_dir, secrets_env, monkeypatch):
    monkeypatch.setenv("MAILBOT_CONFIG", str(config_dir))
    monkeypatch.setenv("MAILBOT_STAFF_USER", "admin")
    application = App(str(config_dir))
    yield application
    application.close()


def staff(monkeypatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["staff", *args])


def test_add_list_remove_are_audited_and_hash_the_password(app, monkeypatch, capsys):
    assert staff(monkeypatch, "add", "Alice", "--name", "Alice Martin", stdin=PASSWORD + "\n") == 0
    assert "staff account alice added" in capsys.readouterr().out
    with session_scope(app.engine) as session:
        [account] = session.exec(select(StaffAccount)).all()
        assert account.login == "alice"
        assert account.display_name == "Alice Martin"
        assert account.password_hash.startswith("$argon2id$")
        assert PASSWORD not in account.password_hash
    assert verify_password(app, login="alice", password=PASSWORD) == "alice"
    assert verify_password(app, login="ALICE", password=PASSWORD) == "alice"
    assert verify_password(app, login="alice", password=PASSWORD + "x") is None
    assert verify_password(app, login="nobody", password=PASSWORD) is None

    assert staff(monkeypatch, "add", "alice", stdin=PASSWORD) == 1
    assert "already exists" in capsys.readouterr().err
    assert staff(monkeypatch, "list") == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and "Alice Martin" in listed and "actif" in listed

    assert staff(monkeypatch, "remove", "alice") == 0
    assert verify_password(app, login="alice", password=PASSWORD) is None
    assert staff(monkeypatch, "remove", "alice") == 1
    assert "no staff account" in capsys.readouterr().err
    assert staff(monkeypatch, "list") == 0
    assert "désactivé" in capsys.readouterr().out

    # The same person back: enabled again with a new password.
    assert staff(monkeypatch, "add", "alice", stdin="a brand new passphrase\n") == 0
    assert verify_password(app, login="alice", password="a brand new passphrase") == "alice"
    with session_scope(app.engine) as session:
        events = session.exec(select(Event).order_by(Event.id)).all()
        trail = [(e.actor, e.action, e.details["login"]) for e in events]
    assert trail == [
        ("staff:admin", "staff.added", "alice"),
        ("staff:admin", "staff.removed", "alice"),
        ("staff:admin", "staff.enabled", "alice"),
    ]


@pytest.mark.parametrize(
    ("login", "password", "message"),
    [
        ("bob", "short", "at least 12 characters"),
        ("bob", "", "at least 12 characters"),
        ("bob smith", PASSWORD, "login 'bob smith' refused"),
        ("<b>", PASSWORD, "refused"),
    ],
)
def test_add_refuses_short_passwords_and_odd_logins(
    app, monkeypatch, capsys, login, password, message
):
    assert staff(monkeypatch, "add", login, stdin=password + "\n") == 1
    assert message in capsys.readouterr().err
    with session_scope(app.engine) as session:
        assert session.exec(select(StaffAccount)).all() == []


def test_add_reads_a_piped_password(app, config_dir):
    env = {**os.environ, "MAILBOT_CONFIG": str(config_dir)}
    command = [sys.executable, "-m", "mailbot.cli", "staff", "add", "carole"]
    done = subprocess.run(
        command, input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert verify_password(app, login="carole", password=PASSWORD) == "carole"
