"""What studies read from finished runs besides the speedup table: the LR-selection score, EffOPD trigger
diagnostics, seconds per step by phase, and the straightness of the parameter path. Shared by every study that
needs them (no study imports another)."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict

import yaml

from bench.studies.speedup import RunRecord
from bench.studies.stats import mean_ci


def selection_score(run: RunRecord) -> float:
    """Mean greedy accuracy on the validation selection prompts over all evaluations of the run."""
    vals = [e["val/greedy"] for e in run.evals]
    return sum(vals) / len(vals)


def effopd_diagnostics(runs: list[RunRecord]) -> list[dict]:
    """Per trigger step, over seeds: acceptance, mean accepted multiplier, direction cosine, |Delta|/|theta|
    (and the LR scale after the trigger, for a method that steers the LR)."""
    by_step: dict[int, list[dict]] = {}
    for run in runs:
        path = run.path / "effopd.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            rec = json.loads(line)
            by_step.setdefault(rec["step"], []).append(rec)
    rows = []
    for step in sorted(by_step):
        recs = by_step[step]
        row = {"step": step, "n": len(recs)}
        if "accepted_multiplier" in recs[0]:
            mults = [r["accepted_multiplier"] for r in recs]
            row["accepted_frac"] = sum(m != 0 for m in mults) / len(mults)  # WindowLR may accept a step back
            row["accepted_multiplier"] = mean_ci(mults)
            row["validation_seconds"] = mean_ci([r["seconds"] for r in recs])
        if "lr_scale" in recs[0]:  # methods that steer the LR (WindowLR): the LR after this trigger / trainer.lr
            row["lr_scale"] = mean_ci([r["lr_scale"] for r in recs])
        cos = [r["cos_prev_window"] for r in recs if r.get("cos_prev_window") is not None]
        row["cos_prev_window"] = mean_ci(cos)
        row["delta_rel"] = mean_ci([r["delta_rel"] for r in recs])
        rows.append(row)
    return rows


STRAIGHTNESS_SCALARS = ("chord_arc", "early_share", "cos_final_mean", "cos_prev_window_mean", "final_norm",
                        "arc_length")


def straightness(run: RunRecord, path: str = "net") -> dict | None:
    """The run's straightness measures (summary.json's ``straightness``, bench/extrapolation/straightness.py) on
    ``path``: ``"net"`` (the weights' actual trajectory) or ``"optimizer"`` (the optimizer's own steps, jumps cut
    out; for a run without an extrapolation hook the same as ``"net"``). Its scalars plus the per-window
    ``window_steps``, ``window_cos_final`` and ``window_cos_prev``; None when the run has no measure (written
    before it existed, ``trainer.straightness=false``, or skipped: see its ``skipped`` note)."""
    if path not in ("net", "optimizer"):
        raise ValueError(f"straightness path={path!r}; use 'net' or 'optimizer'")
    block = run.summary.get("straightness")
    if not block or "net" not in block:
        return None
    measures = block.get(path, block["net"])
    windows = measures["windows"]
    return {**{k: measures[k] for k in STRAIGHTNESS_SCALARS}, "early_step": block["early_step"],
            "window_steps": [w["step"] for w in windows], "window_cos_final": [w["cos_final"] for w in windows],
            "window_cos_prev": [w["cos_prev_window"] for w in windows]}


def step_time_split(runs: list[RunRecord]) -> dict:
    """Seconds per step of each phase over all steps of all runs (one torch thread per run): the median for
    the phases every step has, the mean for validation (it happens at a few trigger steps only)."""
    phases: dict[str, list[float]] = {}
    for run in runs:
        for line in (run.path / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            for k, v in rec.items():
                if k.startswith("time/"):
                    phases.setdefault(k[5:], []).append(v)
    return {k: round(statistics.fmean(v) if k == "validation" else statistics.median(v), 4)
            for k, v in phases.items()}


def grow_lr_sweep(ctx, methods: list[str], grid: list[float], extensions: list[float], sweep_seeds: list[int],
                  job_of) -> dict:
    """Per method: the LRs tried, their selection scores (mean [CI] over ``sweep_seeds``) and the winner.

    ``job_of(method, lr, seed)`` is the method's selection-scoring run at ``lr``. While a method's best LR is the
    largest tried, its grid grows by the next of ``extensions``, so no method is held back by where the grid stops.
    """
    from bench.studies.speedup import load_runs
    from bench.studies.stats import mean_ci

    tried = {m: list(grid) for m in methods}
    while True:
        jobs = {(m, lr, s): job_of(m, lr, s) for m in methods for lr in tried[m] for s in sweep_seeds}
        ctx.run(sorted(jobs.values(), key=lambda j: str(j.run_dir)))
        result, grow = {}, False
        for m in methods:
            cands = []
            for lr in tried[m]:
                scores = [selection_score(load_runs(jobs[(m, lr, s)].run_dir)[0]) for s in sweep_seeds]
                cands.append({"lr": lr, "selection_score": mean_ci(scores), "seeds": sweep_seeds})
            best = max(cands, key=lambda c: c["selection_score"]["mean"])
            result[m] = {"candidates": cands, "selected_lr": best["lr"]}
            nxt = [lr for lr in extensions if lr > max(tried[m])]
            if best["lr"] == max(tried[m]) and nxt:
                tried[m].append(nxt[0])
                grow = True
        if not grow:
            return result


def n_test_prompts(run: RunRecord) -> int:
    """How many test prompts the run's evaluations scored (config.yaml's data.test_prompts; 200, the default)."""
    cfg = run.path / "config.yaml"
    data = (yaml.safe_load(cfg.read_text()) or {}).get("data", {}) if cfg.exists() else {}
    return int(data.get("test_prompts") or 200)


def start_by_build(runs: list[RunRecord]) -> dict[str, dict]:
    """Per world build, where ``runs`` started (step 0's greedy test accuracy, the same for every method of a build)
    and the noise band of one evaluation there: two binomial standard errors over the test prompts."""
    groups = defaultdict(list)
    for r in runs:
        groups[r.build].append((r.evals[0]["test/greedy"], n_test_prompts(r)))
    out = {}
    for b, vals in sorted(groups.items()):
        acc, n = sum(v for v, _ in vals) / len(vals), min(n for _, n in vals)
        out[str(b)] = {"accuracy": acc, "noise": 2 * math.sqrt(acc * (1 - acc) / n)}
    return out


def targets_within_start_noise(target: dict, start: dict[str, dict]) -> list[str]:
    """The builds whose target (a speedup table's ``target``: ``per_build`` or one ``value``) is no higher than
    the start accuracy plus its noise band (``start_by_build``): reaching such a target measures evaluation
    noise, not learning, so steps and speedups to it are no evidence."""
    per_build = target.get("per_build") or {b: target["value"] for b in start}
    return [b for b, t in sorted(per_build.items()) if b in start and t <= start[b]["accuracy"] + start[b]["noise"]]
