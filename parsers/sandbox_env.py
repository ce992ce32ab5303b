"""What a sandbox child may see of the world: its environment and its network.

The worker's environment holds the IMAP and SMTP passwords and the database
URL. A child that a hostile file takes over must find none of them, so:

- the forkserver (which every child is forked from, memory and environment
  block included) is started with ``reader_environment()`` only, never the
  worker's environment (``install_forkserver_environment``);
- each child then points ``HOME`` and ``TMPDIR`` at a private directory of
  its call (``enter_child``), and Tesseract is started with the same short
  list (``reader_environment``);
- each child leaves the network: it moves into a new user and network
  namespace (``unshare(CLONE_NEWUSER | CLONE_NEWNET)``), where no interface
  but a down loopback exists, so it can reach neither the database nor the
  mail servers nor anything else. This needs a kernel that lets unprivileged
  users create user namespaces (most do; some hardened ones and some
  container runtimes do not): where it is refused the child carries on with
  the network (``enter_child`` returns False), and the scrubbed environment
  still holds no secret. In a user namespace a child can no
  longer read the worker's ``/proc/PID/environ`` either.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

# Variables the readers need (locale, search path, Tesseract's data and
# threads); nothing else of the worker's environment reaches a child.
_KEPT_NAMES = frozenset(
    {"PATH", "LD_LIBRARY_PATH", "LANG", "LANGUAGE", "TZ", "TESSDATA_PREFIX", "OMP_THREAD_LIMIT"}
)
_KEPT_PREFIXES = ("LC_",)
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def reader_environment(
    *, private_dir: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a sandbox child or Tesseract runs with.

    ``private_dir`` becomes ``HOME`` and ``TMPDIR`` (else the system temp dir).
    """
    source = os.environ if environ is None else environ
    kept = {
        name: value
        for name, value in source.items()
        if name in _KEPT_NAMES or name.startswith(_KEPT_PREFIXES)
    }
    kept.setdefault("PATH", _DEFAULT_PATH)
    # One thread: OpenMP threads multiply the address space under RLIMIT_AS.
    kept["OMP_THREAD_LIMIT"] = "1"
    home = private_dir or tempfile.gettempdir()
    kept["HOME"] = kept["TMPDIR"] = home
    return kept


# --------------------------------------------------------------------------
# The forkserver's environment


_STARTED: list[subprocess.Popen[bytes]] = []


def install_forkserver_environment() -> None:
    """Start multiprocessing's forkserver with ``reader_environment()`` only.

    The forkserver is started by ``multiprocessing.util.spawnv_passfds``,
    which passes the worker's whole environment on. The call that starts the
    forkserver (its command line names ``multiprocessing.forkserver``) goes
    through ``subprocess`` with the short environment instead; every other
    call (the resource tracker, spawn) is left as it is.
    """
    from multiprocessing import util

    original = util.spawnv_passfds
    if getattr(original, "_mailbot_scrubbed", False):
        return

    def spawn_scrubbed(path: str, args: list[str], passfds: Any) -> int:
        if not any("multiprocessing.forkserver" in str(arg) for arg in args):
            return original(path, args, passfds)
        process = subprocess.Popen(
            args,
            executable=path,
            pass_fds=tuple(sorted(map(int, passfds))),
            close_fds=True,
            env=reader_environment(),
        )
        # multiprocessing waits for the forkserver itself (by pid); the
        # object is kept so that it is never collected while still running.
        _STARTED.append(process)
        return process.pid

    spawn_scrubbed._mailbot_scrubbed = True  # type: ignore[attr-defined]
    util.spawnv_passfds = spawn_scrubbed


# --------------------------------------------------------------------------
# Child side


def enter_child(private_dir: str) -> bool:
    """In a fresh child: private HOME/TMPDIR, no network. True when offline."""
    environment = reader_environment(private_dir=private_dir, environ=dict(os.environ))
    os.environ.clear()
    os.environ.update(environment)
    tempfile.tempdir = private_dir
    return _leave_network()


def _leave_network() -> bool:
    """Move into new user and network namespaces; False when the kernel refuses."""
    uid, gid = os.getuid(), os.getgid()
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    try:
        if unshare is not None:
            unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
        else:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
                return False
    except OSError:
        return False
    # Keep our own ids inside the namespace (files we create stay ours);
    # allowed to an unprivileged process for its own uid and gid only.
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1"),
        ("gid_map", f"{gid} {gid} 1"),
    ):
        try:
            with open(f"/proc/self/{name}", "w") as control:
                control.write(text)
        except OSError:
            break
    return True
