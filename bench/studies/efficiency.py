"""The efficiency table (``make reproduce-efficiency``): OPD, EffOPD, GRPO, DAPO and SFT on the default tiny
world, each at its own learning rate chosen on validation data, against an OPD-derived target.

    python -m bench.reproduce efficiency [--seeds 5] [--sweep-seeds 2] [--builds 3] [--table2-runs-dir runs/table2]

Grid (``experiments/sweeps/efficiency.yaml``, read when the study runs): every method sweeps the same LRs
(2e-5, 6e-5, 2e-4, i.e. x1, x3, x10 the OPD default) on the first ``sweep_seeds`` seeds; while a method's best
learning rate is the largest tried, the grid grows by the next step (6e-4, then 2e-3), so no method is held
back by where the grid stops. The criterion is ``bench.studies.run_metrics.selection_score`` (mean greedy
accuracy on the validation selection prompts over the run). Winners are then run on every seed. Target: 95%
of the final accuracy of OPD at *its* selected learning rate; speedups are per seed pair relative to that OPD
row, per world build when the seeds span several (``--builds``: seed s in build s % builds, as in table 2).
Runs identical to table 2's (same build and build roles included) are reused from its run folder
(``jobs.existing_job``). ``--build-roles``: the roles a build re-seeds; every role by default, the builds
results/efficiency.* was made with, so only table 2's build-0 runs are reused (its builds 1 and 2 re-seed the
student only, ``jobs.TABLE2_BUILD_ROLES``; ``--build-roles student`` reuses those too).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from bench.studies.framework import StudyContext, option, register_study
from bench.studies.jobs import (
    ALL_ROLES,
    Job,
    builds_for,
    existing_job,
    lr_tag,
    parse_build_roles,
    roles_override,
    sweep_label,
    train_job,
)
from bench.studies.report import append_markdown, fmt_stat, machine_line, md_header, stale_note
from bench.studies.run_metrics import effopd_diagnostics, grow_lr_sweep, step_time_split
from bench.studies.speedup import RunRecord, build_speedup_table, load_runs, write_speedup_table
from core.paths import EXPERIMENTS_DIR, RESULTS_DIR

SWEEP_FILE = EXPERIMENTS_DIR / "sweeps" / "efficiency.yaml"
TARGET_FRACTION = 0.95


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
    spec["grid"], spec["extensions"] = [float(x) for x in spec["grid"]], [float(x) for x in spec["extensions"]]
    return spec


def reused_table2_dir(method: str, lr: float, seed: int, table2_dir: Path, experiment: str | None = None,
                      needs_selection: bool = False, build: int = 0, roles=ALL_ROLES) -> Path | None:
    """The folder of table 2's identical run (its OPD sweep arms, its EffOPD runs at the default LR) in world
    build ``build`` re-seeding ``roles``, if finished and, when ``needs_selection``, scoring the selection prompts."""
    job = table2_job(method, lr, seed, table2_dir, experiment or method.lower(), needs_selection, build, roles)
    return job.run_dir if job else None


def table2_job(method: str, lr: float, seed: int, table2_dir: Path, experiment: str,
               needs_selection: bool, build: int = 0, roles=ALL_ROLES) -> Job | None:
    if method not in ("OPD", "EffOPD"):
        return None
    return existing_job(table2_dir, sweep_label(method, lr), experiment, seed, lr, needs_selection=needs_selection,
                        build=build, build_roles=roles)


def method_job(spec: dict, runs_dir: Path, table2_dir: Path, method: str, lr: float, seed: int,
               selection: bool, build: int = 0, roles=ALL_ROLES) -> Job:
    """A method's run at ``lr`` in world build ``build``: table 2's identical run when there is one, else
    ``<runs_dir>/<method>/...``."""
    experiment = spec["methods"][method]
    reused = table2_job(method, lr, seed, table2_dir, experiment, needs_selection=selection, build=build, roles=roles)
    if reused is not None:
        return reused
    return train_job(runs_dir / method, f"{method}-lr{lr_tag(lr)}", experiment, seed, lr, selection=selection,
                     build=build, build_roles=roles)


def sweep(ctx: StudyContext, spec: dict, runs_dir: Path, table2_dir: Path, methods: list[str],
          sweep_seeds: list[int], build: dict[int, int] | None = None, roles=ALL_ROLES) -> dict:
    """Per method: the learning rates tried, their selection scores and the winner."""
    build = build or {s: 0 for s in sweep_seeds}
    return grow_lr_sweep(ctx, methods, list(spec["grid"]), spec["extensions"], sweep_seeds,
                         lambda m, lr, s: method_job(spec, runs_dir, table2_dir, m, lr, s, selection=True,
                                                     build=build[s], roles=roles))


@register_study("efficiency", after=("table2",),
                help="OPD, EffOPD, GRPO, DAPO, SFT at validation-selected LRs -> results/efficiency.*", options=(
    option("--seeds", type=int, default=None, help="seeds per method (default: the sweep file's)"),
    option("--sweep-seeds", type=int, default=None, help="seeds per LR-sweep arm (default: the sweep file's)"),
    option("--sweep-file", default=str(SWEEP_FILE), help="methods, LR grid and seeds"),
    option("--builds", type=int, default=3,
           help="style-world builds the seeds are spread over (seed s -> s %% builds), as in table 2"),
    option("--build-roles", default=",".join(ALL_ROLES),
           help="the roles a world build re-seeds (world.build_roles): base,teacher,student (default: the builds "
                "results/efficiency.* was made with) or student (table 2's builds: its runs of builds 1 and 2 are "
                "then reused too)"),
    option("--runs-dir", default="runs/efficiency"),
    option("--table2-runs-dir", default="runs/table2", help="identical runs are reused from here"),
    option("--out", default=str(RESULTS_DIR)),
))
def reproduce_efficiency(ctx: StudyContext) -> dict:
    args = ctx.args
    spec = load_sweep(Path(args.sweep_file))
    runs_dir, table2_dir = Path(args.runs_dir), Path(args.table2_runs_dir)
    seeds = list(range(args.seeds or spec["seeds"]))
    build = builds_for(seeds, args.builds)
    roles = parse_build_roles(args.build_roles)
    ctx.build_world("style", args.builds, overrides=(roles_override(roles),))
    sweep_seeds = seeds[: args.sweep_seeds or spec["sweep_seeds"]]
    methods = list(spec["methods"])
    chosen = sweep(ctx, spec, runs_dir, table2_dir, methods, sweep_seeds, build, roles)
    final_jobs = {m: [method_job(spec, runs_dir, table2_dir, m, chosen[m]["selected_lr"], s,
                                 selection=s in sweep_seeds, build=build[s], roles=roles) for s in seeds]
                  for m in methods}
    ctx.run([j for js in zip(*final_jobs.values()) for j in js])

    labels = {m: f"{m} (LR {lr_tag(chosen[m]['selected_lr'])})" for m in methods}
    table_runs: list[RunRecord] = []
    for m in methods:
        for job in final_jobs[m]:
            (run,) = load_runs(job.run_dir)
            table_runs.append(RunRecord(**{**run.__dict__, "method": labels[m]}))
    extra = {
        "title": "Efficiency (tiny world): OPD vs EffOPD vs RL vs SFT, each at its validation-selected LR",
        "machine": ctx.machine(), "git_commit": ctx.git_commit(), "world": "style",
        **({"seed_builds": {str(s): b for s, b in build.items()}, "build_roles": list(roles)}
           if args.builds > 1 else {}),
        "lr_selection": {"grid": spec["grid"], "extensions": spec["extensions"],
                         "criterion": "mean greedy accuracy on the validation selection prompts over all evals "
                                      "of a run (bench.studies.run_metrics.selection_score)",
                         "sweep_seeds": sweep_seeds, "by_method": chosen},
        "effopd_triggers": effopd_diagnostics([r for r in table_runs if r.method == labels["EffOPD"]]),
        "median_step_seconds": {labels[m]: step_time_split([r for r in table_runs if r.method == labels[m]])
                                for m in methods},
        "tokens_note": ("generated tokens to target: the student's rollout tokens (every dynamic-sampling round "
                        "included) plus EffOPD's validation tokens; for SFT the teacher tokens it trained on, "
                        "generated once offline"),
        **ctx.stale_record(), **ctx.world_status(),
    }
    table = build_speedup_table(table_runs, reference=labels[spec["reference"]], target_fraction=TARGET_FRACTION,
                                target_per_build="auto", extra=extra)
    table["total_wall_seconds"] = ctx.seconds()
    out = Path(args.out)
    write_speedup_table(table, out, table_runs, stem="efficiency")
    append_markdown(out / "efficiency.md", notes(table))
    print((out / "efficiency.md").read_text())
    return table


def notes(table: dict) -> list[str]:
    """LR selection, seconds per step, tokens and provenance under the main table."""
    sel = table["lr_selection"]
    lines = ["", "## Learning-rate selection (validation data)", "",
             f"Criterion: {sel['criterion']}; seeds {sel['sweep_seeds']}. Grid {sel['grid']}, extended by "
             f"{sel['extensions']} while the best LR is the largest tried.", "",
             *md_header(["method", "LR", "selection score", "selected"])]
    for m, res in sel["by_method"].items():
        for c in res["candidates"]:
            mark = "yes" if c["lr"] == res["selected_lr"] else ""
            lines.append(f"| {m} | {c['lr']:.0e} | {fmt_stat(c['selection_score'])} | {mark} |")
    split = table["median_step_seconds"]
    keys = sorted({k for s in split.values() for k in s})
    lines += ["", "## Seconds per step (median; validation: mean over steps)", "", *md_header(["method", *keys])]
    for m, s in split.items():
        lines.append(f"| {m} | " + " | ".join(f"{s.get(k, 0):.3f}" for k in keys) + " |")
    lines += ["", f"Tokens: {table['tokens_note']}.", "", machine_line(table), *stale_note(table)]
    return lines
