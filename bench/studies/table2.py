"""Table 2 (``make reproduce-table2``): OPD vs EffOPD on the default tiny world, plus OPD at a tuned LR.

    python -m bench.reproduce table2 [--seeds 8] [--sweep-seeds 2] [--builds 8] [--workers 2] [--runs-dir runs/table2]

Grid: OPD and EffOPD at the default learning rate (same seeds, same data order), plus an OPD learning-rate
sweep (x1, x3, x10 the default) on the first ``--sweep-seeds`` seeds; its winner on *validation* data (mean
greedy accuracy on the selection prompts over the run: fast and stable both count) is topped up to all seeds
and becomes the "OPD, tuned LR" row. Seeds are spread over ``--builds`` builds of the style world (seed s in
build s % builds, ``builds_for``), each re-seeding base, teacher and student (``--build-roles``): the world
build is the unit of replication. Target: 95% of OPD's mean final accuracy, per build.

The headline (bench/studies/headline.py) is, per method, the geometric mean over builds of each build's ratio
of mean steps (and net seconds) to target, with a 95% t interval on the log ratios, and a verdict read off the
interval: faster, not shown, slower. The report's first line says whether this machine's world is the one behind
the committed table (bench/world/digest.py). Tables: results/table2.{md,csv,json} and table2_curves.png
(bench/studies/speedup.py), with the sweep, other targets, EffOPD trigger diagnostics and seconds per step
under the main table. Runs: ``runs/table2/<label>/seed<S>``, reused by the efficiency and regimes studies.
"""

from __future__ import annotations

from pathlib import Path

from bench.studies.framework import StudyContext, option, register_study
from bench.studies.headline import build_headline
from bench.studies.jobs import (
    DEFAULT_LR,
    LR_MULTIPLIERS,
    TABLE2_BUILD_ROLES,
    Job,
    builds_for,
    parse_build_roles,
    roles_override,
    sweep_label,
    train_job,
)
from bench.studies.paper import PAPER_SPEEDUP
from bench.studies.report import append_markdown, fmt_stat, machine_line, md_header, stale_note
from bench.studies.run_metrics import effopd_diagnostics, selection_score, step_time_split
from bench.studies.speedup import RunRecord, build_speedup_table, load_runs, write_speedup_table
from bench.studies.stats import mean_ci
from core.paths import RESULTS_DIR

LR_SWEEP = LR_MULTIPLIERS  # multiples of the default learning rate for "OPD, tuned LR"
REFERENCE, TARGET_FRACTION = "OPD", 0.95


def target_sensitivity(runs: list[RunRecord], fractions=(0.5, 0.75, 0.9, 0.95)) -> list[dict]:
    """The same speedups for lower targets: where on the learning curve does a method's advantage sit?"""
    out = []
    for f in fractions:
        t = build_speedup_table(runs, reference=REFERENCE, target_fraction=f, target_per_build="auto")
        out.append({"fraction": f, "target": t["target"]["value"], "rows": [
            {k: r[k] for k in ("method", "reached_target", "steps_to_target", "speedup_steps", "speedup_wall")}
            for r in t["rows"]]})
    return out


def grid(runs_dir: Path, seeds: list[int], sweep_seeds: list[int], build: dict[int, int],
         roles: tuple[str, ...] = TABLE2_BUILD_ROLES) -> tuple[list[Job], dict[int, str]]:
    """The first phase's jobs (OPD, EffOPD on all seeds; the sweep arms on the sweep seeds) and the arms' labels;
    seed s runs in world build ``build[s]`` (``builds_for``), which re-seeds ``roles``."""
    jobs = [train_job(runs_dir, "OPD", "opd", s, DEFAULT_LR, selection=s in sweep_seeds, build=build[s],
                      build_roles=roles) for s in seeds]
    # EffOPD's sweep-seed runs also score the selection prompts: the efficiency study selects its LR.
    jobs += [train_job(runs_dir, "EffOPD", "effopd", s, DEFAULT_LR, selection=s in sweep_seeds, build=build[s],
                       build_roles=roles) for s in seeds]
    sweep_labels = {mult: sweep_label("OPD", DEFAULT_LR * mult) for mult in LR_SWEEP}
    for mult, label in sweep_labels.items():
        if mult != 1:
            jobs += [train_job(runs_dir, label, "opd", s, DEFAULT_LR * mult, selection=True, build=build[s],
                               build_roles=roles) for s in sweep_seeds]
    # Interleave methods so that a partially finished sweep already holds comparable pairs.
    return sorted(jobs, key=seed_first), sweep_labels


