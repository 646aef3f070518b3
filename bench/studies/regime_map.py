"""The regime map (``make reproduce-map``): OPD, EffOPD and WindowLR per world x learning rate.

    python -m bench.reproduce map [--worlds flip,style,scratch] [--multipliers 0.25,0.5,1,3,10] [--seeds 3]
                                  [--default-seeds 5] [--builds 3] [--selection-seeds 2] [--max-steps 200]

Grid: per world (``WORLDS``: its default LR and base horizon), OPD, EffOPD and our WindowLR at
LR = multiplier x the world's default LR, ``--seeds`` seeds per cell (``--default-seeds`` at multiplier 1), seed s
in world build s % builds (``builds_for``). Horizon per LR: the world's base horizon scaled by 1/multiplier below
x1 (so OPD at the lowest LR gets the steps it needs) and kept at the base above it, capped by ``--max-steps``; a
run that does not reach the target within it counts as "not reached" in its cell (reached n/N).

Target per world and build: 95% of the mean final accuracy, on that build, of OPD at its validation-selected
LR (builds of one recipe differ: on style, OPD ends at 0.78 on build 0 and 0.99 on build 1, so one pooled target
would be out of reach on one and trivial on the other). Selection: the OPD cells' first ``--selection-seeds``
seeds score the validation selection prompts; the selected LR has the highest mean ``selection_score`` over the
evaluations up to the world's base horizon (the same step budget for every LR). The same targets hold for every
LR of the world.

Per cell: steps and net wall-clock to target (reached n/N); EffOPD's and WindowLR's speedups over OPD at the same
LR and every method's speedups over the tuned-LR OPD (per (build, seed) pair); validation seconds; per trigger
the acceptance and mean accepted multiplier (WindowLR: and its LR scale); the straightness measures
(``run_metrics.straightness``). Over all cells: the correlation of EffOPD's same-LR step speedup with each OPD
straightness measure. Outputs: results/regime_map.{md,json}, results/figures/regime_map.png,
results/figures/regime_map_straightness.png.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.studies.framework import StudyContext, option, register_study
from bench.studies.map_grid import (
    EVAL_EVERY,
    EXTRAPOLATED,
    METHODS,
    TARGET_FRACTION,
    TUNED,
    WORLDS,
    cell_seeds,
    grid,
    horizon,
    load_as,
    paired_speedup,
)
from bench.studies.report import fmt_stat, machine_line, md_header, publish, stale_note, world_note
from bench.studies.run_metrics import (
    STRAIGHTNESS_SCALARS,
    effopd_diagnostics,
    selection_score,
    start_by_build,
    straightness,
    targets_within_start_noise,
)
from bench.studies.speedup import CI_METHODS, RunRecord, build_speedup_table
from bench.studies.stats import mean_ci
from core.io import atomic_save_figure
from core.paths import RESULTS_DIR

# The straightness measures (run_metrics.STRAIGHTNESS_SCALARS) that can be the map's best predictor.
PREDICTORS = ("chord_arc", "early_share", "cos_final_mean", "cos_prev_window_mean")
def parse_options(args) -> tuple[list[str], list[float]]:
    """The worlds and multipliers of ``args``, checked: a bad value stops the study before anything runs."""
    worlds = [w for w in str(args.worlds).split(",") if w]
    bad = [w for w in worlds if w not in WORLDS]
    if not worlds or bad:
        raise ValueError(f"--worlds={args.worlds!r}: unknown world(s) {bad}; use a comma list of {sorted(WORLDS)}")
    try:
        mults = [float(m) for m in str(args.multipliers).split(",") if m]
    except ValueError:
        mults = []
    if not mults or any(not math.isfinite(m) or m <= 0 for m in mults) or len(set(mults)) != len(mults):
        raise ValueError(f"--multipliers={args.multipliers!r}: give distinct positive numbers, e.g. 0.25,0.5,1,3,10")
    for key, value, low in (("--seeds", args.seeds, 1), ("--default-seeds", args.default_seeds, 1),
                            ("--builds", args.builds, 1), ("--selection-seeds", args.selection_seeds, 1),
                            ("--max-steps", args.max_steps, EVAL_EVERY)):
        if value < low:
            raise ValueError(f"{key}={value}: must be >= {low}")
    if args.selection_seeds > min(args.seeds, args.default_seeds):
        raise ValueError(f"--selection-seeds={args.selection_seeds}: must be <= --seeds ({args.seeds}) and "
                         f"--default-seeds ({args.default_seeds}); every OPD cell scores the selection prompts "
                         "on its first selection seeds")
    return worlds, sorted(mults)


def select_lr(opd: dict[float, list[RunRecord]], selection_seeds: int, budget: int) -> tuple[float, list[dict]]:
    """The multiplier whose OPD selection-seed runs score best on the validation prompts up to step ``budget``."""
    cands = []
    for m, runs in sorted(opd.items()):
        scores = [selection_score(RunRecord(**{**r.__dict__, "evals": [e for e in r.evals if e["step"] <= budget]}))
                  for r in runs if r.seed < selection_seeds]
        cands.append({"lr_multiplier": m, "lr": runs[0].lr, "seeds": list(range(selection_seeds)),
                      "selection_score": mean_ci(scores)})
    best = max(cands, key=lambda c: c["selection_score"]["mean"])
    return best["lr_multiplier"], cands


def straightness_stats(runs: list[RunRecord]) -> dict:
    """Mean [CI] over runs of each straightness scalar (net path); runs without the measure are left out."""
    measured = [s for s in (straightness(r) for r in runs) if s is not None]
    return {k: mean_ci([s[k] for s in measured]) for k in STRAIGHTNESS_SCALARS} | {"n_runs": len(measured)}


def cell_result(world: str, m: float, lr: float, steps: int, runs: dict[str, list[RunRecord]],
                tuned: list[RunRecord]) -> dict:
    """One cell's numbers against the world's target (the tuned-LR OPD runs' final accuracy x 95%)."""
    table_runs = [r for method in METHODS for r in runs[method]] + [RunRecord(**{**r.__dict__, "method": TUNED})
                                                                     for r in tuned]
    table = build_speedup_table(table_runs, reference=TUNED, target_fraction=TARGET_FRACTION, target_per_build=True)
    rows = {r["method"]: r for r in table["rows"]}
    out = {"world": world, "lr_multiplier": m, "lr": lr, "total_steps": steps, "target": table["target"]["value"],
           "target_per_build": table["target"]["per_build"],
           "seeds": sorted({r.seed for r in runs["OPD"]}),
           "builds": {str(r.seed): r.build for r in sorted(runs["OPD"], key=lambda r: r.seed)}}
    for method in METHODS:
        row = rows[method]
        out[method] = {
            "reached": row["reached_target"], "final_accuracy": row["final_accuracy"],
            "steps_to_target": row["steps_to_target"], "wall_seconds_to_target": row["wall_seconds_to_target"],
            "validation_seconds": row["validation_overhead_seconds"],
            "speedup_steps_vs_tuned": row["speedup_steps"], "speedup_wall_vs_tuned": row["speedup_wall"],
            "pairs_excluded_vs_tuned": row["pairs_excluded"],
            "straightness": straightness_stats(runs[method]),
            **({"between_builds": row["between_builds"]} if "between_builds" in row else {}),
            "per_seed": row["per_seed"],
        }
    for method in EXTRAPOLATED:
        out[method]["speedup_steps_vs_same_lr"] = paired_speedup(rows["OPD"], rows[method], "steps_to_target")
        out[method]["speedup_wall_vs_same_lr"] = paired_speedup(rows["OPD"], rows[method], "wall_seconds_to_target")
        out[method]["triggers"] = [
            {"step": t["step"], "n": t["n"], "accepted_frac": t.get("accepted_frac"),
             "accepted_multiplier": t.get("accepted_multiplier"), "validation_seconds": t.get("validation_seconds"),
             "cos_prev_window": t["cos_prev_window"], **({"lr_scale": t["lr_scale"]} if "lr_scale" in t else {})}
            for t in effopd_diagnostics(runs[method])]
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def _constant(x: np.ndarray) -> bool:
    return float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.max(np.abs(x))))


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r; None with fewer than 3 points or a constant side (float noise in equal means included)."""
    if len(x) < 3 or _constant(x) or _constant(y):
        return None
    return float(np.corrcoef(x, y)[0, 1])


def straightness_correlations(cells: list[dict]) -> dict:
    """Over cells: Pearson and Spearman correlation of EffOPD's same-LR step speedup with each straightness
    measure of the cell's OPD runs (and EffOPD's); the best predictor is the largest |Spearman| among OPD's
    ``PREDICTORS`` (final_norm and arc_length are sizes, not shapes, and are reported only)."""
    out: dict = {"speedup": "EffOPD's speedup in steps over OPD at the same LR (cell mean)", "measures": {}}
    for who in METHODS:
        for k in STRAIGHTNESS_SCALARS:
            pts = [(c[who]["straightness"][k]["mean"], c["EffOPD"]["speedup_steps_vs_same_lr"]["mean"])
                   for c in cells]
            pts = [(a, b) for a, b in pts if a is not None and b is not None]
            x, y = np.asarray([a for a, _ in pts], float), np.asarray([b for _, b in pts], float)
            out["measures"][f"{who}:{k}"] = {"n_cells": len(pts), "pearson": _pearson(x, y),
                                              "spearman": _pearson(_ranks(x), _ranks(y)) if len(pts) else None}
    scored = [(abs(v["spearman"]), k) for k, v in out["measures"].items()
              if k.split(":")[0] == "OPD" and k.split(":")[1] in PREDICTORS and v["spearman"] is not None]
    out["best_predictor"] = max(scored)[1] if scored else None
    return out


def headline(worlds: dict) -> str:
    """Where EffOPD reaches >= 3x over OPD at the same LR with a CI above 2x (if anywhere), and what it gives
    against each world's tuned-LR OPD, from the numbers."""
    noisy = [n for n, w in worlds.items() if w.get("targets_within_start_noise")]
    worlds_all, worlds = worlds, {n: w for n, w in worlds.items() if n not in noisy}
    cells = [c for w in worlds.values() for c in w["cells"]]

    def where(c):
        return f"{c['world']} at {c['lr']:.2g} (x{c['lr_multiplier']:g})"

    hits = [c for c in cells if (s := c["EffOPD"]["speedup_steps_vs_same_lr"])["mean"] is not None
            and s["mean"] >= 3 and s.get("ci95") and s["ci95"][0] > 2]
    if hits:
        text = ("EffOPD reaches >= 3x fewer steps to target than OPD at the same LR, with a 95% CI above 2x, in "
                + "; ".join(f"{where(c)}: {fmt_stat(c['EffOPD']['speedup_steps_vs_same_lr'], 2, 'x')}" for c in hits)
                + ".")
    else:
        best = max((c for c in cells if c["EffOPD"]["speedup_steps_vs_same_lr"]["mean"] is not None),
                   key=lambda c: c["EffOPD"]["speedup_steps_vs_same_lr"]["mean"], default=None)
        text = ("EffOPD reaches >= 3x fewer steps than OPD at the same LR with a 95% CI above 2x nowhere on the map"
                + (f" (its best cell: {where(best)}, {fmt_stat(best['EffOPD']['speedup_steps_vs_same_lr'], 2, 'x')})"
                   if best else "") + ".")
    tuned = []
    for name, w in worlds.items():
        best = max((c for c in w["cells"] if c["EffOPD"]["speedup_steps_vs_tuned"]["mean"] is not None),
                   key=lambda c: c["EffOPD"]["speedup_steps_vs_tuned"]["mean"], default=None)
        if best is None:
            tuned.append(f"{name}: EffOPD never reaches the target")
        else:
            e = best["EffOPD"]
            tuned.append(f"{name}: {fmt_stat(e['speedup_steps_vs_tuned'], 2, 'x')} in steps and "
                         f"{fmt_stat(e['speedup_wall_vs_tuned'], 2, 'x')} in net wall-clock at its best LR "
                         f"(x{best['lr_multiplier']:g}; tuned OPD at x{w['selected_multiplier']:g})")
    caution = "".join(f" On {n} the targets lie within two standard errors of where the runs start, so its cells "
                      "measure noise and are left out of this headline." for n in noisy)
    return (text + " Against the tuned-LR OPD of each world: " + "; ".join(tuned) + "." + caution + " "
            + window_lr_headline(worlds_all))


