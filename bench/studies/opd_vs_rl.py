"""OPD against RL per world (``make reproduce-opd-vs-rl``): does OPD reach its level sooner than GRPO, on which
world, and by how much? (the paper's other headline.)

    python -m bench.reproduce opd_vs_rl [--seeds 3] [--sweep-seeds 2] [--builds 3] [--worlds flip,scratch]

Grid, per world (``flip`` and ``scratch`` by default; add ``style`` with ``--worlds``): OPD (``experiment=opd``)
and GRPO (``experiment=grpo``, the same 64 completions per step), each at its own learning rate chosen on
validation data like the efficiency study: the LRs ``--lr-multipliers`` (x1, x3, x10) times the default 2e-5,
grown by ``--lr-extensions`` (x30, then x100) while a method's best LR is the largest tried, scored with
``selection_score`` (mean greedy accuracy on the validation selection prompts over the run) on the first
``--sweep-seeds`` seeds; the winner is then run on every seed. Seeds are spread over ``--builds`` world builds
(seed s in build s % builds).

Per world: the target is 95% of the mean final accuracy of OPD at its selected LR; steps and generated tokens to
it for both methods; the speedup of OPD over GRPO (GRPO's steps, or tokens, over OPD's, per (build, seed) pair;
a Student-t interval over seeds, or over per-build means when the seeds span several builds); and a sentence
saying whether, and by how much, OPD leads. Tables: results/opd_vs_rl.{md,json}. Runs:
``<runs-dir>/<world>/<method>/<label>/seed<S>`` (label ``OPD``, ``OPD-lr6e-5``, ...).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bench.studies.framework import StudyContext, option, register_study
from bench.studies.jobs import DEFAULT_LR, Job, builds_for, lr_tag, sweep_label, train_job
from bench.studies.report import fmt_stat, machine_line, md_header, publish, stale_note, world_note
from bench.studies.run_metrics import grow_lr_sweep, start_by_build, targets_within_start_noise
from bench.studies.speedup import RunRecord, build_speedup_table, load_runs
from bench.studies.stats import cluster_t_mean_ci, mean_ci
from core.paths import RESULTS_DIR

METHODS = {"OPD": "opd", "GRPO": "grpo"}  # label -> experiment preset
REFERENCE, RIVAL, TARGET_FRACTION = "OPD", "GRPO", 0.95
DEFAULT_WORLDS = ("flip", "scratch")


def parse_floats(text: str, what: str) -> list[float]:
    """A comma-separated list of positive, increasing numbers; a bad one names the option and the fix."""
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}={text!r}: give comma-separated numbers, e.g. 1,3,10") from None
    if any(v <= 0 for v in vals) or vals != sorted(set(vals)):
        raise ValueError(f"{what}={text!r}: the multipliers must be positive, distinct and increasing, e.g. 1,3,10")
    return vals


def method_job(runs_dir: Path, world: str, method: str, lr: float, seed: int, build: int, selection: bool) -> Job:
    """A method's run at ``lr`` on ``world``: ``<runs_dir>/<world>/<method>/<sweep label>/seed<seed>``."""
    return train_job(runs_dir / world / method, sweep_label(method, lr), METHODS[method], seed, lr, world=world,
                     selection=selection, build=build)


def select_lrs(ctx: StudyContext, runs_dir: Path, world: str, grid: list[float], extensions: list[float],
               sweep_seeds: list[int], build: dict[int, int]) -> dict:
    """Per method on ``world``: the LRs tried, their selection scores (mean [CI] over the sweep seeds) and the
    winner (``grow_lr_sweep``), flagged ``at_grid_edge`` when it is the largest LR tried (none left to add)."""
    result = grow_lr_sweep(ctx, list(METHODS), grid, extensions, sweep_seeds,
                           lambda m, lr, s: method_job(runs_dir, world, m, lr, s, build[s], selection=True))
    for sel in result.values():
        sel["at_grid_edge"] = sel["selected_lr"] == max(c["lr"] for c in sel["candidates"])
    return result


