"""The repository's history as the leaderboard reads it: does a bundle's commit exist, and is it in HEAD's
history. Shared by validation (a made-up commit is rejected) and reproduction (the commit is checked out)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from core.paths import REPO_ROOT


class CommitError(ValueError):
    """The commit cannot be found in this repository's history: the message says why and what to do."""


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120)


def is_full_clone(repo: Path = REPO_ROOT) -> bool:
    """A git checkout with its whole history (not a shallow clone, not a source tarball)."""
    return git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == b"false"


def check_commit(commit: str, repo: Path = REPO_ROOT) -> None:
    """The commit exists and is an ancestor of HEAD; raises ``CommitError`` otherwise."""
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        shallow = git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == b"true"
        raise CommitError(f"commit {commit} is not in this repository's history"
                          + (" (this clone is shallow: git fetch --unshallow, then retry)" if shallow else
                             ": the bundle names a commit nobody can check out"))
    if git(repo, "merge-base", "--is-ancestor", commit, "HEAD").returncode != 0:
        raise CommitError(f"commit {commit} exists but is not in HEAD's history: merge it first")
