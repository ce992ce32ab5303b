"""Memory: peak RSS of ``mailbot poll --once --no-send`` and of its sandbox children.

Run from the repository root:  .venv/bin/python -m bench.memory [--quick]

Two mailboxes' worth of work, each in a fresh database, in a subprocess:

- one complete candidature carrying also a 25 MB PDF annex (a page of text
  and a large photo that does not compress);
- the 100-candidature backlog of ``bench.dossiers`` (fillable form + letter).

The process tree (the worker, its forkserver and the sandbox children) is
sampled from /proc every 10 ms: the figures are the worker's own peak
(``VmHWM``), the largest peak of any other process of the tree, and the
largest sums of the tree's RSS and of its PSS (pages shared by the
forkserver and its children counted once) seen at one instant;
``getrusage(RUSAGE_CHILDREN)`` after the exit confirms the worker's peak.
Baseline: a Python process that only fetches the same messages with
imap-tools (``BODY.PEEK[]``).
"""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import threading
import time

from PIL import Image
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from bench import harness
from bench.dossiers import build, candidature
from bench.harness import NB, Figure
from mailbot.config import load_config
from tests.fixtures.config import SHIPPED_CONFIG
from tests.fixtures.mail import as_bytes, make_mail

BARE_FETCH = """
import sys
from imap_tools import MailBoxUnencrypted
host, port, user, password = sys.argv[1:5]
with MailBoxUnencrypted(host, int(port)).login(user, password, initial_folder="INBOX") as box:
    n = sum(len(m.obj.as_bytes()) > 0 for m in box.fetch(mark_seen=False, bulk=50))
print(n)
"""


def big_pdf(megabytes: int = 25) -> bytes:
    """A one-page PDF of about ``megabytes`` MiB: a line of text and a photo that does not compress.

    reportlab wraps images in ASCII85 by default (5 bytes for 4): switched off
    here, or the "25 MB" PDF is 33 MB and its message goes over
    ``max_message_bytes`` (only the headers of such a message are read).
    """
    side = int((megabytes * 2**20 / 3) ** 0.5)
    noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    saved = rl_config.useA85
    rl_config.useA85 = 0
    try:
        canvas = Canvas(buffer, pagesize=A4)
        canvas.drawString(50, 800, "Annexe : plans et photographies du chantier")
        canvas.drawImage(ImageReader(noise), 50, 200, width=495, height=495)
        canvas.save()
    finally:
        rl_config.useA85 = saved
    return buffer.getvalue()


def big_message() -> bytes:
    rules = load_config(SHIPPED_CONFIG, environ={}).rules
    _raw, (dossier, letter) = candidature(rules, 1, "form")
    msg = make_mail(
        subject="Candidature au label Béthune Smart City – avec annexes",
        sender="Porteur 1 <porteur1.big@example.org>",
        body="Bonjour,\n\nVoici notre dossier d'intention, le courrier au Maire et les plans.",
        attachments=[
            ("dossier_intention.pdf", dossier, "application/pdf"),
            ("courrier_maire.pdf", letter, "application/pdf"),
            ("annexe_plans.pdf", big_pdf(), "application/pdf"),
        ],
    )
    return as_bytes(msg)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _status_kb(pid: int, key: str, name: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak RSS of a process and of its descendants, from /proc."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.done = threading.Event()
        self.hwm: dict[int, int] = {}
        self.peak_sum = 0
        self.peak_pss = 0

    def run(self) -> None:
        while not self.done.is_set():
            total = pss = 0
            for pid in _tree(self.pid):
                total += _status_kb(pid, "VmRSS:")
                # Proportional set size: a page shared by the forkserver and
                # its children counts once in the sum, not once per process.
                pss += _status_kb(pid, "Pss:", "smaps_rollup")
                self.hwm[pid] = max(self.hwm.get(pid, 0), _status_kb(pid, "VmHWM:"))
            self.peak_sum = max(self.peak_sum, total)
            self.peak_pss = max(self.peak_pss, pss)
            time.sleep(0.01)


def peak(command: list[str], env: dict[str, str]) -> tuple[float, float, float, float, str, float]:
    """(own peak MB, largest descendant peak MB, tree peak MB, seconds, output, tree PSS MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = TreeSampler(process.pid)
    sampler.start()
    output = process.communicate()[0].decode(errors="replace")
    elapsed = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{output}")
    rusage = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own = max(sampler.hwm.get(process.pid, 0), rusage if rusage > before else 0)
    others = max((v for p, v in sampler.hwm.items() if p != process.pid), default=0)
    return (
        own / 1024,
        others / 1024,
        sampler.peak_sum / 1024,
        elapsed,
        output,
        sampler.peak_pss / 1024,
    )


def measure(srv: harness.Servers, name: str, messages: list[bytes], what: str) -> list[Figure]:
    srv.dovecot.reset()
    srv.dovecot.fill_maildir(NB, messages)
    st = harness.stage(srv, name)
    env = harness.process_env(st)
    try:
        bare = peak(
            [
                sys.executable,
                "-c",
                BARE_FETCH,
                srv.dovecot.host,
                str(srv.dovecot.port),
                NB,
                srv.dovecot.users[NB],
            ],
            env,
        )
        ours = peak([str(harness.MAILBOT), "poll", "--once", "--no-send"], env)
    finally:
        st.close()
    top = max(ours[0], ours[1])
    return [
        Figure(
            "5 memory",
            f"{what}: peak RSS per process: worker; largest sandbox/forkserver ({ours[3]:.1f} s)",
            f"{bare[0]:.0f} MB",
            f"{ours[0]:.0f}; {ours[1]:.0f} MB",
            f"{ours[0] / bare[0]:.1f}",
            "<= 200 MB",
            top <= 200,
        ),
        Figure(
            "5 memory",
            f"{what}: whole process tree at one instant: RSS sum; PSS",
            "",
            f"{ours[2]:.0f}; {ours[5]:.0f} MB",
            "",
            "PSS <= 200 MB",
            ours[5] <= 200,
        ),
    ]


def run(srv: harness.Servers, *, quick: bool = False):
    figures = measure(srv, "memory-big", [big_message()], "1 candidature + 25 MB PDF")
    count = 25 if quick else 100
    messages, _files = build(count, "form")
    figures += measure(srv, "memory-backlog", messages, f"{count}-candidature backlog")
    srv.dovecot.reset()
    return figures


def main() -> None:
    harness.main(run, __doc__)


if __name__ == "__main__":
    main()
