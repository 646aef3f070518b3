"""The validation axis (``make reproduce-validation``): how much of EffOPD's speedup, and at what validation cost,
depends on how the candidates are scored.

    python -m bench.reproduce validation [--seeds 5] [--builds 3] [--worlds style,flip]

Grid: per world (``style`` and ``flip`` by default), at the default learning rate (2e-5), on ``--seeds`` seeds
spread over ``--builds`` world builds (``builds_for``: seed s in build s % builds): OPD, and EffOPD with each
validation variant of ``VARIANTS`` (the official 50 prompts x 1 temperature-1 sample; 200 x 1; 50 x 4; greedy
on 200; the continuous ``teacher_loglik`` and ``reverse_kl`` signals on 50 prompts). A variant is the official
preset plus its overrides (``effopd.val_prompts=200``, ``effopd=teacher_loglik``, ...), so it differs from the
official run in the validation only.

Per world and variant: steps to the target (95% of OPD's mean final accuracy on the run's world build), speedup
in steps and in wall-clock net of validation over OPD (per (build, seed) pair; CIs over world builds when the
seeds span several, bench/studies/speedup.py), validation seconds per run, and acceptance and accepted multiplier per
trigger.
Tables: results/validation_ablation.{md,json}. Runs: ``<runs-dir>/<world>/<label>/seed<S>``.
"""

from __future__ import annotations

from pathlib import Path

from bench.studies.framework import StudyContext, option, register_study
from bench.studies.jobs import DEFAULT_LR, Job, builds_for, train_job
from bench.studies.report import fmt_stat, machine_line, md_header, publish, stale_note, world_note
from bench.studies.run_metrics import effopd_diagnostics
from bench.studies.speedup import RunRecord, build_speedup_table, load_runs
from core.paths import RESULTS_DIR

REFERENCE, TARGET_FRACTION = "OPD", 0.95
DEFAULT_WORLDS = ("style", "flip")
# label -> (what it is, the overrides on top of experiment=effopd). The label names the run folder and the
# run's ``method``; the official variant keeps table 2's label.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "EffOPD": ("official: 50 prompts x 1 sample at temperature 1, accuracy", ()),
    "EffOPD-val200": ("200 prompts x 1 sample at temperature 1, accuracy", ("effopd.val_prompts=200",)),
    "EffOPD-val50x4": ("50 prompts x 4 samples at temperature 1, accuracy", ("effopd.val_samples=4",)),
    "EffOPD-greedy200": ("200 prompts, greedy, accuracy",
                         ("effopd.val_prompts=200", "effopd.val_temperature=0")),
    "EffOPD-teacher_loglik": ("50 prompts x 1 cached teacher sample, student log-likelihood (no generation)",
                              ("effopd=teacher_loglik",)),
    "EffOPD-reverse_kl": ("50 prompts x 1 own sample, minus the reverse KL to the teacher (no verifier)",
                          ("effopd=reverse_kl",)),
}


