"""The benchmark-only dependencies (``pip install -e '.[bench]'``): TRL and what it needs beyond the core."""

from __future__ import annotations

import importlib
import importlib.metadata

TRL_VERSION = "1.16.0"  # the version this benchmark's settings were written against (pyproject's bench extra)
INSTALL_HINT = "pip install -e '.[bench]'  (or: make bench)"


class MissingBenchDependency(SystemExit):
    """Raised instead of an ImportError traceback: the message says what to install."""


def require_trl():
    """The imported ``trl`` module, or a ``MissingBenchDependency`` naming the install command."""
    try:
        return importlib.import_module("trl")
    except ImportError as e:  # trl itself, or one of its own dependencies (accelerate, ...)
        raise MissingBenchDependency(
            f"error: the TRL comparison needs the benchmark extra, which is not installed ({e}).\n"
            f"Install it with: {INSTALL_HINT}") from None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