def pair_ratios(opd: dict, rival: dict, key: str) -> dict[tuple[int, int], float | None]:
    """Per (build, seed): rival's ``key`` over OPD's (how many times fewer OPD needs); None when either missed."""
    out = {}
    for k, o in opd.items():
        r = rival.get(k)
        a, b = (o or {}).get(key), (r or {}).get(key)
        out[k] = b / a if a and b is not None and r is not None else None
    return out


def ratio_ci(ratios: dict[tuple[int, int], float | None]) -> dict:
    """Mean [95% CI] of per-pair ratios: over seeds (one build), over per-build means (several builds)."""
    builds = sorted({b for b, _ in ratios})
    if len(builds) < 2:
        return mean_ci(list(ratios.values()))
    groups = defaultdict(list)
    for (b, _), v in sorted(ratios.items()):
        groups[b].append(v)
    return cluster_t_mean_ci([groups[b] for b in builds])


def lead_sentence(world: str, w: dict) -> str:
    """Whether, and by how much, OPD leads GRPO on ``world``, from the numbers alone."""
    opd, rival = w["rows"][REFERENCE], w["rows"][RIVAL]
    sp, tok = w["speedup_steps"], w["speedup_tokens"]
    lrs = f"OPD at LR {lr_tag(w['selected_lr'][REFERENCE])}, GRPO at {lr_tag(w['selected_lr'][RIVAL])}"
    reach = f"{opd['reached_target']} OPD and {rival['reached_target']} GRPO runs reach it"
    head = f"{world} (target {w['target']['value']:.3f}; {lrs}; {reach}): "
    o_hit, r_hit = (int(r["reached_target"].split("/")[0]) for r in (opd, rival))
    if r_hit == 0 and o_hit == 0:
        return head + "neither method reaches the target, so no lead can be measured."
    if r_hit == 0:
        return head + (f"OPD leads: it reaches the target in {fmt_stat(opd['steps_to_target'], 1)} steps, GRPO "
                       f"in none of its runs within {w['horizon']} steps.")
    if o_hit == 0:
        return head + (f"GRPO leads: it reaches the target in {fmt_stat(rival['steps_to_target'], 1)} steps, OPD "
                       f"in none of its runs within {w['horizon']} steps.")
    if sp["mean"] is None:
        return head + "no (build, seed) pair where both reach the target, so no paired speedup."
    ci = sp.get("ci95")
    size = f"a speedup over GRPO of {fmt_stat(sp, 2, '×')} in steps ({fmt_stat(tok, 2, '×')} in tokens)"
    if ci and ci[0] > 1:
        verdict = f"OPD leads, with {size}; the CI lies above 1."
    elif ci and ci[1] < 1:
        verdict = f"GRPO leads: OPD has {size}; the CI lies below 1."
    elif ci:
        verdict = f"no clear lead: OPD has {size}, and the CI includes 1."
    else:
        verdict = f"OPD has {size} on {sp['n']} pair(s), too few for a CI, so no lead is claimed."
    missed = [f"{m} misses it in {n - hit} of {n} runs" for m, hit, n in
              ((REFERENCE, o_hit, opd["n_seeds"]), (RIVAL, r_hit, rival["n_seeds"])) if hit < n]
    note = f" ({'; '.join(missed)}: those pairs are left out of the speedup)" if missed else ""
    return (head + verdict + f" Steps to target: OPD {fmt_stat(opd['steps_to_target'], 1)}, "
            f"GRPO {fmt_stat(rival['steps_to_target'], 1)}{note}." + start_caveat(w))


def start_caveat(w: dict) -> str:
    """A warning when a build's target is within one evaluation's noise of where the runs started (two binomial
    standard errors above the start accuracy, or below it): reaching it then measures noise, not learning."""
    low = targets_within_start_noise(w["target"], w.get("start_by_build", {}))
    if not low:
        return ""
    moves = ", ".join(f"{m} {w['start_accuracy'][m]['mean']:.3f} -> {w['rows'][m]['final_accuracy']['mean']:.3f}"
                      for m in METHODS)
    return (f" Caution: on build(s) {', '.join(low)} the target is within two standard errors of the start "
            f"accuracy, so steps to it measure evaluation noise, not learning; compare the final accuracies "
            f"instead (mean start -> final: {moves}).")


