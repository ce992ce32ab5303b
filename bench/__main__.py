"""Every service benchmark in one run: ``.venv/bin/python -m bench [--quick] [--only NAME ...]``.

Starts Dovecot and an SMTP server once (root: Dovecot drops to its own users),
runs watching, backlog, dossiers, latency, memory and web (the back-office pages,
which need no mail server), and prints one table.
``--quick`` uses fewer rounds and smaller corpora (about 2 minutes instead of
about 6 on the development machine); ``bench/RESULTS.md`` has both. The
document-parsing micro-benchmark stays separate: ``python -m bench.parse_dossier``.
"""

from __future__ import annotations

import argparse
import platform
import time
import traceback

from bench import backlog, dossiers, harness, latency, memory, startup, watching, web

BENCHES = {
    "watching": watching.run,
    "backlog": backlog.run,
    "dossiers": dossiers.run,
    "latency": latency.run,
    "memory": memory.run,
    "web": web.run,
    "startup": startup.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller corpora")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), default=list(BENCHES))
    args = parser.parse_args()
    harness.quiet_logs()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.node()} {platform.machine()} "
        f"Python {platform.python_version()}, quick={args.quick}"
    )
    figures = []
    with harness.servers() as srv:
        for name in args.only:
            started = time.perf_counter()
            srv.dovecot.reset()
            try:
                figures += BENCHES[name](srv, quick=args.quick)
            except Exception:  # one broken bench must not hide the others' figures
                traceback.print_exc()
                figures.append(harness.Figure(name, "FAILED (see above)", "", "", "", "", False))
            print(f"# {name}: {time.perf_counter() - started:.0f} s", flush=True)
    harness.print_table(figures)


if __name__ == "__main__":
    main()
