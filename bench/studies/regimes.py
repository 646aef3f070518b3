"""``make reproduce-regimes``: where does EffOPD pay? Both tiny worlds x learning rates, OPD vs EffOPD.

Every regime (world, learning rate) gets its own target (95% of that regime's OPD final accuracy) and
per-seed-pair speedups in steps and in wall-clock net of EffOPD's validation cost. Runs identical to ``make reproduce-table2``'s (style world, same LR, method and seed)
are reused from its run folder instead of being trained again.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.studies.launcher import Job, run_jobs
from bench.studies.speedup import RunRecord, build_table2, fmt_stat, load_runs
from bench.studies.table2 import DEFAULT_LR, PAPER, effopd_diagnostics, git_commit, lr_tag, machine, run_job
from bench.world.tiny.build import build_world
from core.io import atomic_write_json, atomic_write_text


def table2_label(method: str, lr: float) -> str | None:
    """The label under which ``make reproduce-table2`` stores the same run (style world), if it does."""
    if method == "OPD":
        return "OPD" if lr == DEFAULT_LR else f"OPD-lr{lr_tag(lr)}"
    return "EffOPD" if lr == DEFAULT_LR else None


def regime_job(runs_dir: Path, world: str, lr: float, method: str, seed: int, table2_dir: Path) -> Job:
    """A regime's run, reusing the identical run of the table2 sweep (same world, LR, method and seed)."""
    label = table2_label(method, lr) if world == "style" else None
    if label is not None and (table2_dir / label / f"seed{seed}" / "summary.json").exists():
        return Job(table2_dir / label / f"seed{seed}", [])
    return run_job(runs_dir / world / lr_tag(lr), method, method.lower(), seed, lr, world=world)


def load_as(job: Job, method: str) -> RunRecord:
    (run,) = load_runs(job.run_dir)
    return RunRecord(**{**run.__dict__, "method": method})


def reproduce_regimes(args) -> dict:
    t0 = time.time()
    runs_dir = Path(args.runs_dir)
    worlds = args.worlds.split(",")
    lrs = [float(x) for x in args.lrs.split(",")]
    for world in worlds:
        build_world([f"world={world}"], parallel=args.workers)
    table2_dir = Path(args.table2_runs_dir)
    grid = {(w, lr, m, s): regime_job(runs_dir, w, lr, m, s, table2_dir)
            for s in range(args.seeds) for w in worlds for lr in lrs for m in ("OPD", "EffOPD")}
    run_jobs(list(grid.values()), workers=args.workers)

    rows = []
    for world in worlds:
        for lr in lrs:
            runs = [load_as(job, m) for (w, l, m, s), job in grid.items() if (w, l) == (world, lr)]
            table = build_table2(runs, reference="OPD")
            opd, eff = (next(r for r in table["rows"] if r["method"] == m) for m in ("OPD", "EffOPD"))
            triggers = effopd_diagnostics([r for r in runs if r.method == "EffOPD"])
            rows.append({
                "world": world, "lr": lr, "target": table["target"], "seeds": table["seeds"],
                "opd_final_accuracy": opd["final_accuracy"], "effopd_final_accuracy": eff["final_accuracy"],
                "opd_reached": opd["reached_target"], "effopd_reached": eff["reached_target"],
                "opd_steps_to_target": opd["steps_to_target"], "effopd_steps_to_target": eff["steps_to_target"],
                "speedup_steps": eff["speedup_steps"], "speedup_wall_net": eff["speedup_wall"],
                "validation_overhead_seconds": eff["validation_overhead_seconds"],
                "pairs_excluded": eff.get("pairs_excluded"),
                "accepted_frac_by_trigger": {r["step"]: r["accepted_frac"] for r in triggers},
                "cos_prev_window_by_trigger": {r["step"]: r["cos_prev_window"]["mean"] for r in triggers},
            })
    result = {"rows": rows, "seeds": list(range(args.seeds)), "paper": PAPER, "machine": machine(args.workers),
              "git_commit": git_commit(),
              "total_wall_seconds": round(time.time() - t0, 1),
              "ci_method": "95% Student-t interval over seeds; speedups per seed pair"}
    out = Path(args.out)
    atomic_write_json(out / "table2_regimes.json", result)
    atomic_write_text(out / "table2_regimes.md", render(result))
    print(render(result))
    return result


def render(result: dict) -> str:
    lines = ["# Where EffOPD pays: speedup over OPD per regime", "",
             "Target per regime: 95% of that regime's mean OPD final greedy test accuracy. Speedups are per seed "
             "pair (same seed, same data order); wall-clock includes EffOPD's validation cost. Mean [95% CI].", "",
             "| world | LR | OPD final | EffOPD final | reached OPD / EffOPD | OPD steps | EffOPD steps | "
             "speedup (steps) | speedup (wall, net) | validation s | accepted at triggers |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        acc = ", ".join(f"{s}:{f:.0%}" for s, f in r["accepted_frac_by_trigger"].items())
        lines.append(
            f"| {r['world']} | {r['lr']:.0e} | {fmt_stat(r['opd_final_accuracy'])} | "
            f"{fmt_stat(r['effopd_final_accuracy'])} | {r['opd_reached']} / {r['effopd_reached']} | "
            f"{fmt_stat(r['opd_steps_to_target'], 1)} | {fmt_stat(r['effopd_steps_to_target'], 1)} | "
            f"{fmt_stat(r['speedup_steps'], 2)} | {fmt_stat(r['speedup_wall_net'], 2)} | "
            f"{fmt_stat(r['validation_overhead_seconds'], 1)} | {acc} |")
    lines += ["", f"Paper: {result['paper']['summary']}", "",
              f"{len(result['seeds'])} seeds per cell; {result['ci_method']}. Machine: "
              f"{result['machine']['processor']}, {result['machine']['cpus']} CPUs, "
              f"{result['machine']['parallel_runs']} runs in parallel; commit {result['git_commit']}; "
              f"total {result['total_wall_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
