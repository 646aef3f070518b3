"""One writer per output folder: an exclusive, non-blocking ``flock`` on ``<folder>/.lock``, held for a whole run.

Two processes appending to the same run or eval folder would interleave their records and both report success,
so the second one refuses at start-up, naming the folder and the process that holds it. The kernel drops a
flock when its holder dies (``kill -9`` included), so a crashed run never needs a manual unlock: the stale
pid left in the file is only shown, never trusted. The file itself is never deleted: a process that opened it
just before the deletion would lock an orphaned inode while a third one locks a new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

LOCK_NAME = ".lock"


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """The held lock on ``folder``; ``release`` (or the holder's exit) frees it. Keep a reference for as long as
    the lock is needed: a collected FolderLock closes its file, which frees the lock too."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # "a+", not "w": a refused process must not wipe the holder's pid
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FolderInUse(f"{self.folder} is in use by {holder} (lock {self.path}): wait for it to finish, "
                              "stop it, or use another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


@contextlib.contextmanager
def folder_lock(folder: str | Path):
    """``with folder_lock(out):`` the lock on ``out`` for the block; raises ``FolderInUse`` when it is held."""
    lock = FolderLock(folder)
    try:
        yield lock
    finally:
        lock.release()
