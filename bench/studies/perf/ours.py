"""Our side of a pair: ``bench.train.train`` on a composed config, timed from its own step log."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.config import compose_config
from bench.studies.perf.measure import measurement
from bench.studies.perf.pairs import Pair, our_overrides
from core.io import read_jsonl


def run_ours(pair: Pair, steps: int, threads: int, out_dir: Path, extra: list[str] = ()) -> dict:
    """One run of our trainer. Steps/s comes from ``metrics.jsonl``: the per-step ``time/*`` split, whose
    sum is ``train_seconds`` (rollout, scoring, update, hooks); wall-clock is the whole ``train`` call."""
    from bench.train import train  # heavy import, after the CLI has parsed its arguments

    overrides = our_overrides(pair, steps, threads, out_dir, extra)
    cfg = compose_config(overrides)
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    metrics = read_jsonl(out_dir / "metrics.jsonl")
    evals = read_jsonl(out_dir / "evals.jsonl")
    keys = [k for k in metrics[0] if k.startswith("time/")]
    per_step = [sum(m[k] for k in keys) for m in metrics]
    return measurement(
        "ours", pair.name, steps, pair.completions_per_step, per_step, wall,
        completion_tokens=sum(m["generated_tokens"] for m in metrics),
        time_split={k.removeprefix("time/"): sum(m[k] for m in metrics) for k in keys},
        threads=torch.get_num_threads(),
        train_seconds=metrics[-1]["train_seconds"],
        eval_seconds=round(sum(e["eval_seconds"] for e in evals), 4),
        reward_mean=sum(m["reward_mean"] for m in metrics) / len(metrics),
        overrides=overrides[:-1],  # without the temporary output dir
    )
