"""`mailbot demo` from the installed entry point: embedded servers, sample mail, real code."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

MAILBOT = Path(sys.executable).parent / "mailbot"


def test_demo_runs_the_whole_service(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [str(MAILBOT), "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(tmp_path),
            "TMPDIR": str(scratch),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    references = set(re.findall(r"BSC-\d{4}-\d{4}", out))
    assert len(references) == 3, out
    # Three candidatures: two complete at once, one completed by the letter sent later.
    assert out.count("│ complet ") >= 3, out
    assert "d.berteloot, n.bataillon" in out  # the one sent to both mailboxes: one dossier
    assert out.count("Objet : [BSC-") == 4  # 2 acknowledgements, 1 notice, 1 completed
    assert "pièces manquantes" in out and "est complet" in out
    # Mail from machines is set aside, worded in French from the rule that decided.
    assert "auto_reply" not in out
    assert "non traité, envoi en nombre (lettre d'information, publicité) : « Les" in out
    assert "mailbot demo --web" in out
    # Step titles are styled by our code, never printed as markup tags.
    assert "1. Courrier d'exemple" in out and "[bold]" not in out and "[/bold]" not in out
    # The throwaway directory (database, blobs, config copy) is gone.
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "var").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_web_serves_the_back_office_until_ctrl_c(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [str(MAILBOT), "demo", "--web", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(tmp_path),
            "TMPDIR": str(scratch),
        },
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    )
    reader.start()
    try:
        said = []
        while not any("Mot de passe" in line for line in said):
            said.append(lines.get(timeout=240))
        address = next(line for line in said if "Adresse" in line).split(": ", 1)[1].strip()
        assert address == f"http://127.0.0.1:{port}/"
        login, password = re.search(
            r"Identifiant : (\S+)\s+Mot de passe : (\S+)", "".join(said)
        ).groups()
        reference = re.findall(r"BSC-\d{4}-\d{4}", "".join(said))[0]
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

        def fetch(path: str, data: dict[str, str] | None = None) -> tuple[str, str]:
            body = urllib.parse.urlencode(data).encode() if data is not None else None
            with browser.open(address.rstrip("/") + path, data=body, timeout=30) as response:
                return response.geturl(), response.read().decode()

        for _attempt in range(100):
            try:
                _url, form = fetch("/login")
                break
            except urllib.error.URLError:
                threading.Event().wait(0.2)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        landed, _page = fetch("/login", {"login": login, "password": password, "csrf_token": token})
        assert landed.endswith("/dossiers")
        landed, page = fetch(f"/dossiers/{reference}")
        assert landed.endswith(f"/dossiers/{reference}")
        assert reference in page
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=30)
        errors = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    assert code == 0, errors[-3000:]
    assert "Traceback" not in errors
    said.extend(lines.queue)
    assert any("Back-office arrêté" in line for line in said)
    # The throwaway directory is gone, servers included.
    assert list(scratch.iterdir()) == []