def window_lr_headline(worlds: dict) -> str:
    """WindowLR against both of its goals: its net wall-clock speedup over OPD at style's default
    LR against EffOPD's, and its steps to target against the tuned-LR OPD's at every LR (within 10%: a speedup
    vs tuned >= 1/1.1)."""
    parts = []
    default = next((c for c in worlds.get("style", {}).get("cells", []) if c["lr_multiplier"] == 1), None)
    if default is not None:
        w, e = default["WindowLR"]["speedup_wall_vs_same_lr"], default["EffOPD"]["speedup_wall_vs_same_lr"]
        parts.append(f"On style at the default LR, WindowLR's net wall-clock speedup over OPD is "
                     f"{fmt_stat(w, 2, 'x')} against EffOPD's {fmt_stat(e, 2, 'x')}")
    for name, wd in worlds.items():
        vs = [(c["lr_multiplier"], c["WindowLR"]["speedup_steps_vs_tuned"]["mean"]) for c in wd["cells"]]
        ok = [m for m, v in vs if v is not None and v >= 1 / 1.1]
        parts.append(f"{name}: WindowLR within 10% of the tuned-LR OPD's steps (or better) at {len(ok)}/{len(vs)} "
                     "LRs (" + ", ".join(f"x{m:g} {v:.2f}x" if v is not None else f"x{m:g} not reached"
                                         for m, v in vs) + ")"
                     + (" (targets within the start's noise: not evidence)"
                        if wd.get("targets_within_start_noise") else ""))
    return "; ".join(parts) + "."


