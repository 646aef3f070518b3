"""Where does EffOPD pay? (``make reproduce-regimes``): both tiny worlds x learning rates, OPD vs EffOPD.

    python -m bench.reproduce regimes [--seeds 3] [--lrs 2e-5,6e-5,2e-4] [--worlds style,scratch]

Grid: every (world, learning rate, method, seed). Target: per regime, 95% of that regime's OPD mean final
accuracy; per-seed-pair speedups in steps and in wall-clock net of EffOPD's validation cost. Table:
results/table2_regimes.{md,json}. Runs identical to table 2's (style world, same LR, method and seed) are reused
from its run folder instead of being trained again.
"""

from __future__ import annotations

from pathlib import Path

from bench.studies.framework import StudyContext, option, register_study
from bench.studies.jobs import DEFAULT_LR, LR_MULTIPLIERS, Job, existing_job, lr_tag, sweep_label, train_job
from bench.studies.paper import PAPER_SPEEDUP
from bench.studies.report import fmt_stat, machine_line, md_header, publish, stale_note, world_note
from bench.studies.run_metrics import effopd_diagnostics
from bench.studies.speedup import RunRecord, build_speedup_table, load_runs
from core.paths import RESULTS_DIR

METHODS = ("OPD", "EffOPD")
REFERENCE, TARGET_FRACTION = "OPD", 0.95


def table2_label(method: str, lr: float) -> str | None:
    """The label under which table 2 stores the same run (style world), if it runs it: OPD at every LR of its
    sweep, EffOPD at the default LR only."""
    if method == "OPD" or lr == DEFAULT_LR:
        return sweep_label(method, lr)
    return None


def regime_job(runs_dir: Path, world: str, lr: float, method: str, seed: int, table2_dir: Path) -> Job:
    """A regime's run, reusing the identical run of the table2 sweep (same world, LR, method and seed)."""
    label = table2_label(method, lr) if world == "style" else None
    reused = existing_job(table2_dir, label, method.lower(), seed, lr, world=world) if label else None
    return reused or train_job(runs_dir / world / lr_tag(lr), method, method.lower(), seed, lr, world=world)


def load_as(job: Job, method: str) -> RunRecord:
    (run,) = load_runs(job.run_dir)
    return RunRecord(**{**run.__dict__, "method": method})


@register_study("regimes", after=("table2",),
                help="both worlds x LRs x {OPD, EffOPD} -> results/table2_regimes.*", options=(
    option("--seeds", type=int, default=3),
    option("--lrs", default=",".join(str(DEFAULT_LR * m) for m in LR_MULTIPLIERS)),
    option("--worlds", default="style,scratch"),
    option("--runs-dir", default="runs/regimes"),
    option("--table2-runs-dir", default="runs/table2", help="identical runs are reused from here"),
    option("--out", default=str(RESULTS_DIR)),
))
def reproduce_regimes(ctx: StudyContext) -> dict:
    args = ctx.args
    runs_dir = Path(args.runs_dir)
    worlds = args.worlds.split(",")
    lrs = [float(x) for x in args.lrs.split(",")]
    for world in worlds:
        ctx.build_world(world)
    table2_dir = Path(args.table2_runs_dir)
    grid = {(w, lr, m, s): regime_job(runs_dir, w, lr, m, s, table2_dir)
            for s in range(args.seeds) for w in worlds for lr in lrs for m in METHODS}
    ctx.run(list(grid.values()))

    rows = []
    for world in worlds:
        for lr in lrs:
            runs = [load_as(job, m) for (w, lr_, m, _), job in grid.items() if (w, lr_) == (world, lr)]
            table = build_speedup_table(runs, reference=REFERENCE, target_fraction=TARGET_FRACTION)
            opd, eff = (next(r for r in table["rows"] if r["method"] == m) for m in METHODS)
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
    result = {"rows": rows, "seeds": list(range(args.seeds)), "paper": PAPER_SPEEDUP, "machine": ctx.machine(),
              "git_commit": ctx.git_commit(),
              "total_wall_seconds": ctx.seconds(),
              "ci_method": "95% Student-t interval over seeds; speedups per seed pair",
              **ctx.stale_record(), **ctx.world_status()}
    out = Path(args.out)
    publish(out, "table2_regimes", result, render(result))
    return result


def render(result: dict) -> str:
    lines = ["# Where EffOPD pays: speedup over OPD per regime", "",
             "Target per regime: 95% of that regime's mean OPD final greedy test accuracy. Speedups are per seed "
             "pair (same seed, same data order); wall-clock includes EffOPD's validation cost. Mean [95% CI].", "",
             *md_header(["world", "LR", "OPD final", "EffOPD final", "reached OPD / EffOPD", "OPD steps",
                         "EffOPD steps", "speedup (steps)", "speedup (wall, net)", "validation s",
                         "accepted at triggers"])]
    for r in result["rows"]:
        acc = ", ".join(f"{s}:{f:.0%}" for s, f in r["accepted_frac_by_trigger"].items())
        lines.append(
            f"| {r['world']} | {r['lr']:.0e} | {fmt_stat(r['opd_final_accuracy'])} | "
            f"{fmt_stat(r['effopd_final_accuracy'])} | {r['opd_reached']} / {r['effopd_reached']} | "
            f"{fmt_stat(r['opd_steps_to_target'], 1)} | {fmt_stat(r['effopd_steps_to_target'], 1)} | "
            f"{fmt_stat(r['speedup_steps'], 2)} | {fmt_stat(r['speedup_wall_net'], 2)} | "
            f"{fmt_stat(r['validation_overhead_seconds'], 1)} | {acc} |")
    lines += ["", f"Paper: {result['paper']['summary']}", "",
              f"{len(result['seeds'])} seeds per cell; {result['ci_method']}. "
              + machine_line(result, total="total"), *world_note(result), *stale_note(result)]
    return "\n".join(lines) + "\n"
