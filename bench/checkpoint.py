"""Checkpoints that hold everything needed to continue exactly, written atomically.

``<output_dir>/checkpoints/step_000010.pt`` is written to a temporary file and renamed into place, then
``latest`` (a text file naming it) is replaced the same way: a crash mid-write leaves the previous
checkpoint and pointer intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from bench.io import atomic_write_text


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(output_dir: str | Path, step: int, state: dict, keep_last: int = 2) -> Path:
    ckpt_dir = Path(output_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{step:06d}.pt"
    tmp = ckpt_dir / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    atomic_write_text(ckpt_dir / "latest", path.name + "\n")
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep_last] if keep_last > 0 else []:
        old.unlink()
    return path


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    pointer = Path(output_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not path.exists():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing; delete {pointer} to resume "
                                "from scratch or restore the checkpoint file")
    return path


def load_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which and what to do
        raise ValueError(f"cannot read checkpoint {path}: {err}. Delete it (and fix checkpoints/latest) to "
                         "resume from the previous one") from err