@register_study("map", help="OPD and EffOPD per world x LR (x0.25-x10) -> results/regime_map.*", options=(
    option("--worlds", default="flip,style,scratch", help=f"comma list of {sorted(WORLDS)}"),
    option("--multipliers", default="0.25,0.5,1,3,10", help="LRs as multiples of each world's default LR"),
    option("--seeds", type=int, default=3, help="seeds per cell"),
    option("--default-seeds", type=int, default=5, help="seeds per cell at multiplier 1"),
    option("--builds", type=int, default=3, help="world builds the seeds are spread over (seed s -> s %% builds)"),
    option("--selection-seeds", type=int, default=2,
           help="the OPD cells' first seeds that score the selection prompts (the LR selection)"),
    option("--max-steps", type=int, default=200, help="cap on a cell's horizon (lower LRs get longer runs)"),
    option("--runs-dir", default="runs/map"),
    option("--out", default=str(RESULTS_DIR)),
))
def reproduce_map(ctx: StudyContext) -> dict:
    args = ctx.args
    worlds, mults = parse_options(args)
    runs_dir = Path(args.runs_dir)
    for world in worlds:
        ctx.build_world(world, args.builds)
    jobs = grid(runs_dir, worlds, mults, args.seeds, args.default_seeds, args.builds, args.selection_seeds,
                args.max_steps)
    ctx.run(sorted(jobs.values(), key=lambda j: (int(j.run_dir.name[4:]), str(j.run_dir))))

    result_worlds = {}
    for world in worlds:
        spec = WORLDS[world]
        runs = {(m, method): [load_as(jobs[(world, m, method, s)], method)
                              for s in cell_seeds(m, args.seeds, args.default_seeds)]
                for m in mults for method in METHODS}
        best, cands = select_lr({m: runs[(m, "OPD")] for m in mults}, args.selection_seeds, spec.base_steps)
        cells = [cell_result(world, m, spec.default_lr * m, horizon(spec, m, args.max_steps),
                             {method: runs[(m, method)] for method in METHODS}, runs[(best, "OPD")]) for m in mults]
        result_worlds[world] = {
            "default_lr": spec.default_lr, "base_steps": spec.base_steps, "selected_multiplier": best,
            "selected_lr": spec.default_lr * best,
            "selection": {"criterion": f"mean greedy accuracy on the validation selection prompts over the "
                                       f"evaluations up to step {spec.base_steps} (the same step budget for every "
                                       f"LR), OPD seeds 0..{args.selection_seeds - 1} of each LR",
                          "candidates": cands},
            "target": {"value": cells[0]["target"], "per_build": cells[0]["target_per_build"], "definition": (
                f"per world build, {TARGET_FRACTION:.0%} of the mean final test/greedy (mean of the last 3 evals) "
                f"of OPD at the selected LR x{best:g} on that build (its seeds {cells[mults.index(best)]['seeds']}); "
                "value: the mean over builds; the same for every LR")},
            "cells": cells,
        }
        # Where the runs started, per build: a world whose targets lie within an evaluation's noise of the start
        # (scratch, where OPD barely moves the student) gives steps "to target" that measure noise, not learning.
        start = start_by_build([r for m in mults for r in runs[(m, "OPD")]])
        result_worlds[world]["start_by_build"] = start
        result_worlds[world]["targets_within_start_noise"] = targets_within_start_noise(
            result_worlds[world]["target"], start)
    cells = [c for w in result_worlds.values() for c in w["cells"]]
    result = {
        "title": "The regime map: OPD and EffOPD per world and learning rate",
        "worlds": result_worlds, "multipliers": mults, "builds": args.builds,
        "seeds_per_cell": args.seeds, "seeds_at_default": args.default_seeds, "max_steps": args.max_steps,
        "horizon_rule": "base steps / min(multiplier, 1), rounded up to the eval interval, capped by max_steps",
        "ci_method": {"one build": CI_METHODS["t"], "several builds": CI_METHODS["cluster_t"]},
        "speedup_method": ("per (build, seed) pair, the reference's steps (or net train seconds, EffOPD's "
                           "validation included) to target over the method's; a pair where either misses is left "
                           "out (pairs_excluded); with no pair, the ratio of the means (method 'ratio of means')"),
        # over the worlds whose targets are clear of the start's noise: noise cells would only blur the relation
        "straightness_correlation": straightness_correlations(
            [c for name, w in result_worlds.items() if not w["targets_within_start_noise"] for c in w["cells"]]),
        "straightness_correlation_excludes": [n for n, w in result_worlds.items() if w["targets_within_start_noise"]],
        "machine": ctx.machine(), "git_commit": ctx.git_commit(), **ctx.stale_record(), **ctx.world_status(),
    }
    result["headline"] = headline(result_worlds)
    result["total_wall_seconds"] = ctx.seconds()
    out = Path(args.out)
    publish(out, "regime_map", result, render(result))
    plot_map(result, out / "figures" / "regime_map.png")
    plot_straightness(result, out / "figures" / "regime_map_straightness.png")
    return result


