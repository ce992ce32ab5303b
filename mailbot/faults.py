"""Named fault-injection points for the crash tests.

The intake calls ``checkpoint("after_commit")`` and friends at the moments
where a crash matters. In normal operation this does nothing. When the
environment variable ``MAILBOT_FAULT`` names the point (optionally
``name:N`` to crash at its N-th passage), the process dies at once with
``os._exit`` — no cleanup, no commit, like ``kill -9`` — so tests can prove
that nothing is lost or filed twice.
"""

from __future__ import annotations

import os
from collections import Counter

FAULT_ENV = "MAILBOT_FAULT"
EXIT_CODE = 137

_passages: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _passages[name] += 1
    if _passages[name] >= int(count or 1):
        os._exit(EXIT_CODE)