def world_result(runs: list[RunRecord], selected: dict[str, float], selection: dict) -> dict:
    """One world: the speedup table at the selected LRs (target from OPD), the OPD-over-GRPO ratios, the sentence."""
    # Per build when the seeds span several, as on the map: builds end far apart (flip at the default LR: OPD at
    # 0.46 on build 2, 0.92-0.98 on builds 0 and 1), and a pooled target would time one build against another's.
    table = build_speedup_table(runs, reference=REFERENCE, target_fraction=TARGET_FRACTION, target_per_build="auto")
    rows = {r["method"]: r for r in table["rows"]}

    def per_key(method: str) -> dict:
        row = rows[method]
        keys = [(p.get("build", 0), p["seed"]) for p in row["per_seed"]]
        return dict(zip(keys, row["per_seed"]))

    opd, rival = per_key(REFERENCE), per_key(RIVAL)
    steps, tokens = pair_ratios(opd, rival, "steps_to_target"), pair_ratios(opd, rival, "tokens_to_target")
    w = {"target": table["target"], "ci_method": table["ci_method"], "selected_lr": selected,
         "lr_selection": selection, "rows": rows, "horizon": max(int(r.summary.get("total_steps", 0)) for r in runs),
         "pairs": [{"build": b, "seed": s, "speedup_steps": steps[(b, s)], "speedup_tokens": tokens[(b, s)]}
                   for b, s in sorted(steps)],
         "speedup_steps": ratio_ci(steps), "speedup_tokens": ratio_ci(tokens),
         # where each method started (step 0's greedy test accuracy): on a world where the student barely moves,
         # a target below the start is "reached" at once, and the table must show it
         "start_accuracy": {m: mean_ci([r.evals[0]["test/greedy"] for r in runs if r.method == m])
                            for m in METHODS},
         "start_by_build": start_by_build([r for r in runs if r.method == REFERENCE])}
    return w


@register_study("opd_vs_rl", help="OPD vs GRPO per world, each at its validation-selected LR -> results/opd_vs_rl.*",
                options=(
    option("--seeds", type=int, default=3),
    option("--sweep-seeds", type=int, default=2, help="seeds per LR-sweep arm used for selection"),
    option("--builds", type=int, default=3, help="world builds the seeds are spread over (seed s -> s %% builds)"),
    option("--worlds", default=",".join(DEFAULT_WORLDS), help="e.g. flip,scratch,style"),
    option("--lr-multipliers", default="1,3,10", help="the LR grid, in multiples of the default 2e-5"),
    option("--lr-extensions", default="30,100", help="added one at a time while the best LR is the largest tried"),
    option("--runs-dir", default="runs/opd_vs_rl"),
    option("--out", default=str(RESULTS_DIR)),
))
def reproduce_opd_vs_rl(ctx: StudyContext) -> dict:
    args = ctx.args
    if args.seeds < 3:
        raise ValueError(f"--seeds={args.seeds}: the comparison needs at least 3 seeds (use --seeds 3 or more)")
    if not 1 <= args.sweep_seeds <= args.seeds:
        raise ValueError(f"--sweep-seeds={args.sweep_seeds}: must be between 1 and --seeds={args.seeds}")
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    if not worlds or len(set(worlds)) != len(worlds):
        raise ValueError(f"--worlds={args.worlds!r}: give a non-empty comma-separated list without repeats")
    grid = [DEFAULT_LR * m for m in parse_floats(args.lr_multipliers, "--lr-multipliers")]
    extensions = [DEFAULT_LR * m for m in parse_floats(args.lr_extensions, "--lr-extensions")] \
        if args.lr_extensions.strip() else []
    if not grid or (extensions and extensions[0] <= grid[-1]):
        raise ValueError(f"--lr-multipliers={args.lr_multipliers!r} --lr-extensions={args.lr_extensions!r}: the "
                         "grid must be non-empty and every extension larger than its largest multiplier")
    seeds = list(range(args.seeds))
    sweep_seeds = seeds[: args.sweep_seeds]
    build = builds_for(seeds, args.builds)
    runs_dir = Path(args.runs_dir)
    result_worlds = {}
    for world in worlds:
        ctx.build_world(world, args.builds)
        chosen = select_lrs(ctx, runs_dir, world, grid, extensions, sweep_seeds, build)
        final = {m: [method_job(runs_dir, world, m, chosen[m]["selected_lr"], s, build[s], selection=s in sweep_seeds)
                     for s in seeds] for m in METHODS}
        ctx.run([j for js in zip(*final.values()) for j in js])
        runs = [RunRecord(**{**run.__dict__, "method": m}) for m, js in final.items() for j in js
                for run in load_runs(j.run_dir)]
        w = world_result(runs, {m: chosen[m]["selected_lr"] for m in METHODS}, chosen)
        w["sentence"] = lead_sentence(world, w)
        result_worlds[world] = w
    result = {
        "title": "OPD vs GRPO per world, each at its validation-selected learning rate",
        "seeds": seeds, "sweep_seeds": sweep_seeds, "seed_builds": {str(s): b for s, b in build.items()},
        "lr_grid": grid, "lr_extensions": extensions, "target_fraction": TARGET_FRACTION,
        "selection_criterion": "mean greedy accuracy on the validation selection prompts over all evaluations of a "
                               "run (bench.studies.run_metrics.selection_score)",
        "worlds": result_worlds, "machine": ctx.machine(), "git_commit": ctx.git_commit(),
        "total_wall_seconds": ctx.seconds(), **ctx.stale_record(), **ctx.world_status(),
    }
    out = Path(args.out)
    publish(out, "opd_vs_rl", result, render(result))
    return result


