"""A stand-in for ``python -m bench.train``: writes a finished, deterministic run folder from a job's overrides.

Used to drive whole studies (grids, sweeps, run reuse, tables) without training: the curves, timings and
EffOPD trigger records depend only on (experiment, world, lr, seed), through a string-seeded RNG, so the same
grid always yields byte-identical tables. Additions for the regime map (absent overrides leave runs as they were):
``trainer.total_steps`` sets the horizon (default STEPS), ``world.build=b`` shifts the final accuracy by
b * BUILD_SHIFT and records ``world_build``, and OPD/EffOPD runs carry a ``straightness`` block from their own RNG.
``tests/bench/studies/golden/studies/`` holds the tables that the
studies rendered from these runs before the study framework (issue 13); test_golden_tables.py compares.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

STEPS = 30
EVAL_EVERY = 2
RATE = {"opd": 0.10, "effopd": 0.18, "grpo": 0.05, "dapo": 0.06, "sft": 0.12, "window_lr": 0.2}
BUILD_SHIFT = 0.01  # world.build=b raises a run's final accuracy by b * BUILD_SHIFT (a build effect)
STRAIGHT_AT_DEFAULT = 0.8  # chord/arc of an OPD/EffOPD run at LR 2e-5 (straightness_block)
BEST_LR = {"opd": 6e-5, "effopd": 2e-5, "grpo": 2e-3, "dapo": 2e-4, "sft": 6e-5,  # where the final peaks
           "window_lr": 2e-5}
EXTRAPOLATING = ("effopd", "window_lr")  # experiments whose runs pay validation and log trigger records


def parse(overrides: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides if "=" in o)


def _dump(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def fake_train(run_dir: Path, overrides: list[str]) -> None:
    """Write summary.json, evals.jsonl, metrics.jsonl (and effopd.jsonl for OPD/EffOPD) into ``run_dir``."""
    o = parse(overrides)
    exp, world, lr, seed = o["experiment"], o.get("world", "style"), float(o["trainer.lr"]), int(o["trainer.seed"])
    steps = int(o.get("trainer.total_steps", STEPS))  # the regime map sets horizons; other studies use STEPS
    build = int(o.get("world.build", 0))
    selection = o.get("data.selection_prompts") != "0"
    rng = random.Random(f"{exp}|{world}|{lr!r}|{seed}")
    lr_pen = abs(math.log10(lr / BEST_LR[exp]))
    final = min(0.97, 0.9 - 0.12 * lr_pen + (0.05 if world == "style" else -0.1) + rng.uniform(-0.03, 0.03))
    final = min(0.97, final + BUILD_SHIFT * build)  # build 0: as before builds existed
    rate = RATE[exp] * (lr / 2e-5) ** 0.3 * rng.uniform(0.8, 1.2)
    sec = {"opd": 2.0, "effopd": 2.0, "grpo": 1.5, "dapo": 1.7, "sft": 0.5, "window_lr": 2.0}[exp] * rng.uniform(0.95,
                                                                                                                1.05)
    triggers = [2 ** i for i in range(steps.bit_length()) if 2 ** i <= steps] if exp in ("opd", "effopd") else []
    if exp == "window_lr":
        triggers = list(range(4, steps + 1, 4))  # WindowLR's preset schedule every:4
    val_s = {s: round(rng.uniform(0.5, 1.5), 4) for s in triggers} if exp in EXTRAPOLATING else {}
    evals, metrics, trig = [], [], []
    for step in range(steps + 1):
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
        if exp == "window_lr":
            rec.update(accepted_multiplier=rng.choice([-0.5, 0, 1, 2]), seconds=val_s[step], tokens=50,
                       lr_scale=rng.choice([0.5, 1.0, 2.0, 3.0]))
        trig.append(rec)
    run_dir.mkdir(parents=True, exist_ok=True)
    _dump(run_dir / "evals.jsonl", evals)
    _dump(run_dir / "metrics.jsonl", metrics)
    if trig:
        _dump(run_dir / "effopd.jsonl", trig)
    summary = {"method": o["method"], "seed": seed, "lr": lr, "world": world, "algorithm": exp,
               "effopd": exp in EXTRAPOLATING, "status": "complete", "selection_prompts": 100 if selection else 0,
               "total_steps": steps, "train_seconds": evals[-1]["train_seconds"],
               "validation_seconds": round(sum(val_s.values()), 4), "final": {"test/greedy": evals[-1]["test/greedy"]}}
    if build:
        summary["world_build"] = build
        if "world.build_roles" in o:
            summary["world_build_roles"] = o["world.build_roles"].strip("[]").split(",")
    if exp in ("opd", *EXTRAPOLATING):
        summary["straightness"] = straightness_block(exp, world, lr, seed, triggers)
    (run_dir / "summary.json").write_text(json.dumps(summary))


def straightness_block(exp: str, world: str, lr: float, seed: int, triggers: list[int]) -> dict:
    """summary.json's ``straightness`` block (bench/extrapolation/straightness.py's layout), from its own RNG so the
    curves above are untouched: the path is straighter at lower LR (chord/arc = STRAIGHT_AT_DEFAULT - 0.1 *
    log10(lr / 2e-5), plus noise), and on the flip world (+0.05)."""
    rng = random.Random(f"straightness|{exp}|{world}|{lr!r}|{seed}")
    base = STRAIGHT_AT_DEFAULT - 0.1 * math.log10(lr / 2e-5) + (0.05 if world == "flip" else 0.0)
    windows, prev = [], None
    for step in triggers:
        cos_final = round(min(1.0, base + rng.uniform(-0.05, 0.05)), 4)
        cos_prev = None if prev is None else round(min(1.0, base + rng.uniform(-0.1, 0.05)), 4)
        windows.append({"step": step, "start": prev or 0, "norm": 0.01 * step, "cos_final": cos_final,
                        "cos_prev_window": cos_prev})
        prev = step
    measures = {"final_norm": 0.1, "arc_length": round(0.1 / base, 5), "chord_arc": round(base, 4),
                "early_share": round(min(1.0, base ** 2 + rng.uniform(-0.05, 0.05)), 4),
                "cos_final_mean": round(sum(w["cos_final"] for w in windows) / len(windows), 4),
                "cos_prev_window_mean": round(sum(w["cos_prev_window"] for w in windows[1:])
                                              / max(1, len(windows) - 1), 4),
                "windows": windows}
    return {"early_step": 3, "net": measures, "optimizer": measures}


# ---------------------------------------------------------------- issue 14: validation variants, RL per world
# fake_train_ext = fake_train (which handles world.build itself), then EffOPD validation variants that change the
# speed and the validation cost, and GRPO/DAPO slower on the flip and scratch worlds. Jobs without those
# overrides get exactly fake_train's folder.

# How many times faster an EffOPD run moves along its curve per validation override (multiplied together).
VARIANT_SPEED = {"effopd.val_prompts=200": 1.3, "effopd.val_samples=4": 1.25, "effopd.val_temperature=0": 0.9,
                 "effopd=teacher_loglik": 1.4, "effopd=reverse_kl": 1.15}
SIGNAL_COST = {"effopd=teacher_loglik": 0.3, "effopd=reverse_kl": 2.0}  # validation seconds vs accuracy's
RL_WORLD_SPEED = {"flip": 0.35, "scratch": 0.5}  # GRPO's curve speed on these worlds (style: unchanged)


def variant_factors(overrides: list[str]) -> tuple[float, float]:
    """(curve speed, validation-cost factor) of a job's EffOPD validation overrides; (1, 1) without any."""
    o = parse(overrides)
    speed = math.prod(VARIANT_SPEED.get(x, 1.0) for x in overrides)
    cost = int(o.get("effopd.val_prompts", 50)) * int(o.get("effopd.val_samples", 1)) / 50
    cost *= math.prod(SIGNAL_COST.get(x, 1.0) for x in overrides)
    return speed, cost