def parse_list(text: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    """A comma-separated option as a list, checked: a bad value names the option and the fix."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items or len(set(items)) != len(items):
        raise ValueError(f"{what}={text!r}: give a non-empty comma-separated list without repeats")
    bad = [x for x in items if allowed is not None and x not in allowed]
    if bad:
        raise ValueError(f"{what}={text!r}: unknown {bad}; choose from {list(allowed)}")
    return items


def grid(runs_dir: Path, worlds: list[str], seeds: list[int], n_builds: int,
         variants: list[str]) -> dict[tuple[str, str, int], Job]:
    """Every run: (world, label, seed) -> job. OPD and each EffOPD variant at the default LR, seed s in build
    s % n_builds."""
    build = builds_for(seeds, n_builds)
    jobs = {}
    for s in seeds:  # seed-major, so a partly finished grid already holds comparable (OPD, variant) pairs
        for world in worlds:
            jobs[(world, REFERENCE, s)] = train_job(runs_dir / world, REFERENCE, "opd", s, DEFAULT_LR, world=world,
                                                    build=build[s])
            for label in variants:
                jobs[(world, label, s)] = train_job(runs_dir / world, label, "effopd", s, DEFAULT_LR, world=world,
                                                    extra=VARIANTS[label][1], build=build[s])
    return jobs


def load_as(job: Job, method: str) -> RunRecord:
    (run,) = load_runs(job.run_dir)
    return RunRecord(**{**run.__dict__, "method": method})


def world_result(runs: list[RunRecord], variants: list[str]) -> dict:
    """One world's numbers: the speedup table (OPD reference) and, per variant, its row and trigger record."""
    # Per build, as on the map: builds of one recipe end far apart (style: OPD 0.78 on build 0, 0.99 on build 1),
    # and one pooled target would count build 0's runs as never reaching it.
    table = build_speedup_table(runs, reference=REFERENCE, target_fraction=TARGET_FRACTION, target_per_build="auto")
    rows = {r["method"]: r for r in table["rows"]}
    out = {"target": table["target"], "ci_method": table["ci_method"], "builds": sorted({r.build for r in runs}),
           "opd": rows[REFERENCE], "variants": {}}
    for label in variants:
        triggers = effopd_diagnostics([r for r in runs if r.method == label])
        out["variants"][label] = {
            "description": VARIANTS[label][0], "overrides": list(VARIANTS[label][1]), "row": rows[label],
            "steps_to_target": rows[label]["steps_to_target"], "reached_target": rows[label]["reached_target"],
            "speedup_steps": rows[label]["speedup_steps"], "speedup_wall_net": rows[label]["speedup_wall"],
            "validation_seconds": rows[label]["validation_overhead_seconds"],
            "triggers": [{k: t.get(k) for k in ("step", "n", "accepted_frac", "accepted_multiplier",
                                                "validation_seconds")} for t in triggers],
        }
    return out


@register_study("validation", help="EffOPD's validation variants vs OPD on style and flip -> "
                "results/validation_ablation.*", options=(
    option("--seeds", type=int, default=5),
    option("--builds", type=int, default=3, help="world builds the seeds are spread over (seed s -> s %% builds)"),
    option("--worlds", default=",".join(DEFAULT_WORLDS)),
    option("--variants", default=",".join(VARIANTS), help=f"a subset of {list(VARIANTS)}"),
    option("--runs-dir", default="runs/validation"),
    option("--out", default=str(RESULTS_DIR)),
))
def reproduce_validation(ctx: StudyContext) -> dict:
    args = ctx.args
    if args.seeds < 2:
        raise ValueError(f"--seeds={args.seeds}: speedups need at least 2 seeds for a CI (use --seeds 5)")
    worlds = parse_list(args.worlds, "--worlds")
    variants = parse_list(args.variants, "--variants", tuple(VARIANTS))
    seeds = list(range(args.seeds))
    runs_dir = Path(args.runs_dir)
    for world in worlds:
        ctx.build_world(world, args.builds)
    jobs = grid(runs_dir, worlds, seeds, args.builds, variants)
    ctx.run(list(jobs.values()))
    result = {
        "title": "The validation axis: EffOPD's speedup over OPD per validation variant (default LR)",
        "lr": DEFAULT_LR, "seeds": seeds, "builds": sorted(set(builds_for(seeds, args.builds).values())),
        "seed_builds": {str(s): b for s, b in builds_for(seeds, args.builds).items()},
        "target_fraction": TARGET_FRACTION,
        "variants": {k: {"description": VARIANTS[k][0], "overrides": list(VARIANTS[k][1])} for k in variants},
        "worlds": {w: world_result([load_as(j, label) for (w_, label, _), j in jobs.items() if w_ == w], variants)
                   for w in worlds},
        "machine": ctx.machine(), "git_commit": ctx.git_commit(), "total_wall_seconds": ctx.seconds(),
        **ctx.stale_record(), **ctx.world_status(),
    }
    out = Path(args.out)
    publish(out, "validation_ablation", result, render(result))
    return result


def render(result: dict) -> str:
    lines = [f"# {result['title']}", "",
             f"LR {result['lr']:g}; seeds {result['seeds']} over world builds {result['builds']} (seed s in build "
             f"s % {len(result['builds'])}). Target per world and build: {result['target_fraction']:.0%} of OPD's "
             "mean final greedy test accuracy on that build. Speedups over OPD per (build, seed) pair; wall-clock "
             "includes the validation. Mean [95% CI].", ""]
    for world, w in result["worlds"].items():
        opd = w["opd"]
        lines += [f"## {world}", "", f"Target: {w['target']['definition']}. OPD: {opd['reached_target']} reached, "
                  f"{fmt_stat(opd['steps_to_target'], 1)} steps. CI: {w['ci_method']}.", "",
                  *md_header(["variant", "validation", "reached", "steps to target", "speedup (steps)",
                              "speedup (wall, net)", "validation s per run", "accepted at triggers (mean mult.)"])]
        for label, v in w["variants"].items():
            acc = ", ".join(f"{t['step']}:{t['accepted_frac']:.0%} ({fmt_stat(t['accepted_multiplier'], 1)})"
                            for t in v["triggers"] if t.get("accepted_frac") is not None)
            lines.append(f"| {label} | {v['description']} | {v['reached_target']} | "
                         f"{fmt_stat(v['steps_to_target'], 1)} | {fmt_stat(v['speedup_steps'], 2, '×')} | "
                         f"{fmt_stat(v['speedup_wall_net'], 2, '×')} | {fmt_stat(v['validation_seconds'], 1)} | "
                         f"{acc or '—'} |")
        lines.append("")
    lines += ["Overrides per variant (on top of `experiment=effopd`): " + "; ".join(
        f"{k}: {' '.join(v['overrides']) or '(none)'}" for k, v in result["variants"].items()) + ".", "",
        machine_line(result, total="total"), *world_note(result), *stale_note(result)]
    return "\n".join(lines) + "\n"