def seed_first(job: Job) -> tuple[int, str]:
    """Jobs in seed order, then by folder (``<label>/seed<S>``)."""
    return int(job.run_dir.name.removeprefix("seed")), str(job.run_dir)


@register_study("table2", help="OPD vs EffOPD (+ OPD at a validation-tuned LR) -> results/table2.*", options=(
    option("--seeds", type=int, default=8),
    option("--sweep-seeds", type=int, default=2, help="seeds per LR-sweep arm used for selection"),
    option("--builds", type=int, default=8,
           help="style-world builds the seeds are spread over (seed s -> s %% builds); 1: build 0 only"),
    option("--build-roles", default=",".join(TABLE2_BUILD_ROLES),
           help="the roles a world build re-seeds (world.build_roles): base,teacher,student (default: every "
                "build is a new draw of the world) or student (one base and teacher shared by all builds)"),
    option("--runs-dir", default="runs/table2"),
    option("--out", default=str(RESULTS_DIR)),
    option("--prior-seconds", type=float, default=0.0,
           help="seconds already spent before this command (e.g. the install step), added to the total"),
))
def reproduce_table2(ctx: StudyContext) -> dict:
    args = ctx.args
    runs_dir = Path(args.runs_dir)
    seeds = list(range(args.seeds))
    build = builds_for(seeds, args.builds)
    roles = parse_build_roles(args.build_roles)
    ctx.build_world("style", args.builds, overrides=(roles_override(roles),))
    # The LR sweep is selected on the first `sweep_seeds` seeds of every arm (x1 included); only the winner
    # is then topped up to all seeds for its table row, which saves runs without peeking at test data.
    sweep_seeds = seeds[: args.sweep_seeds]
    jobs, sweep_labels = grid(runs_dir, seeds, sweep_seeds, build, roles)
    # The selection reads only the sweep arms' sweep-seed runs: those go first; then every other run and the
    # winner's top-up share one queue, so the top-up does not wait for the rest (a half-empty last round).
    selecting = [j for j in jobs if j.run_dir.parent.name in sweep_labels.values() and seed_first(j)[0] in sweep_seeds]
    ctx.run(selecting)

    def runs_of(label: str, which: list[int]) -> list[RunRecord]:
        return [r for r in load_runs(runs_dir / label) if r.seed in which]

    sweep = []
    for mult, label in sweep_labels.items():
        scores = [selection_score(r) for r in runs_of(label, sweep_seeds)]
        sweep.append({"lr_multiplier": mult, "lr": DEFAULT_LR * mult, "label": label, "seeds": sweep_seeds,
                      "selection_score": mean_ci(scores)})
    best = max(sweep, key=lambda s: s["selection_score"]["mean"])
    top_up = [train_job(runs_dir, best["label"], "opd", s, best["lr"], selection=s in sweep_seeds, build=build[s],
                        build_roles=roles) for s in seeds]
    rest = [j for j in jobs if j not in selecting]
    queue = rest + [j for j in top_up if j not in rest and j not in selecting]
    ctx.run(sorted(queue, key=seed_first))
    by_label = {label: runs_of(label, seeds) for label in ("OPD", "EffOPD", best["label"])}
    tuned_label = f"OPD, tuned LR (x{best['lr_multiplier']})"
    table_runs = by_label["OPD"] + by_label["EffOPD"]
    table_runs += [RunRecord(**{**r.__dict__, "method": tuned_label}) for r in by_label[best["label"]]]
    extra = {
        "title": "Table 2 (tiny world): EffOPD vs OPD, steps and wall-clock to 95% of OPD's final accuracy",
        "machine": ctx.machine(),
        "git_commit": ctx.git_commit(),
        "world": "style",
        "default_lr": DEFAULT_LR,
        **({"seed_builds": {str(s): b for s, b in build.items()}, "build_roles": list(roles)}
           if args.builds > 1 else {}),
        "lr_sweep": {"criterion": f"mean greedy accuracy on {by_label['OPD'][0].summary['selection_prompts']} "
                                  "validation prompts over all evaluations of a run (validation split, disjoint "
                                  "from test and from EffOPD's validation prompts)",
                     "candidates": sweep, "selected": best["label"]},
        "effopd_triggers": effopd_diagnostics(by_label["EffOPD"]),
        "opd_direction": effopd_diagnostics(by_label["OPD"]),
        "median_step_seconds": {"OPD": step_time_split(by_label["OPD"]),
                                "EffOPD": step_time_split(by_label["EffOPD"])},
        **ctx.stale_record(),
        **ctx.world_status(),
    }
    extra["target_sensitivity"] = target_sensitivity(table_runs)
    table = build_speedup_table(table_runs, reference=REFERENCE, target_fraction=TARGET_FRACTION, paper=PAPER_SPEEDUP,
                                target_per_build="auto", extra=extra)
    if len(table.get("builds", ())) > 1:  # the verdict is over world builds: none from a single build
        table["headline"] = build_headline(table)
    table["total_wall_seconds"] = ctx.seconds(args.prior_seconds)
    write_speedup_table(table, args.out, table_runs)
    append_markdown(Path(args.out) / "table2.md", notes(table))
    print((Path(args.out) / "table2.md").read_text())
    return table