def _warp(evals: list[dict], speed: float, metric: str = "test/greedy") -> None:
    """Move along the curve ``speed`` times as fast: eval i takes eval min(i * speed)'s values (interpolated)."""
    old = [dict(e) for e in evals]
    for i, e in enumerate(evals):
        x = min(i * speed, len(old) - 1)
        lo, frac = int(x), x - int(x)
        hi = min(lo + 1, len(old) - 1)
        for k in (metric, "val/greedy"):
            if k in e:
                e[k] = round(old[lo][k] * (1 - frac) + old[hi][k] * frac, 4)


def fake_train_ext(run_dir: Path, overrides: list[str]) -> None:
    """fake_train, then the validation variant's speed and cost (EffOPD) or the world's RL slowdown (GRPO, DAPO)."""
    fake_train(run_dir, overrides)
    o = parse(overrides)
    exp, world = o["experiment"], o.get("world", "style")
    speed, cost = variant_factors(overrides) if exp == "effopd" else (1.0, 1.0)
    if exp in ("grpo", "dapo"):
        speed *= RL_WORLD_SPEED.get(world, 1.0)
    if speed == 1.0 and cost == 1.0:
        return
    read = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    _warp(read, speed)
    for m in metrics:
        m["time/validation"] = round(m["time/validation"] * cost, 4)
    for e in read:
        e["train_seconds"] = round(sum(m["time/rollout"] + m["time/update"] + m["time/validation"]
                                       for m in metrics if m["step"] <= e["step"]), 4)
    trig_path = run_dir / "effopd.jsonl"
    if trig_path.exists() and exp == "effopd":
        trig = [json.loads(line) for line in trig_path.read_text().splitlines()]
        for t in trig:
            t["seconds"] = round(t["seconds"] * cost, 4)
        _dump(trig_path, trig)
    summary.update(train_seconds=read[-1]["train_seconds"], final={"test/greedy": read[-1]["test/greedy"]},
                   validation_seconds=round(sum(m["time/validation"] for m in metrics), 4))
    _dump(run_dir / "evals.jsonl", read)
    _dump(run_dir / "metrics.jsonl", metrics)
    (run_dir / "summary.json").write_text(json.dumps(summary))


class SyntheticLauncher:
    """A study launcher that writes each job's run folder with a fake trainer (``fake_train`` by default, or
    ``fake_train_ext``) instead of training; ``launched`` lists the folders it wrote, in order."""

    name = "synthetic"

    def __init__(self, train=None):
        self.train = train or fake_train
        self.launched: list[Path] = []

    def launch(self, jobs):
        for job in jobs:
            self.train(job.run_dir, job.overrides)
            self.launched.append(job.run_dir)
        return []
