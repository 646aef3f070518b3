"""The run-folder lock (core/run_lock.py): one holder at a time, a clear refusal, freed when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from core.paths import REPO_ROOT
from core.run_lock import LOCK_NAME, FolderInUse, FolderLock, folder_lock

HOLDER = ("import sys, time; from core.run_lock import FolderLock; lock = FolderLock(sys.argv[1]); "
          "print('held', flush=True); time.sleep(600)")


def test_a_second_holder_is_refused_naming_the_folder_and_the_holder(tmp_path):
    with folder_lock(tmp_path / "run") as lock:
        assert lock.path == tmp_path / "run" / LOCK_NAME
        with pytest.raises(FolderInUse, match=rf"{tmp_path / 'run'} is in use by pid {os.getpid()} on host "):
            FolderLock(tmp_path / "run")
        assert f"pid {os.getpid()}" in lock.path.read_text()  # the refused attempt left the holder's line
    FolderLock(tmp_path / "run").release()  # free again after the block


def test_the_lock_is_freed_when_its_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUse, match=f"pid {holder.pid} "):
            FolderLock(tmp_path)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    lock = FolderLock(tmp_path)  # no unlock step after a kill -9: the kernel dropped the flock
    assert (tmp_path / LOCK_NAME).read_text() == f"pid {os.getpid()} on host {os.uname().nodename}\n"
    lock.release()
