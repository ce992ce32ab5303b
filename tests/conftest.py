"""Shared pytest configuration: the fixture modules every test can use."""

pytest_plugins = [
    "tests.fixtures.config",
    "tests.fixtures.database",
    "tests.fixtures.dovecot",
    "tests.fixtures.smtp",
    "tests.fixtures.mail",
]
