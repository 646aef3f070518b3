"""Where a result came from: the code's git state, package versions, the CPU, and file digests.

One implementation for the tables (bench.studies.report), the eval runner's protocol (evals.protocol), the
dataset checksums (evals.datasets) and the leaderboard bundles (bench.studies.leaderboard), so that they agree.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from core.paths import REPO_ROOT


def git_state() -> tuple[str, bool]:
    """(HEAD of the project's checkout, whether tracked files differ from it); ("", False) outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "", False
    return head, bool(dirty)


def git_commit() -> str:
    """HEAD with "-dirty" when tracked files differ; "unknown" outside git."""
    head, dirty = git_state()
    return head + ("-dirty" if dirty else "") if head else "unknown"


def package_versions(names) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
