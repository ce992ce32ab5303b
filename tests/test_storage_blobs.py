"""Content-addressed blob store: layout, atomic writes, digest validation."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.blobs import CHUNK_SIZE, BlobStore
from storage.errors import BlobError, BlobNotFoundError

REPO = Path(__file__).resolve().parents[1]
DATA = b"%PDF-1.7 candidature Smart City\n" * 10


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _temp_files(root: Path) -> list[Path]:
    return [p for p in _files(root) if p.name.startswith(".tmp")]


@pytest.fixture
def umask_077() -> Iterator[None]:
    """A strict umask, to show that the store sets its modes explicitly."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def test_put_stores_under_the_sha256_with_fan_out(blob_store: BlobStore) -> None:
    sha = blob_store.put(DATA)
    assert sha == hashlib.sha256(DATA).hexdigest()
    path = blob_store.root / sha[:2] / sha[2:4] / sha
    assert blob_store.path_for(sha) == path
    assert path.read_bytes() == DATA
    assert blob_store.exists(sha)
    assert blob_store.get(sha) == DATA
    with blob_store.open(sha) as stream:
        assert stream.read() == DATA
    assert list(blob_store.iter_digests()) == [sha]


def test_same_content_twice_is_one_file_not_rewritten(blob_store: BlobStore) -> None:
    sha = blob_store.put(DATA)
    before = blob_store.path_for(sha).stat()
    assert blob_store.put(DATA) == sha
    assert blob_store.put_file(io.BytesIO(DATA)) == sha
    after = blob_store.path_for(sha).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _files(blob_store.root) == [blob_store.path_for(sha)]


def test_put_file_streams_big_files_from_a_path_or_a_stream(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    big = os.urandom(3 * CHUNK_SIZE + 17)
    source = tmp_path / "annexe.pdf"
    source.write_bytes(big)
    sha = blob_store.put_file(source)
    assert sha == hashlib.sha256(big).hexdigest()
    assert blob_store.get(sha) == big
    with source.open("rb") as stream:
        assert blob_store.put_file(stream) == sha
    assert blob_store.put_file(str(source)) == sha
    assert _temp_files(blob_store.root) == []
    with pytest.raises(BlobError, match=r"nowhere\.pdf"):
        blob_store.put_file(tmp_path / "nowhere.pdf")


def test_empty_blob(blob_store: BlobStore) -> None:
    sha = blob_store.put(b"")
    assert sha == hashlib.sha256(b"").hexdigest()
    assert blob_store.get(sha) == b""


@pytest.mark.usefixtures("umask_077")
def test_files_are_0640_and_directories_0750(blob_store: BlobStore) -> None:
    sha = blob_store.put(DATA)
    path = blob_store.path_for(sha)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    for directory in (path.parent, path.parent.parent, blob_store.root):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    streamed = blob_store.put_file(io.BytesIO(b"other"))
    assert stat.S_IMODE(blob_store.path_for(streamed).stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "bad",
    [
        "../../../../etc/passwd",
        "/etc/passwd",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        "a" * 64 + "\n",
        "../" + "a" * 61,
        "",
        None,
        b"a" * 64,
    ],
)
def test_malformed_digests_are_rejected_before_touching_the_disk(
    blob_store: BlobStore, bad: object
) -> None:
    for operation in (
        blob_store.path_for,
        blob_store.exists,
        blob_store.get,
        blob_store.open,
        blob_store.delete,
    ):
        with pytest.raises(BlobError, match="invalid blob digest"):
            operation(bad)  # type: ignore[arg-type]
    assert not blob_store.root.exists()


def test_missing_blob(blob_store: BlobStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert not blob_store.exists(sha)
    with pytest.raises(BlobNotFoundError, match=sha):
        blob_store.get(sha)
    with pytest.raises(BlobNotFoundError):
        blob_store.open(sha)


def test_delete(blob_store: BlobStore) -> None:
    sha = blob_store.put(DATA)
    assert blob_store.delete(sha) is True
    assert blob_store.delete(sha) is False
    assert not blob_store.exists(sha)


def test_corrupted_blob_is_detected_on_read(blob_store: BlobStore) -> None:
    sha = blob_store.put(DATA)
    path = blob_store.path_for(sha)
    path.chmod(0o600)
    path.write_bytes(DATA.replace(b"Smart", b"Smurf"))
    with pytest.raises(BlobError, match="corrupt"):
        blob_store.get(sha)


class _FailingStream(io.RawIOBase):
    """Yields some chunks, then fails like a dropped connection or a bad disk."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 2:
            raise self.error
        return b"x" * CHUNK_SIZE


def test_stream_failing_midway_leaves_nothing_behind(blob_store: BlobStore) -> None:
    blob_store.put(DATA)
    stream = _FailingStream(OSError(5, "Input/output error"))
    with pytest.raises(BlobError, match="Input/output error") as raised:
        blob_store.put_file(stream)
    assert isinstance(raised.value.__cause__, OSError)
    assert stream.reads == 3
    assert _files(blob_store.root) == [blob_store.path_for(hashlib.sha256(DATA).hexdigest())]


def test_non_os_errors_propagate_unchanged_and_clean_up(blob_store: BlobStore) -> None:
    with pytest.raises(ValueError, match="decoder"):
        blob_store.put_file(_FailingStream(ValueError("decoder gave up")))
    assert _temp_files(blob_store.root) == []


def test_text_streams_are_refused(blob_store: BlobStore) -> None:
    with pytest.raises(BlobError, match="binary"):
        blob_store.put_file(io.StringIO("not bytes"))  # type: ignore[arg-type]
    assert _temp_files(blob_store.root) == []


_DISK_FULL = """
import os, resource, signal, sys
from pathlib import Path
from storage.blobs import BlobStore
from storage.errors import BlobError
root, mode = Path(sys.argv[1]), sys.argv[2]
# Without this the kernel kills the process (SIGXFSZ) instead of failing write().
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
store = BlobStore(root)
data = os.urandom(1024 * 1024)
try:
    if mode == "put":
        store.put(data)
    else:
        import io
        store.put_file(io.BytesIO(data))
except BlobError as err:
    print(f"BlobError cause={type(err.__cause__).__name__} errno={err.__cause__.errno}")
else:
    print("stored")
"""


@pytest.mark.parametrize("mode", ["put", "put_file"])
def test_write_failing_for_lack_of_space_leaves_no_partial_file(tmp_path: Path, mode: str) -> None:
    """A write refused by the OS (file size limit, as a full disk) raises BlobError, cleans up."""
    root = tmp_path / "blobs"
    done = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(root), mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "BlobError cause=OSError errno=27"  # EFBIG
    assert _files(root) == []


def test_stale_temp_files_are_swept(blob_store: BlobStore) -> None:
    sha = blob_store.put(DATA)
    stale = blob_store.path_for(sha).parent / ".tmp-crashed"
    stale.write_bytes(b"half a blob")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = blob_store.path_for(sha).parent / ".tmp-in-progress"
    fresh.write_bytes(b"being written")
    assert blob_store.remove_stale_temp_files() == 1
    assert not stale.exists()
    assert fresh.exists()
    assert blob_store.exists(sha)
    assert list(blob_store.iter_digests()) == [sha]
