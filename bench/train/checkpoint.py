"""Checkpoints that hold everything needed to continue exactly, sharded, written atomically.

``<output_dir>/checkpoints/step_000010/`` is a ``torch.distributed.checkpoint`` (DCP) folder:

- the DCP files: model and optimizer (``get_state_dict``: sharded DTensors under FSDP2, plain tensors on
  one process) and every dict of tensors in the trainer state (the EffOPD anchor, laid out like the
  parameters, so it stays sharded);
- ``trainer_state.pt`` (rank 0): step, seconds, scheduler, data position and the rest of the EffOPD state;
- ``rng_rank<r>.pt``: each rank's RNG streams;
- ``manifest.json`` (rank 0, written last): the size and sha256 of every other file. A load checks it first, so
  a flipped byte, a truncated shard or a deleted file is one error naming the file instead of a broken model or
  a traceback. ``trainer.resume=auto`` stops there and names the two ways on: restore the file, or
  ``trainer.resume=fallback``, which resumes from the newest checkpoint that passes its check.

DCP reshards on load, so a checkpoint resumes on any world size, one process included. All ranks write into
``.tmp-step_000010/``; rank 0 renames it into place once everyone is done, then replaces ``latest`` (a
text file naming it): a crash mid-write leaves the previous checkpoint and pointer intact. The output folder
must be shared by all ranks (one machine, or a shared filesystem across nodes).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from bench import distributed
from core.faults import crash_point
from core.io import atomic_write_text
from core.provenance import sha256_file

MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is: the message names the file and the ways on."""

IN_DCP = "<tensors in the DCP files>"  # stands in trainer_state.pt for a dict of tensors saved through DCP


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if distributed.device().type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and distributed.device().type == "cuda":
        torch.cuda.set_rng_state(state["cuda"])


@contextlib.contextmanager
def _quiet_single_process():
    """DCP warns on every single-process save/load that it assumes one process: that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _is_tensor_dict(x) -> bool:
    return isinstance(x, dict) and bool(x) and all(isinstance(v, torch.Tensor) for v in x.values())


def _split(state: dict) -> tuple[dict, dict]:
    """``{"effopd": {"anchor": {name: tensor}, "num_evals": 3}}`` -> DCP tensors ``{"effopd.anchor": {...}}``
    and the picklable rest, where ``IN_DCP`` marks what moved."""
    tensors, rest = {}, {}
    for key, value in state.items():
        if isinstance(value, dict) and any(_is_tensor_dict(v) for v in value.values()):
            rest[key] = {}
            for sub, v in value.items():
                if _is_tensor_dict(v):
                    tensors[f"{key}.{sub}"] = v
                rest[key][sub] = IN_DCP if _is_tensor_dict(v) else v
        else:
            rest[key] = value
    return tensors, rest


def save_checkpoint(output_dir: str | Path, step: int, model, optimizer, state: dict, keep_last: int = 2) -> Path:
    """Collective under torchrun: every rank calls it at the same step."""
    ckpt_dir = Path(output_dir) / "checkpoints"
    path = ckpt_dir / f"step_{step:06d}"
    tmp = ckpt_dir / f".tmp-{path.name}"  # the same name on every rank: they all write into it
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crash mid-write
        tmp.mkdir(parents=True)
    distributed.barrier()
    tensors, rest = _split(state)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.save({"model": model_sd, "optim": optim_sd, "tensors": tensors}, checkpoint_id=tmp,
                 no_dist=distributed.world_size() == 1)
    torch.save(rng_state(), tmp / f"rng_rank{distributed.rank()}.pt")
    if distributed.is_main():
        torch.save({**rest, "world_size": distributed.world_size()}, tmp / "trainer_state.pt")
    distributed.barrier()
    if distributed.is_main():
        write_manifest(tmp)  # after every rank's files, before the rename: a listed file is a finished file
        crash_point("checkpoint_written", step)  # tests only (core/faults.py)
        if path.exists():  # the same step written again (a rerun): replace it
            shutil.rmtree(path)
        tmp.rename(path)
        atomic_write_text(ckpt_dir / "latest", path.name + "\n")
        crash_point("latest_moved", step)  # tests only (core/faults.py)
        old = sorted(p for p in ckpt_dir.glob("step_*") if p != path)
        for stale in old[: max(len(old) - (keep_last - 1), 0)] if keep_last > 0 else []:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    distributed.barrier()
    return path


def write_manifest(folder: Path) -> None:
    """``manifest.json``: {relative path: {"bytes", "sha256"}} of every file in the checkpoint folder."""
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    atomic_write_text(folder / MANIFEST, json.dumps({"version": 1, "files": files}, indent=1) + "\n")


def verify_checkpoint(path: Path) -> None:
    """Raise ``CheckpointError`` naming the first file that is missing, of another size, or of another sha256 than
    the manifest says. A checkpoint from before manifests is loaded as it is (said in one line)."""
    if path.is_file():  # the single-file format predates manifests
        return
    manifest = path / MANIFEST
    if not manifest.exists():
        if any(path.iterdir()):
            print(f"{path}: no {MANIFEST} (written before checkpoints had one): loaded unchecked", file=sys.stderr)
            return
        raise CheckpointError(f"checkpoint {path} is empty")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is unreadable ({err})") from err
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path}: {name} is missing (its manifest lists it)")
        if f.stat().st_size != want["bytes"]:
            raise CheckpointError(f"checkpoint {path}: {name} has {f.stat().st_size} bytes, its manifest says "
                                  f"{want['bytes']} (truncated or overwritten)")
        if sha256_file(f) != want["sha256"]:
            raise CheckpointError(f"checkpoint {path}: {name} does not match its sha256 in {MANIFEST} (corrupted "
                                  "since it was written)")


def all_checkpoints(output_dir: str | Path) -> list[Path]:
    """The run's finished checkpoints, oldest first (temporary ``.tmp-*`` folders of a crashed save excluded)."""
    return sorted(Path(output_dir, "checkpoints").glob("step_*"))


