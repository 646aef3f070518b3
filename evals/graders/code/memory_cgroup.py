"""A memory cgroup around one sandboxed execution: caps the memory of all its processes together.

RLIMIT_AS caps each process; a program that forks four children gets four times the cap. A
child cgroup of the parent's own memory cgroup (cgroup v2 ``memory.max``, or v1 ``memory.limit_in_bytes``, swap
included where the kernel accounts it) caps their sum: past it the kernel's OOM killer ends a process of the
sandbox, never one outside. ``available()`` probes once whether this machine lets us create one (root, or a
delegated cgroup); where it does not, the sandbox caps the process count instead, so that processes x per-process
cap fits the total (``Limits.process_cap``).

The sandbox starts its process tree inside the group from the first instruction (a shell writes its own pid to
``cgroup.procs`` and then execs the sandbox), so nothing forks before it is counted.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_PROBE: dict = {}
_LOCK = threading.Lock()


def _own_groups() -> list[tuple[str, Path]]:
    """(version, folder) candidates for children of this process's memory cgroup, preferred first."""
    out = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if controllers == "" and (ROOT / "cgroup.controllers").exists():  # v2, the unified tree at ROOT
            if "memory" in (ROOT / "cgroup.controllers").read_text().split():
                out.insert(0, ("v2", ROOT / rel))
        elif "memory" in controllers.split(","):
            out.append(("v1", ROOT / "memory" / rel))
    return out


class MemoryCgroup:
    """One child cgroup with a memory cap; ``procs`` is the file a process writes its pid to, to join it."""

    def __init__(self, version: str, parent: Path, limit_bytes: int):
        self.version, self.limit = version, int(limit_bytes)
        self.path = parent / f"effopd-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        self.path.mkdir()
        try:
            if version == "v2":
                (self.path / "memory.max").write_text(str(self.limit))
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
            else:
                (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
                if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: cap memory + swap
                    (self.path / "memory.memsw.limit_in_bytes").write_text(str(self.limit))
        except OSError:
            self.path.rmdir()
            raise
        self.procs = self.path / "cgroup.procs"

    def peak_bytes(self) -> int | None:
        """The most memory the group's processes held together (None where the kernel does not say)."""
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many processes the kernel killed at the cap (old v1 kernels: allocations that failed at it)."""
        try:
            if self.version == "v2":
                events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0))
            control = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
            if "oom_kill" in control:  # kernels >= 4.13
                return int(control["oom_kill"])
            return int((self.path / "memory.failcnt").read_text())
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        """Kill whatever is left in the group and remove it (a group with processes cannot be removed)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                pids = [int(p) for p in self.procs.read_text().split()]
            except OSError:
                pids = []
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        try:
            self.path.rmdir()
        except OSError:
            pass


def create(limit_bytes: int) -> MemoryCgroup | None:
    """A capped group under this process's memory cgroup, or None where this machine allows none."""
    for version, parent in _own_groups():
        try:
            return MemoryCgroup(version, parent, limit_bytes)
        except OSError:
            continue
    return None


def available() -> str | None:
    """"v2" or "v1" when ``create`` works here (probed once), else None."""
    with _LOCK:
        if "version" not in _PROBE:
            group = create(64 << 20)
            _PROBE["version"] = group.version if group else None
            if group:
                group.close()
        return _PROBE["version"]
