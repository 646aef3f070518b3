"""``make reproduce-efficiency``: OPD, EffOPD, GRPO, DAPO and SFT on the default tiny world, each at its own
learning rate chosen on validation data, against an OPD-derived target.

Every method sweeps the same grid (``experiments/sweeps/efficiency.yaml``: 2e-5, 6e-5, 2e-4, i.e. x1, x3,
x10 the OPD default) on the first ``sweep_seeds`` seeds; while a method's best learning rate is the
largest tried, the grid grows by the next step (6e-4, then 2e-3), so no method is held back by where the
grid stops. The criterion is
``bench.studies.table2.selection_score`` (mean greedy accuracy on the validation selection prompts over the
run). Winners are then run on every seed. The target is 95% of the final accuracy of OPD at *its*
selected learning rate; speedups are per seed pair relative to that OPD row. Runs identical to
``make reproduce-table2``'s are reused from its run folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import OmegaConf

from bench.studies.launcher import Job, run_jobs
from bench.studies.regimes import table2_label
from bench.studies.speedup import RunRecord, build_table2, fmt_stat, load_runs, write_table2
from bench.studies.stats import mean_ci
from bench.studies.table2 import (
    effopd_diagnostics,
    git_commit,
    lr_tag,
    machine,
    run_job,
    selection_score,
    step_time_split,
)
from bench.world.tiny.build import build_world
from core.paths import EXPERIMENTS_DIR

SWEEP_FILE = EXPERIMENTS_DIR / "sweeps" / "efficiency.yaml"


def load_sweep(path: Path = SWEEP_FILE) -> dict:
    """The sweep definition (methods, grid, extensions, seeds), checked so a bad file names the bad key."""
    spec = OmegaConf.to_container(OmegaConf.load(path))
    need = {"methods": dict, "reference": str, "grid": list, "extensions": list, "seeds": int, "sweep_seeds": int}
    for key, kind in need.items():
        if not isinstance(spec.get(key), kind):
            raise ValueError(f"{path}: '{key}' must be a {kind.__name__}, got {spec.get(key)!r}")
    if spec["reference"] not in spec["methods"]:
        raise ValueError(f"{path}: reference {spec['reference']!r} is not one of the methods {list(spec['methods'])}")
    if not 1 <= spec["sweep_seeds"] <= spec["seeds"]:
        raise ValueError(f"{path}: sweep_seeds={spec['sweep_seeds']} must be between 1 and seeds={spec['seeds']}")
    lrs = [float(x) for x in spec["grid"] + spec["extensions"]]
    if lrs != sorted(set(lrs)) or not spec["grid"]:
        raise ValueError(f"{path}: grid + extensions must be a non-empty increasing list of distinct LRs, got {lrs}")
    return spec


SWEEP = load_sweep()
METHODS: dict[str, str] = SWEEP["methods"]  # table label -> experiment preset
LR_GRID = tuple(float(x) for x in SWEEP["grid"])
LR_EXTENSIONS = tuple(float(x) for x in SWEEP["extensions"])
REFERENCE: str = SWEEP["reference"]


def reused_table2_dir(method: str, lr: float, seed: int, table2_dir: Path) -> Path | None:
    """The identical run of ``make reproduce-table2``, when it exists and scored the selection prompts
    whenever this run needs them (its OPD sweep arms and its EffOPD runs at the default LR)."""
    label = table2_label(method, lr) if method in ("OPD", "EffOPD") else None
    if label is None:
        return None
    folder = table2_dir / label / f"seed{seed}"
    return folder if (folder / "summary.json").exists() else None


def method_job(runs_dir: Path, table2_dir: Path, method: str, lr: float, seed: int, selection: bool) -> Job:
    reused = reused_table2_dir(method, lr, seed, table2_dir)
    if reused is not None and (not selection or _has_selection(reused)):
        return Job(reused, [])
    return run_job(runs_dir / method, f"{method}-lr{lr_tag(lr)}", METHODS[method], seed, lr, selection=selection)


def _has_selection(folder: Path) -> bool:
    (run,) = load_runs(folder)
    return all("val/greedy" in e for e in run.evals)


def sweep(args, runs_dir: Path, table2_dir: Path, methods: list[str], sweep_seeds: list[int]) -> dict:
    """Per method: the learning rates tried, their selection scores and the winner."""
    tried: dict[str, list[float]] = {m: list(LR_GRID) for m in methods}
    while True:
        jobs = {(m, lr, s): method_job(runs_dir, table2_dir, m, lr, s, selection=True)
                for m in methods for lr in tried[m] for s in sweep_seeds}
        run_jobs(sorted(jobs.values(), key=lambda j: str(j.run_dir)), workers=args.workers)
        result, grow = {}, False
        for m in methods:
            cands = []
            for lr in tried[m]:
                scores = [selection_score(load_runs(jobs[(m, lr, s)].run_dir)[0]) for s in sweep_seeds]
                cands.append({"lr": lr, "selection_score": mean_ci(scores), "seeds": sweep_seeds})
            best = max(cands, key=lambda c: c["selection_score"]["mean"])
            result[m] = {"candidates": cands, "selected_lr": best["lr"]}
            nxt = [lr for lr in LR_EXTENSIONS if lr > max(tried[m])]
            if best["lr"] == max(tried[m]) and nxt:
                tried[m].append(nxt[0])
                grow = True
        if not grow:
            return result


def reproduce_efficiency(args) -> dict:
    t0 = time.time()
    runs_dir, table2_dir = Path(args.runs_dir), Path(args.table2_runs_dir)
    build_world(["world=style"], parallel=args.workers)
    seeds = list(range(args.seeds))
    sweep_seeds = seeds[: args.sweep_seeds]
    methods = list(METHODS)
    chosen = sweep(args, runs_dir, table2_dir, methods, sweep_seeds)
    final_jobs = {m: [method_job(runs_dir, table2_dir, m, chosen[m]["selected_lr"], s, selection=s in sweep_seeds)
                      for s in seeds] for m in methods}
    run_jobs([j for js in zip(*final_jobs.values()) for j in js], workers=args.workers)

    labels = {m: f"{m} (LR {lr_tag(chosen[m]['selected_lr'])})" for m in methods}
    table_runs: list[RunRecord] = []
    for m in methods:
        for job in final_jobs[m]:
            (run,) = load_runs(job.run_dir)
            table_runs.append(RunRecord(**{**run.__dict__, "method": labels[m]}))
    extra = {
        "title": "Efficiency (tiny world): OPD vs EffOPD vs RL vs SFT, each at its validation-selected LR",
        "machine": machine(args.workers), "git_commit": git_commit(), "world": "style",
        "lr_selection": {"grid": list(LR_GRID), "extensions": list(LR_EXTENSIONS),
                         "criterion": "mean greedy accuracy on the validation selection prompts over all evals "
                                      "of a run (bench.studies.table2.selection_score)",
                         "sweep_seeds": sweep_seeds, "by_method": chosen},
        "effopd_triggers": effopd_diagnostics([r for r in table_runs if r.method == labels["EffOPD"]]),
        "median_step_seconds": {labels[m]: step_time_split([r for r in table_runs if r.method == labels[m]])
                                for m in methods},
        "tokens_note": ("generated tokens to target: the student's rollout tokens (every dynamic-sampling round "
                        "included) plus EffOPD's validation tokens; for SFT the teacher tokens it trained on, "
                        "generated once offline"),
    }
    table = build_table2(table_runs, reference=labels[REFERENCE], extra=extra)
    table["total_wall_seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    write_table2(table, out, table_runs, stem="efficiency")
    _append_notes(out / "efficiency.md", table)
    print((out / "efficiency.md").read_text())
    return table


def _append_notes(md_path: Path, table: dict) -> None:
    sel = table["lr_selection"]
    lines = ["", "## Learning-rate selection (validation data)", "",
             f"Criterion: {sel['criterion']}; seeds {sel['sweep_seeds']}. Grid {sel['grid']}, extended by "
             f"{sel['extensions']} while the best LR is the largest tried.", "",
             "| method | LR | selection score | selected |", "|---|---|---|---|"]
    for m, res in sel["by_method"].items():
        for c in res["candidates"]:
            mark = "yes" if c["lr"] == res["selected_lr"] else ""
            lines.append(f"| {m} | {c['lr']:.0e} | {fmt_stat(c['selection_score'])} | {mark} |")
    split = table["median_step_seconds"]
    keys = sorted({k for s in split.values() for k in s})
    lines += ["", "## Seconds per step (median; validation: mean over steps)", "",
              "| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for m, s in split.items():
        lines.append(f"| {m} | " + " | ".join(f"{s.get(k, 0):.3f}" for k in keys) + " |")
    lines += ["", f"Tokens: {table['tokens_note']}.", "",
              f"Machine: {table['machine']['processor']}, {table['machine']['cpus']} CPUs, "
              f"{table['machine']['parallel_runs']} runs in parallel; commit {table['git_commit']}; "
              f"total wall-clock {table['total_wall_seconds']:.0f} s."]
    md_path.write_text(md_path.read_text() + "\n".join(lines) + "\n")
