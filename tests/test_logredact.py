"""No address reaches a log line, whatever carries it."""

from __future__ import annotations

import io
import logging

import pytest

from mailbot import logredact


@pytest.fixture
def captured() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.logredact")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logredact.install(logger)
    yield logger, stream
    logger.handlers = []


def test_addresses_in_messages_arguments_and_tracebacks_are_redacted(captured) -> None:
    logger, stream = captured
    logger.warning("reply %s to %s failed: %s", 12, "victim@example.org", "550 <Bob.M@exemple.fr>")
    try:
        raise RuntimeError("recipient claire+x@ville-bethune.fr rejected")
    except RuntimeError:
        logger.exception("delivery of reply %s", 13)
    logger.info("message %s filed in %s", "<abc@mail.example.org>", "BSC-2026-0001")
    text = stream.getvalue()
    for address in ("victim@example.org", "Bob.M@exemple.fr", "claire+x@ville-bethune.fr"):
        assert address not in text
    assert text.count("<address>") >= 3
    assert "BSC-2026-0001" in text and "reply 12" in text and "RuntimeError" in text


def test_a_broken_format_string_is_still_logged_redacted(captured) -> None:
    logger, stream = captured
    logger.error("bad %s %s", "x@y.org")
    assert "x@y.org" not in stream.getvalue()
    assert "bad" in stream.getvalue()


def test_install_is_idempotent(captured) -> None:
    logger, _ = captured
    logredact.install(logger)
    assert sum(isinstance(f, logredact.RedactAddresses) for f in logger.handlers[0].filters) == 1