def notes(table: dict) -> list[str]:
    """Sweep, other targets, trigger diagnostics and timing under the main table, so the markdown stands alone."""
    lines = ["", "## OPD learning-rate sweep (selection on validation data)", "",
             f"Criterion: {table['lr_sweep']['criterion']}.", "", *md_header(["LR", "selection score"])]
    for s in table["lr_sweep"]["candidates"]:
        lines.append(f"| {s['lr']:.0e} (x{s['lr_multiplier']}) | {fmt_stat(s['selection_score'])} |")
    lines += ["", f"Arms compared on seeds {table['lr_sweep']['candidates'][0]['seeds']}; selected: "
                  f"{table['lr_sweep']['selected']}, then run on all seeds for its row.", "",
              "## Speedup vs OPD for other targets (fraction of OPD's mean final accuracy)", "",
              *md_header(["target", "method", "reached", "steps to target", "speedup (steps)",
                          "speedup (wall, net)"])]
    for t in table["target_sensitivity"]:
        for r in t["rows"]:
            lines.append(f"| {t['fraction']:.0%} ({t['target']:.3f}) | {r['method']} | {r['reached_target']} | "
                         f"{fmt_stat(r['steps_to_target'], 1)} | {fmt_stat(r['speedup_steps'], 2)} | "
                         f"{fmt_stat(r['speedup_wall'], 2)} |")
    lines += ["", "## EffOPD triggers (mean [95% CI] over seeds)", "",
              *md_header(["step", "accepted", "accepted multiplier", "cos(prev window)", "abs(Delta)/abs(theta)",
                          "seconds"])]
    for r in table["effopd_triggers"]:
        lines.append(f"| {r['step']} | {r['accepted_frac']:.0%} | {fmt_stat(r['accepted_multiplier'], 2)} | "
                     f"{fmt_stat(r['cos_prev_window'], 2)} | {fmt_stat(r['delta_rel'], 5)} | "
                     f"{fmt_stat(r['validation_seconds'], 2)} |")
    lines += ["", "## Direction consistency on plain OPD runs (same trigger steps, no extrapolation)", "",
              *md_header(["step", "cos(prev window)", "abs(Delta)/abs(theta)"])]
    for r in table["opd_direction"]:
        lines.append(f"| {r['step']} | {fmt_stat(r['cos_prev_window'], 2)} | {fmt_stat(r['delta_rel'], 5)} |")
    split = table["median_step_seconds"]
    lines += ["", "## Seconds per step (median; validation: mean over all steps; one torch thread per run, "
              "two runs in parallel)", "", *md_header(["method", *split["OPD"]])]
    for m, s in split.items():
        lines.append(f"| {m} | " + " | ".join(f"{s.get(k, 0):.3f}" for k in split["OPD"]) + " |")
    lines += ["", machine_line(table, torch=True), *stale_note(table)]
    return lines

