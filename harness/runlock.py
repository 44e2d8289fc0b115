"""One driver per run folder: an exclusive lock on ``<run folder>/.lock``, held for the whole run.

Before it, two `harness compare` processes on the same folder both finished, each doing all the work. The lock
file names its holder (pid, host, start time) so the second driver's one-line error says who to wait for.
A POSIX record lock (fcntl.lockf), not flock: the kernel drops it when the holder dies, so a killed run leaves no
stale lock (a pid file would), and a forked child (a sandbox or grading worker outliving a SIGKILLed driver)
does not inherit it, where it would inherit a flock and keep the folder busy; NFS shares it between hosts.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class RunFolderBusy(Exception):
    """Another driver holds this run folder."""


def holder_of(lock: Path) -> str:
    try:
        h = json.loads(lock.read_text(encoding="utf-8"))
        return f"pid {h['pid']} on {h['host']}, started {h['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are not written yet)"


@contextmanager
def run_lock(root: Path) -> Iterator[Path]:
    """Hold ``root``'s lock while the block runs; RunFolderBusy at once when another driver holds it."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EACCES or EAGAIN: held by another process
            raise RunFolderBusy(f"run folder {root} is in use by {holder_of(lock)}; wait for it to finish, or "
                                "pick another folder with --run-id") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        yield lock
    finally:
        os.close(fd)  # releases the lock