def render(result: dict) -> str:
    lines = [f"# {result['title']}", "",
             f"Seeds {result['seeds']} (world builds by seed: {result['seed_builds']}); LR selected on seeds "
             f"{result['sweep_seeds']} by {result['selection_criterion']}. Target per world and build: "
             f"{result['target_fraction']:.0%} of the mean final greedy test accuracy of OPD at its selected LR on "
             "that build (one pooled target with a single build). "
             "Speedup of OPD over GRPO = GRPO's steps (tokens) to the target over OPD's, per (build, seed) pair. "
             "Mean [95% CI].", ""]
    for world, w in result["worlds"].items():
        lines += [f"## {world}", "", w["sentence"], "", f"Target: {w['target']['definition']}.", "",
                  *md_header(["method", "LR", "start acc", "final acc", "reached", "steps to target",
                              "tokens to target (k)", "wall s to target"])]
        for m in METHODS:
            r = w["rows"][m]
            tok = r["tokens_to_target"]
            tok_k = {**tok, "mean": tok["mean"] / 1e3, "ci95": [x / 1e3 for x in tok["ci95"]] if tok.get("ci95")
                     else None} if tok.get("mean") is not None else tok
            lines.append(f"| {m} | {lr_tag(w['selected_lr'][m])} | {fmt_stat(w['start_accuracy'][m])} | "
                         f"{fmt_stat(r['final_accuracy'])} | "
                         f"{r['reached_target']} | {fmt_stat(r['steps_to_target'], 1)} | {fmt_stat(tok_k, 1)} | "
                         f"{fmt_stat(r['wall_seconds_to_target'], 1)} |")
        lines += ["", f"OPD over GRPO: {fmt_stat(w['speedup_steps'], 2, '×')} fewer steps, "
                      f"{fmt_stat(w['speedup_tokens'], 2, '×')} fewer tokens. CI: {w['ci_method']}.", "",
                  "LR selection: " + "; ".join(
                      f"{m} " + ", ".join(f"{lr_tag(c['lr'])}: {fmt_stat(c['selection_score'])}"
                                          + (" (selected)" if c["lr"] == sel["selected_lr"] else "")
                                          for c in sel["candidates"])
                      for m, sel in w["lr_selection"].items()) + ".",
                  *[f"{m}'s selected LR is the largest tried (no extension left): a larger one might score higher."
                    for m, sel in w["lr_selection"].items() if sel["at_grid_edge"]], ""]
    lines += [machine_line(result, total="total"), *world_note(result), *stale_note(result)]
    return "\n".join(lines) + "\n"
