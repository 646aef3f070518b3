"""What an eval result was produced with: enough to tell whether two results are comparable.

The model fingerprint hashes each weight/config file's name, size and first MiB (safetensors keep their
header there), not whole files: hashing a 16 GB checkpoint for every eval would cost minutes, and a
different checkpoint differs in its header or first tensors.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from core import provenance

PACKAGES = ("effopd-bench", "torch", "transformers", "math-verify", "evalplus", "vllm", "datasets")
_HEAD = 1 << 20


def model_fingerprint(model: str) -> str:
    """Short fingerprint of a local model folder; "" for a hub id (its revision identifies it)."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return ""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".model")):
        h.update(f"{path.name}:{path.stat().st_size}:".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(_HEAD))
    return h.hexdigest()[:16]


def package_versions() -> dict[str, str | None]:
    return provenance.package_versions(PACKAGES)


def git_commit() -> str:
    """HEAD of the project's checkout, with "-dirty" when tracked files differ; "" outside git."""
    commit = provenance.git_commit()
    return "" if commit == "unknown" else commit


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "processor": platform.processor()}
