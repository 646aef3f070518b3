"""A stand-in for ``python -m bench.train``: writes a finished, deterministic run folder from a job's overrides.

Used to drive whole studies (grids, sweeps, run reuse, tables) without training: the curves, timings and
EffOPD trigger records depend only on (experiment, world, lr, seed), through a string-seeded RNG, so the same
grid always yields byte-identical tables. ``tests/bench/studies/golden/studies/`` holds the tables that the
studies rendered from these runs before the study framework (issue 13); test_golden_tables.py compares.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

STEPS = 30
EVAL_EVERY = 2
RATE = {"opd": 0.10, "effopd": 0.18, "grpo": 0.05, "dapo": 0.06, "sft": 0.12}
BEST_LR = {"opd": 6e-5, "effopd": 2e-5, "grpo": 2e-3, "dapo": 2e-4, "sft": 6e-5}  # where the final peaks


def parse(overrides: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides if "=" in o)


def _dump(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def fake_train(run_dir: Path, overrides: list[str]) -> None:
    """Write summary.json, evals.jsonl, metrics.jsonl (and effopd.jsonl for OPD/EffOPD) into ``run_dir``."""
    o = parse(overrides)
    exp, world, lr, seed = o["experiment"], o.get("world", "style"), float(o["trainer.lr"]), int(o["trainer.seed"])
    selection = o.get("data.selection_prompts") != "0"
    rng = random.Random(f"{exp}|{world}|{lr!r}|{seed}")
    lr_pen = abs(math.log10(lr / BEST_LR[exp]))
    final = min(0.97, 0.9 - 0.12 * lr_pen + (0.05 if world == "style" else -0.1) + rng.uniform(-0.03, 0.03))
    rate = RATE[exp] * (lr / 2e-5) ** 0.3 * rng.uniform(0.8, 1.2)
    sec = {"opd": 2.0, "effopd": 2.0, "grpo": 1.5, "dapo": 1.7, "sft": 0.5}[exp] * rng.uniform(0.95, 1.05)
    triggers = [s for s in (1, 2, 4, 8, 16) if s <= STEPS] if exp in ("opd", "effopd") else []
    val_s = {s: round(rng.uniform(0.5, 1.5), 4) for s in triggers} if exp == "effopd" else {}
    evals, metrics, trig = [], [], []
    for step in range(STEPS + 1):
        if step:
            rec = {"step": step, "generated_tokens": 1000 + rng.randrange(200),
                   "time/rollout": round(sec * 0.6 * rng.uniform(0.9, 1.1), 4),
                   "time/update": round(sec * 0.4 * rng.uniform(0.9, 1.1), 4),
                   "time/validation": val_s.get(step, 0.0)}
            metrics.append(rec)
        if step % EVAL_EVERY == 0:
            acc = max(0.0, min(1.0, final * (1 - math.exp(-rate * step)) + rng.gauss(0, 0.01)))
            e = {"step": step, "train_seconds": round(sum(m["time/rollout"] + m["time/update"] + m["time/validation"]
                                                          for m in metrics), 4), "test/greedy": round(acc, 4)}
            if selection:
                e["val/greedy"] = round(acc + rng.gauss(0, 0.01), 4)
            evals.append(e)
    for step in triggers:
        rec = {"step": step, "cos_prev_window": None if step == 1 else round(rng.uniform(0.5, 0.95), 4),
               "delta_rel": round(rng.uniform(1e-4, 1e-3), 6)}
        if exp == "effopd":
            rec.update(accepted_multiplier=rng.choice([0, 2, 4]), seconds=val_s[step], tokens=50)
        trig.append(rec)
    run_dir.mkdir(parents=True, exist_ok=True)
    _dump(run_dir / "evals.jsonl", evals)
    _dump(run_dir / "metrics.jsonl", metrics)
    if trig:
        _dump(run_dir / "effopd.jsonl", trig)
    summary = {"method": o["method"], "seed": seed, "lr": lr, "world": world, "algorithm": exp,
               "effopd": exp == "effopd", "status": "complete", "selection_prompts": 100 if selection else 0,
               "total_steps": STEPS, "train_seconds": evals[-1]["train_seconds"],
               "validation_seconds": round(sum(val_s.values()), 4), "final": {"test/greedy": evals[-1]["test/greedy"]}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
