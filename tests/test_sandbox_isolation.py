"""A sandbox child taken over by a hostile file finds no secret, no network, no way back.

Each test runs the attack in a real sandbox child through ``map_sandboxed``
(the function ``extract_documents`` uses), with the probes of
``tests/fixtures/isolation_probe.py``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsers.documents.model import DocumentText, FormField, Widget
from parsers.documents.ocr import _OcrBudget, _tesseract
from parsers.sandbox import SandboxFailure, SandboxLimits, map_sandboxed
from parsers.sandbox_codec import Decoder, MalformedResult, dumps, encode, loads
from parsers.sandbox_env import reader_environment
from tests.fixtures.isolation_probe import (
    connect_to,
    return_code_on_unpickle,
    send_code_on_unpickle,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
LIMITS = SandboxLimits(timeout_seconds=10, memory_mb=512, cpu_seconds=5)

SECRETS = {
    "MAILBOT_TEST_SECRET": "s3cret-of-the-worker",
    "MAILBOT_IMAP_PASSWORD_NBATAILLON": "imap-password-value",
    "MAILBOT_SMTP_PASSWORD": "smtp-password-value",
    "MAILBOT_DATABASE__URL": "postgresql+psycopg://mailbot:db-password-value@db.example/mailbot",
}

_WORKER_SCRIPT = """
import json, os
from parsers.sandbox import SandboxLimits, map_sandboxed
from tests.fixtures.isolation_probe import environment_seen

if __name__ == "__main__":
    limits = SandboxLimits(timeout_seconds=20, memory_mb=512, cpu_seconds=10)
    print(json.dumps(map_sandboxed(environment_seen, [os.getpid()], limits=limits)))
"""


def test_a_child_cannot_read_the_workers_secrets(tmp_path):
    """A worker started with the mail passwords and the database URL in its environment.

    Its sandbox child looks at its own environment, its parent's (the
    forkserver) and the worker's own ``/proc/PID/environ``: no secret anywhere.
    """
    script = tmp_path / "worker.py"
    script.write_text(_WORKER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO_ROOT,
        env={**os.environ, **SECRETS, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (seen,) = json.loads(done.stdout)
    assert isinstance(seen, list) and seen, seen
    text = "\n".join(seen)
    assert "PATH=" in text  # the probe did read an environment
    for name, value in SECRETS.items():
        assert value not in text, f"{name} visible to a sandbox child"
        assert f"{name}=" not in text


def test_tesseract_gets_a_short_environment(tmp_path, monkeypatch):
    """Tesseract is started with the readers' short list, not the worker's environment."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\ncat > /dev/null\nenv\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    budget = _OcrBudget(deadline=time.monotonic() + 30, command=str(fake))
    printed = _tesseract(b"png", budget, ["tsv"])
    assert "OMP_THREAD_LIMIT=1" in printed
    for value in SECRETS.values():
        assert value not in printed
    assert set(reader_environment()) <= {
        *{n for n in os.environ if n.startswith("LC_")},
        "PATH",
        "LD_LIBRARY_PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TESSDATA_PREFIX",
        "OMP_THREAD_LIMIT",
        "HOME",
        "TMPDIR",
    }


def test_a_child_cannot_reach_the_network():
    """A loopback listener (where the database and Dovecot live) is out of a child's reach."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        (result,) = map_sandboxed(connect_to, [port], limits=LIMITS)
        assert isinstance(result, str) and result.startswith("refused"), result
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_result_that_runs_code_when_unpickled_is_refused(tmp_path):
    marker = tmp_path / "ran"
    (result,) = map_sandboxed(return_code_on_unpickle, [str(marker)], limits=LIMITS)
    assert not marker.exists(), f"code ran in process {marker.read_text()}"
    assert isinstance(result, SandboxFailure) and result.reason == "exception"
    assert "cannot send a CodeOnUnpickle" in result.detail


def test_a_pickle_written_to_the_pipe_runs_nothing_and_is_a_crashed_item(tmp_path):
    marker = tmp_path / "ran"
    results = map_sandboxed(send_code_on_unpickle, [str(marker), str(marker)], limits=LIMITS)
    assert not marker.exists(), f"code ran in process {marker.read_text()}"
    for result in results:
        # The first child is killed for its message; the second item's child too.
        assert isinstance(result, SandboxFailure) and result.reason == "crashed", result
        assert "malformed message" in result.detail


def test_the_private_directory_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert map_sandboxed(connect_to, [1], limits=LIMITS)[0].startswith("refused")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# The encoding itself

DOCUMENT = DocumentText(
    sha256="ab" * 32,
    filename="dossier.pdf",
    kind="pdf",
    pages=("Intitulé du projet : Potager", ""),
    form_fields={
        "nom": FormField(
            name="nom",
            type="text",
            value="Potager partagé",
            widgets=(Widget(page=1, rect=(1.0, 2.5, 3, 4), label_left="Nom"),),
        ),
        "case": FormField(name="case", type="checkbox", value=None, options=("Yes", "Off")),
    },
    tables=(((("a", "b"), ("c", "d")),), ()),
    warnings=("w",),
    needs_review=True,
    size=12,
    page_count=2,
    column_rows=((("l", "r"),),),
    ocr_pages=(2,),
)
DECODER = Decoder((DocumentText, FormField, Widget))


def _round_trip(value, decoder=DECODER):
    return decoder.decode(loads(dumps(encode(value))))


def test_documents_cross_as_plain_data_unchanged():
    assert _round_trip(DOCUMENT) == DOCUMENT
    assert _round_trip([1, ("pdf", "pdf"), {"k": b"\x00"}, None, 1.5]) == [
        1,
        ("pdf", "pdf"),
        {"k": b"\x00"},
        None,
        1.5,
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {"dataclass": "Popen", "fields": {"args": "id"}},
        {"dataclass": "DocumentText", "fields": {"sha256": 1, "filename": "x", "kind": "pdf"}},
        {"dataclass": "DocumentText", "fields": {"sha256": "x", "filename": "x", "evil": 1}},
        {
            "dataclass": "DocumentText",
            "fields": {"sha256": "x", "filename": "x", "kind": "pdf", "pages": {"list": ["a"]}},
        },
        {"dataclass": "DocumentText", "fields": {"sha256": "x"}},
        {"__reduce__": ["os.system", "id"]},
        {"bytes": "not base64!"},
    ],
)
def test_malformed_results_are_refused(payload):
    with pytest.raises(MalformedResult):
        DECODER.decode(payload)


def test_non_json_is_refused():
    with pytest.raises(MalformedResult):
        loads(b"\x80\x04\x95")
    with pytest.raises(MalformedResult):
        loads(b'["extend", NaN]')
