"""Rebuild the golden mails in ``tests/golden/`` (the ``.eml`` files only).

Run from the repository root: ``.venv/bin/python scripts/make_golden.py`` (all files) or
``.venv/bin/python scripts/make_golden.py gmail_candidature mutt_candidature`` (some). Then
regenerate the expectations beside them::

    MAILBOT_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden.py

Two kinds of mail:

* composed by real clients installed here: ``mutt`` and ``neomutt`` in batch mode, handing the
  message to a ``sendmail`` stand-in that captures it (they are skipped, with a note, when the
  client is missing; the committed file stays);
* built here, byte by byte, to the MIME shape that Outlook (Microsoft 365), Gmail web, Apple
  Mail, Thunderbird, Postfix, Exim, Exchange Online, Gmail's mailer-daemon, Mailman and a
  newsletter platform produce: their header sets, boundary styles, nesting of
  multipart/alternative and multipart/related, transfer encodings, and the way each writes a
  French subject (RFC 2047) and an accented filename (RFC 2047 or RFC 2231).

Every mail then gets the trace headers the city's MX adds on delivery (Return-Path,
Delivered-To, Received, Authentication-Results), with CRLF line ends as IMAP serves them.
Dossiers and letters are the project's own: ``tests/fixtures/corpus/`` builds them from
``config/rules.toml`` and ``mailbot/forms.py`` draws the blank form. The builders live in
``tests/fixtures/golden_mail/``; Message-IDs, dates and boundaries are fixed there, so a
rebuild changes only what a change there or in the corpus changes (mutt and neomutt pick
their own boundaries and dates).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reportlab import rl_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.golden_mail import BUILDERS  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        print(
            f"unknown golden mail(s): {', '.join(unknown)}; known: {', '.join(BUILDERS)}",
            file=sys.stderr,
        )
        return 2
    # reportlab writes the current time and a random document id unless told not to.
    rl_config.invariant = 1
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names or list(BUILDERS):
        raw = BUILDERS[name]()
        if raw is None:
            continue
        (GOLDEN / f"{name}.eml").write_bytes(raw)
        print(f"{name}.eml  {len(raw):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