def start_line(w: dict) -> str:
    """Where the world's runs started per build, and a caution when a target lies within the start's noise."""
    start = w.get("start_by_build", {})
    text = "Start accuracy (step 0, greedy) per build: " + ", ".join(
        f"build {b} {s['accuracy']:.3f} (± {s['noise']:.3f}, two standard errors)" for b, s in start.items()) + "."
    low = w.get("targets_within_start_noise") or []
    if low:
        text += (f" **Caution:** on build(s) {', '.join(low)} the target is within two standard errors of the start, "
                 "so steps to it and the speedups below measure evaluation noise, not learning; this world is left "
                 "out of the straightness correlation and of the headline.")
    return text


def render(result: dict) -> str:
    lines = ["# The regime map: where EffOPD pays", "", result["headline"], "",
             "Per world and build one target for every LR: 95% of the final accuracy, on that build, of OPD at its "
             "validation-selected LR. "
             "Speedups: " + result["speedup_method"] + ". Mean [95% CI].", ""]
    for name, w in result["worlds"].items():
        lines += [f"## {name} (default LR {w['default_lr']:.0e}; tuned OPD: x{w['selected_multiplier']:g} = "
                  f"{w['selected_lr']:.1e}; targets " + ", ".join(f"build {b} {t:.3f}" for b, t in
                                                                    w["target"]["per_build"].items()) + ")", "",
                  start_line(w), "",
                  *md_header(["LR", "steps", "reached OPD / EffOPD", "OPD steps", "EffOPD steps", "EffOPD vs OPD "
                              "(steps)", "EffOPD vs OPD (wall, net)", "OPD vs tuned (steps)", "EffOPD vs tuned "
                              "(steps)", "EffOPD vs tuned (wall, net)", "validation s", "accepted (mean mult.) "
                              "per trigger", "OPD chord/arc"])]
        for c in w["cells"]:
            o, e = c["OPD"], c["EffOPD"]
            trig = ", ".join(f"{t['step']}:{t['accepted_frac']:.0%} ({fmt_stat(t['accepted_multiplier'], 1)})"
                             for t in e["triggers"] if t.get("accepted_frac") is not None)
            lines.append(
                f"| {c['lr']:.1e} (x{c['lr_multiplier']:g}) | {c['total_steps']} | {o['reached']} / {e['reached']} | "
                f"{fmt_stat(o['steps_to_target'], 1)} | {fmt_stat(e['steps_to_target'], 1)} | "
                f"{fmt_stat(e['speedup_steps_vs_same_lr'], 2)} | {fmt_stat(e['speedup_wall_vs_same_lr'], 2)} | "
                f"{fmt_stat(o['speedup_steps_vs_tuned'], 2)} | {fmt_stat(e['speedup_steps_vs_tuned'], 2)} | "
                f"{fmt_stat(e['speedup_wall_vs_tuned'], 2)} | {fmt_stat(e['validation_seconds'], 1)} | {trig} | "
                f"{fmt_stat(o['straightness']['chord_arc'], 2)} |")
        lines += ["", "WindowLR (ours: a line search along the last short window, the accepted step fed back into "
                  "the LR):", "", *md_header(["LR", "reached", "WindowLR steps", "vs OPD (steps)", "vs OPD (wall, net)",
                                             "vs tuned (steps)", "vs tuned (wall, net)", "validation s",
                                             "LR scale at the last trigger"])]
        for c in w["cells"]:
            v = c["WindowLR"]
            last = next((t for t in reversed(v["triggers"]) if "lr_scale" in t), None)
            lines.append(
                f"| {c['lr']:.1e} (x{c['lr_multiplier']:g}) | {v['reached']} | {fmt_stat(v['steps_to_target'], 1)} | "
                f"{fmt_stat(v['speedup_steps_vs_same_lr'], 2)} | {fmt_stat(v['speedup_wall_vs_same_lr'], 2)} | "
                f"{fmt_stat(v['speedup_steps_vs_tuned'], 2)} | {fmt_stat(v['speedup_wall_vs_tuned'], 2)} | "
                f"{fmt_stat(v['validation_seconds'], 1)} | "
                f"{fmt_stat(last['lr_scale'], 2) if last else '—'} |")
        lines += ["", "LR selection: " + w["selection"]["criterion"] + ": " + ", ".join(
            f"x{c['lr_multiplier']:g} {fmt_stat(c['selection_score'])}" for c in w["selection"]["candidates"]), ""]
    corr = result["straightness_correlation"]
    lines += ["## Which straightness measure predicts EffOPD's speedup", "",
              f"Correlation over cells with {corr['speedup']}; best predictor (largest |Spearman| among OPD's "
              f"measures): {corr['best_predictor']}.", "", *md_header(["measure", "cells", "Pearson", "Spearman"])]
    for k, v in corr["measures"].items():
        p, s = (f"{x:.2f}" if x is not None else "—" for x in (v["pearson"], v["spearman"]))
        lines.append(f"| {k} | {v['n_cells']} | {p} | {s} |")
    lines += ["", f"Seeds per cell {result['seeds_per_cell']} ({result['seeds_at_default']} at x1), over "
                  f"{result['builds']} world build(s); CIs: {result['ci_method']['one build']}; with several "
                  f"builds: {result['ci_method']['several builds']}. " + machine_line(result, total="total"),
              *world_note(result), *stale_note(result)]
    return "\n".join(lines) + "\n"