def checkpoint_to_resume(output_dir: str | Path, fallback: bool) -> Path | None:
    """``trainer.resume=auto``: the latest checkpoint, verified; a failed check raises naming both ways on.
    ``trainer.resume=fallback``: the newest checkpoint that passes its check (each one skipped said in one line);
    None when there is none at all, an error when none passes."""
    try:
        latest = latest_checkpoint(output_dir)
    except CheckpointError:
        if not fallback:
            raise
        latest = None  # the pointer names a deleted checkpoint: the folder's own checkpoints remain
    if latest is None and not (fallback and all_checkpoints(output_dir)):
        return None
    if not fallback:
        try:
            verify_checkpoint(latest)
        except CheckpointError as err:
            older = [p.name for p in all_checkpoints(output_dir) if p != latest]
            raise CheckpointError(f"{err}. Restore the file, or resume from the newest checkpoint that passes its "
                                  f"check with trainer.resume=fallback (here: {', '.join(older) or 'none'})") from None
        return latest
    candidates = sorted({*([latest] if latest else []), *all_checkpoints(output_dir)}, reverse=True)
    for ckpt in candidates:
        try:
            verify_checkpoint(ckpt)
        except CheckpointError as err:
            print(f"trainer.resume=fallback: skipping {ckpt.name}: {err}", file=sys.stderr)
            continue
        return ckpt
    raise CheckpointError(f"no checkpoint in {Path(output_dir, 'checkpoints')} passes its check: start afresh "
                          "(trainer.resume=none, or delete the checkpoints folder)")


def agreed_checkpoint(out: str | Path, mode: str) -> Path | None:
    """The checkpoint to resume from (``checkpoint_to_resume``), chosen and verified by rank 0 alone (hashing every
    file once, not once per rank) and told to every rank; a failed check raises on all of them together."""
    if mode == "none":
        return None
    found = refusal = None
    if distributed.is_main():
        try:
            found = checkpoint_to_resume(out, fallback=mode == "fallback")
        except CheckpointError as err:
            refusal = str(err)
    found, refusal = distributed.broadcast((None if found is None else str(found), refusal))
    if refusal is not None:
        raise CheckpointError(refusal)
    return None if found is None else Path(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    pointer = Path(output_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not path.exists():
        raise CheckpointError(f"{pointer} names {path.name}, which is missing; restore it, or resume from the "
                              "newest checkpoint that passes its check with trainer.resume=fallback")
    return path


def load_checkpoint(path: str | Path, model, optimizer, tensors_like: dict | None = None) -> dict:
    """Load model and optimizer in place; return the trainer state (step, scheduler, data, EffOPD, this
    rank's RNG). Every saved dict of tensors is laid out like ``tensors_like`` (the EffOPD anchor: one
    tensor per extrapolated parameter, sharded like it)."""
    path = Path(path)
    if path.is_file():
        return _load_single_file(path, model, optimizer)
    try:
        state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
        model_sd, optim_sd = get_state_dict(model, optimizer)
        keys = [f"{k}.{s}" for k, v in state.items() if isinstance(v, dict) for s, x in v.items()
                if isinstance(x, str) and x == IN_DCP]
        if keys and tensors_like is None:
            raise ValueError(f"{path} holds {keys} but this run has nothing to load them into")
        tensors = {k: {n: torch.empty_like(t) for n, t in tensors_like.items()} for k in keys}
        payload = {"model": model_sd, "optim": optim_sd, "tensors": tensors}
        with _quiet_single_process():
            dcp.load(payload, checkpoint_id=path, no_dist=distributed.world_size() == 1)
    except (OSError, RuntimeError, KeyError, EOFError, CheckpointException) as err:  # truncated or foreign: say so
        raise CheckpointError(f"cannot read checkpoint {path}: {err}. Delete it (and fix checkpoints/latest) to "
                              "resume from the previous one") from err
    set_state_dict(model, optimizer, model_state_dict=payload["model"], optim_state_dict=payload["optim"])
    for k in keys:
        key, sub = k.split(".", 1)
        state[key][sub] = tensors[k]
    rng = path / f"rng_rank{distributed.rank()}.pt"
    # A rank the writing run did not have continues rank 0's streams (identical under dist_rollouts=replicate;
    # split rollouts draw from per-rank seeds, not from these streams).
    state["rng"] = torch.load(rng if rng.exists() else path / "rng_rank0.pt", weights_only=False)
    return state


def _load_single_file(path: Path, model, optimizer) -> dict:
    """A checkpoint from before the DCP format (``step_NNNNNN.pt``, written by one process)."""
    if distributed.world_size() > 1:
        raise ValueError(f"{path} is a single-file checkpoint from an older version: resume it on one process")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}. Delete it (and fix checkpoints/latest) to "
                         "resume from the previous one") from err
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    return state
