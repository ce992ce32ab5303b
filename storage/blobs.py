"""Content-addressed file store for raw messages and attachments.

A blob is stored once under the sha256 of its bytes, at
``root/ab/cd/abcd…`` (two levels of fan-out keep directories small). The
database only keeps the digest (``Message.raw_blob``, ``Piece.blob_sha256``).

Writes are atomic and durable: bytes go to a temporary file on the same file
system, are flushed and fsync'ed, then renamed into place and the directory
is fsync'ed, so a reader sees either the whole blob or nothing, even after a
crash. A blob that already exists is never rewritten. Digests are validated
before any path is built, so a digest can never name a file outside ``root``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from storage.errors import BlobError, BlobNotFoundError
from storage.models import is_sha256

FILE_MODE = 0o640
DIR_MODE = 0o750
CHUNK_SIZE = 1024 * 1024
# Streamed writes do not know their digest (hence their directory) until the
# end, so they are staged here; same file system as the blobs, so the final
# rename stays atomic.
TEMP_DIR_NAME = ".tmp"
TEMP_PREFIX = ".tmp-"
# Raw messages between their fetch and their filing (``BlobStore.spool``).
SPOOL_DIR_NAME = ".spool"


class BlobStore:
    """Content-addressed blob store rooted at ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path_for(self, sha: str) -> Path:
        """Where the blob ``sha`` lives (whether or not it exists)."""
        if not is_sha256(sha):
            raise BlobError(f"invalid blob digest {sha!r}: expected 64 lowercase hex characters")
        return self.root / sha[:2] / sha[2:4] / sha

    def exists(self, sha: str) -> bool:
        return self.path_for(sha).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data``; return its sha256 hex digest."""
        sha = hashlib.sha256(data).hexdigest()
        final = self.path_for(sha)
        if final.is_file():
            return sha
        directory = self._make_dirs(final.parent)
        self._publish(self._write_temp(directory, [data]), final)
        return sha

    def put_file(self, source: Path | str | BinaryIO) -> str:
        """Store a file (by path) or a binary stream, read in chunks; return its sha256.

        A stream is read to its end but not closed.
        """
        if isinstance(source, (str, os.PathLike)):
            try:
                stream = open(source, "rb")  # noqa: SIM115 - closed by the with below
            except OSError as err:
                raise BlobError(f"cannot read {str(source)!r}: {err}") from err
            with stream:
                return self._put_stream(stream)
        return self._put_stream(source)

    def get(self, sha: str) -> bytes:
        """Bytes of blob ``sha``, checked against the digest."""
        path = self.path_for(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise BlobNotFoundError(f"no blob {sha}") from err
        except OSError as err:
            raise BlobError(f"cannot read blob {sha}: {err}") from err
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            # Bit rot or a hand-edited file: better fail than hand wrong bytes on.
            raise BlobError(f"blob {sha} is corrupt: its content hashes to {actual}")
        return data

    def open(self, sha: str) -> BinaryIO:
        """Open blob ``sha`` for reading (binary; the caller closes it). Not verified."""
        path = self.path_for(sha)
        try:
            return open(path, "rb")
        except FileNotFoundError as err:
            raise BlobNotFoundError(f"no blob {sha}") from err
        except OSError as err:
            raise BlobError(f"cannot open blob {sha}: {err}") from err

    def delete(self, sha: str) -> bool:
        """Remove blob ``sha``; False if it was not there.

        The caller checks that no row still references the digest (and that
        no dossier on legal hold needs it).
        """
        path = self.path_for(sha)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            raise BlobError(f"cannot delete blob {sha}: {err}") from err
        self._fsync_dir(path.parent)
        return True

    def iter_digests(self) -> Iterator[str]:
        """Digests of all stored blobs (for integrity checks and garbage collection)."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/??/*"):
            if is_sha256(path.name) and path.parent.parent.parent == self.root:
                yield path.name

    def spool(self, data: bytes) -> Path:
        """Write a message being worked on to the spool; return its path.

        The spool (``ROOT/spool``) holds raw messages between their fetch and
        their filing, so that the worker does not keep big messages in
        memory. The caller deletes the file once the message is filed (its
        raw blob, if kept, is then in the store by its digest) or when it
        gives up on it (it is fetched again); ``clear_spool`` removes what a
        crash left behind.
        """
        directory = self._make_dirs(self.root / SPOOL_DIR_NAME)
        return self._write_temp(directory, [data], sync=False)

    def spool_pieces(self, pieces: Iterable[bytes]) -> Path:
        """``spool`` of a message that arrives in pieces, each written as it comes.

        If ``pieces`` raises, the partly written file is removed and the error
        goes on to the caller.
        """
        directory = self._make_dirs(self.root / SPOOL_DIR_NAME)
        return self._write_temp(directory, pieces, sync=False)

    def clear_spool(self, *, older_than_seconds: float = 3600.0) -> int:
        """Delete spooled messages older than ``older_than_seconds``; how many were removed.

        A younger file may belong to a poll in progress (another worker).
        """
        directory = self.root / SPOOL_DIR_NAME
        if not directory.is_dir():
            return 0
        limit = time.time() - older_than_seconds
        removed = 0
        for path in directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
        return removed

    def remove_stale_temp_files(self, *, older_than_seconds: float = 3600.0) -> int:
        """Delete temporary files left by a crash in the middle of a write.

        Only files older than ``older_than_seconds`` are removed so that a
        write in progress in another process is left alone. Returns how many
        were removed.
        """
        if not self.root.is_dir():
            return 0
        limit = time.time() - older_than_seconds
        removed = 0
        for path in self.root.rglob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
        return removed

    # -- internals ---------------------------------------------------------

    def _put_stream(self, stream: BinaryIO) -> str:
        digest = hashlib.sha256()
        staging = self._make_dirs(self.root / TEMP_DIR_NAME)
        tmp_path = self._write_temp(staging, _chunks(stream), digest.update)
        sha = digest.hexdigest()
        final = self.path_for(sha)
        if final.is_file():
            tmp_path.unlink()
            return sha
        try:
            self._make_dirs(final.parent)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        self._publish(tmp_path, final)
        return sha

    def _write_temp(
        self,
        directory: Path,
        chunks: Iterable[bytes],
        on_chunk: Callable[[bytes], object] | None = None,
        *,
        sync: bool = True,
    ) -> Path:
        """Write ``chunks`` to a new fsync'ed temp file in ``directory``; return its path.

        On any failure the temp file is removed; OSErrors become BlobError.
        """
        try:
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        except OSError as err:
            raise BlobError(f"cannot create a temporary file in {directory}: {err}") from err
        tmp_path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), FILE_MODE)
                for chunk in chunks:
                    if on_chunk is not None:
                        on_chunk(chunk)
                    out.write(chunk)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
        except BaseException as err:
            tmp_path.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise BlobError(f"writing a blob in {directory} failed: {err}") from err
            raise
        return tmp_path

    def _publish(self, tmp_path: Path, final: Path) -> None:
        """Rename the finished temp file to its final name and make that durable."""
        try:
            os.replace(tmp_path, final)
        except OSError as err:
            tmp_path.unlink(missing_ok=True)
            raise BlobError(f"cannot move a blob into {final}: {err}") from err
        self._fsync_dir(final.parent)

    def _make_dirs(self, directory: Path) -> Path:
        """Create ``directory`` and missing parents up to ``root`` with DIR_MODE."""
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current == current.parent:
                break
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue  # created meanwhile by another writer
            except OSError as err:
                raise BlobError(f"cannot create directory {path}: {err}") from err
            # mkdir's mode is filtered by the umask; set it exactly.
            os.chmod(path, DIR_MODE)
            # Make the new directory entry itself durable.
            self._fsync_dir(path.parent)
        return directory

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as err:
            raise BlobError(f"cannot open directory {directory} to sync it: {err}") from err
        try:
            os.fsync(fd)
        except OSError as err:
            raise BlobError(f"cannot sync directory {directory}: {err}") from err
        finally:
            os.close(fd)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            return
        if not isinstance(chunk, bytes):
            # A text stream would be hashed and stored under a digest that
            # does not match any byte representation the caller expects.
            raise BlobError(f"expected a binary stream, read {type(chunk).__name__}")
        yield chunk