def plot_map(result: dict, path: Path) -> None:
    """Per world: steps to target vs LR (log-log), mean with 95% CI per method, the tuned LR marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    worlds = result["worlds"]
    fig = Figure(figsize=(4.5 * len(worlds), 3.8))
    FigureCanvasAgg(fig)
    for i, (name, w) in enumerate(worlds.items()):
        ax = fig.add_subplot(1, len(worlds), i + 1)
        for method, mark in (("OPD", "o-"), ("EffOPD", "s-"), ("WindowLR", "^-")):
            pts = [(c["lr"], c[method]["steps_to_target"]) for c in w["cells"]
                   if c[method]["steps_to_target"]["mean"] is not None]
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1]["mean"] for p in pts]
            lo = [y_ - (p[1]["ci95"][0] if p[1].get("ci95") else y_) for y_, p in zip(y, pts)]
            hi = [(p[1]["ci95"][1] if p[1].get("ci95") else y_) - y_ for y_, p in zip(y, pts)]
            ax.errorbar(x, y, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt=mark, capsize=3, label=method)
        ax.axvline(w["selected_lr"], color="k", linestyle="--", linewidth=1, label="tuned OPD LR")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name} (mean target over builds {w['target']['value']:.3f})", fontsize=10)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("steps to target")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_straightness(result: dict, path: Path) -> None:
    """EffOPD's same-LR speedup vs each straightness measure of the cell's OPD runs, over all cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = [c for w in result["worlds"].values() for c in w["cells"]]
    corr = result["straightness_correlation"]["measures"]
    fig = Figure(figsize=(3.6 * len(STRAIGHTNESS_SCALARS), 3.4))
    FigureCanvasAgg(fig)
    for i, k in enumerate(STRAIGHTNESS_SCALARS):
        ax = fig.add_subplot(1, len(STRAIGHTNESS_SCALARS), i + 1)
        for name in result["worlds"]:
            pts = [(c["OPD"]["straightness"][k]["mean"], c["EffOPD"]["speedup_steps_vs_same_lr"]["mean"])
                   for c in cells if c["world"] == name]
            pts = [p for p in pts if None not in p]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=name)
        rho = corr[f"OPD:{k}"]["spearman"]
        ax.set_title(f"{k} (Spearman {rho:.2f})" if rho is not None else k, fontsize=9)
        ax.set_xlabel(f"OPD {k}")
        ax.set_ylabel("EffOPD speedup (steps, same LR)")
        ax.axhline(1, color="k", linewidth=0.8)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)
