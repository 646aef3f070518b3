"""The step-0 evaluation, computed once per student and evaluation setting, then read from a cache.

Every run that starts from the same student (OPD, EffOPD, each LR of a sweep, each seed of a build) evaluates the
same weights on the same prompts with the same sampling seed at step 0 (``periodic_eval``: greedy, then avg@k from
a forked RNG, so training randomness is untouched whether it runs or not). The first run stores the record in
``world.cache_dir`` under a key of everything the result depends on: the student's weight files (sha256), the
prompts, the scorer's criterion, the generation settings, the rollout engine, the torch version and thread count
(threads can change floating-point sums). Later runs read it: their ``evals.jsonl`` step-0 line is the same
record, bit for bit, except ``eval_seconds`` (the seconds actually spent, ~0). Table 2's 17 runs share three
students, so 14 step-0 evaluations (~2.6 s each on one CPU thread) become reads. ``trainer.eval_cache=false``
always evaluates.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from bench.train.phases import periodic_eval
from core.io import atomic_write_json
from core.provenance import sha256_file

VERSION = 1  # bump when periodic_eval's step-0 record changes meaning
RECORD_KEYS = ("step", "train_seconds", "test/greedy")


def weight_files(student_path) -> list[Path]:
    """The student's weight files when it is a local folder (none for a hub id: no cache)."""
    path = Path(str(student_path))
    return sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []


def cache_key(cfg, world) -> str | None:
    """The hash of everything the step-0 record depends on; None when the student is not a local folder."""
    files = weight_files(world.student_path)
    if not files:
        return None
    spec = {"v": VERSION, "weights": [sha256_file(f) for f in files],
            "test": [p.prompt for p in world.test], "selection": [p.prompt for p in world.selection],
            "criterion": world.criterion, "max_new_tokens": cfg.rollout.max_new_tokens,
            "avg_k": cfg.trainer.eval_avg_k, "engine": cfg.rollout.engine, "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def initial_eval(cfg, engine, world) -> dict:
    """``periodic_eval`` at step 0 (with avg@k), from the cache when an identical one was already computed."""
    key = cache_key(cfg, world) if cfg.trainer.eval_cache and cfg.world.kind == "tiny" else None
    path = Path(cfg.world.cache_dir) / f"eval0-{key}.json" if key else None
    t0 = time.perf_counter()
    if path is not None and path.exists():
        try:
            rec = json.loads(path.read_text())
            if all(k in rec for k in RECORD_KEYS) and rec["step"] == 0:
                return {**rec, "eval_seconds": round(time.perf_counter() - t0, 4)}
        except (OSError, ValueError):
            pass  # unreadable: evaluate again and rewrite it
        print(f"step-0 evaluation cache {path} is unreadable or incomplete; evaluating again", flush=True)
    rec = periodic_eval(cfg, engine, world, 0, 0.0, with_avg_k=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {k: v for k, v in rec.items() if k != "eval_seconds"})
    return rec
