"""The speedup-table builder: final accuracy, steps / wall-clock / tokens to a target accuracy, and speedups
over a reference method, per method with 95% CIs over seeds (and over world builds, when the runs span several).

Input is a folder tree of finished runs (each with summary.json and evals.jsonl, read by ``load_runs``); output
is a dict (``build_speedup_table``) that ``write_speedup_table`` renders as JSON, CSV, Markdown and a curves
plot. Table 2, the efficiency table, every regime of the regimes table and the leaderboard are built with it.

World builds: each run knows its world build (``world.build`` in its config.yaml; 0 when absent). When a table's
runs all come from one build, the CIs are over seeds (``ci_method`` "t" or "bootstrap"). When they span several,
the build is the unit of replication: "t" becomes a Student-t interval over per-build means (CI_METHODS
["cluster_t"], the default) and "bootstrap" the hierarchical bootstrap over builds, then seeds
(CI_METHODS["hierarchical"]); runs pair by (build, seed) for speedups, and each row gets ``between_builds``:
per-build means, their range and sd.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from bench.config import WORLD_ROLES
from bench.studies.headline import headline_markdown
from bench.studies.report import DASH, fmt_spread, fmt_stat
from bench.studies.stats import (
    between_build_spread,
    cluster_t_mean_ci,
    first_crossing,
    hierarchical_mean_ci,
    mean_ci,
)
from core.io import atomic_save_figure, atomic_write_json, atomic_write_text, read_jsonl

# Per-row statistics, in the order they appear in the CSV.
STAT_FIELDS = (
    "final_accuracy",
    "steps_to_target",
    "wall_seconds_to_target",
    "tokens_to_target",
    "speedup_steps",
    "speedup_wall",
    "validation_overhead_seconds",
)
CI_METHODS = {
    "t": "95% Student-t interval over seeds (mean ± t_{0.975,n-1} · sd / sqrt(n)); none when n < 2",
    "bootstrap": "95% bootstrap percentile interval over seeds (10000 resamples, fixed RNG seed); none when n < 2",
    # Not chosen by the caller: whenever a table's runs span more than one world build, "t" becomes "cluster_t"
    # and "bootstrap" becomes "hierarchical" for every statistic.
    "cluster_t": (
        "95% Student-t interval over world builds: each build's runs are averaged first, the mean is the mean of "
        "the build means (every build weighs the same) and the interval mean ± t_{0.975,k-1} · sd / sqrt(k) over "
        "the k build means (speedups: per (build, seed) pair, then per build); none when fewer than 2 builds"
    ),
    "hierarchical": (
        "95% hierarchical (two-stage) bootstrap percentile interval over world builds, then seeds: each of 10000 "
        "resamples (fixed RNG seed) draws the builds with replacement, then within each drawn build its seeds with "
        "replacement (speedups: its (build, seed) pairs), and takes the mean of all values drawn; the headline mean "
        "is the mean over all runs; none when fewer than 2 builds have a value"
    ),
}
# The ci_method values a caller may ask for; with several builds they become "cluster_t" / "hierarchical".
CALLER_CI_METHODS = ("t", "bootstrap")
# The statistics whose per-build means the markdown shows next to the headline, with their formatting.
SPREAD_FIELDS = (("final_accuracy", "final acc", 3, ""), ("steps_to_target", "steps to target", 1, ""),
                 ("speedup_steps", "speedup steps", 2, "×"), ("speedup_wall", "speedup wall", 2, "×"))


@dataclass
class RunRecord:
    """One finished training run: identity (method, seed, world build), its summary.json and its evals.jsonl."""

    method: str
    seed: int
    lr: float
    world: str
    summary: dict
    evals: list[dict]
    path: Path = field(default=Path("."))
    tokens_by_step: dict[int, int] = field(default_factory=dict)  # cumulative generated tokens after each
    # step: training rollouts (every dynamic-sampling round; for SFT the teacher tokens it trains on) plus
    # EffOPD's validation tokens
    build: int = 0  # the world build the run trained in (config.yaml's world.build; 0 for runs made before builds)


def cumulative_tokens(folder: Path) -> dict[int, int]:
    """Cumulative generated tokens per step from a run's metrics.jsonl and effopd.jsonl."""
    per_step: dict[int, int] = defaultdict(int)
    for m in read_jsonl(folder / "metrics.jsonl"):
        per_step[m["step"]] += int(m.get("generated_tokens", 0))
    for t in read_jsonl(folder / "effopd.jsonl"):
        per_step[t["step"]] += int(t.get("tokens", 0))
    out, total = {0: 0}, 0
    for step in sorted(per_step):
        total += per_step[step]
        out[step] = total
    return out


def _config_world(folder: Path) -> dict | None:
    """The ``world`` block of a run's config.yaml; None when the folder has no config.yaml."""
    config = Path(folder) / "config.yaml"
    return ((yaml.safe_load(config.read_text()) or {}).get("world") or {}) if config.exists() else None


def run_build(folder: Path, summary: dict) -> int:
    """A run's world build: ``world.build`` of its config.yaml, else summary.json's ``world_build``, else 0.

    Run folders made before world builds existed have neither, and so load as build 0, as they were.
    """
    build = summary.get("world_build", 0)
    world = _config_world(folder)
    if world is not None:
        build = world.get("build", build)
    if isinstance(build, bool) or not isinstance(build, int) or build < 0:
        raise ValueError(f"{folder}: world.build = {build!r} is not a world build; it must be an integer >= 0 "
                         "(fix the run's config.yaml / summary.json, or rerun it)")
    return build


def run_build_roles(folder: Path, summary: dict) -> tuple[str, ...]:
    """The roles a run's world build re-seeded: config.yaml's ``world.build_roles``, else summary.json's
    ``world_build_roles``, else all three (runs made before the setting existed re-seeded every role)."""
    world = _config_world(folder)
    roles = world.get("build_roles") if world is not None else summary.get("world_build_roles")
    return tuple(r for r in WORLD_ROLES if r in (roles or WORLD_ROLES))


def load_runs(root: str | Path) -> list[RunRecord]:
    """Load every run under `root` (any depth) that has a summary.json.

    Raises ValueError naming every run folder whose status is not "complete": a half-finished run
    would otherwise quietly skew the table.
    """
    root = Path(root)
    runs, incomplete = [], []
    for summary_path in sorted(root.rglob("summary.json")):
        folder = summary_path.parent
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "complete":
            incomplete.append(f"{folder} (status={summary.get('status')!r})")
            continue
        evals = sorted(read_jsonl(folder / "evals.jsonl"), key=lambda e: e["step"])
        runs.append(RunRecord(
            method=summary["method"], seed=int(summary["seed"]), lr=float(summary["lr"]),
            world=str(summary.get("world", "")), summary=summary, evals=evals, path=folder,
            tokens_by_step=cumulative_tokens(folder), build=run_build(folder, summary),
        ))
    if incomplete:
        raise ValueError("incomplete runs found: " + "; ".join(incomplete))
    if not runs:
        raise ValueError(f"no summary.json found under {root}")
    return runs


def final_accuracy(run: RunRecord, metric: str, final_window: int) -> float | None:
    """Mean of `metric` over the run's last `final_window` evals that report it (smooths eval noise)."""
    vals = [e[metric] for e in run.evals if e.get(metric) is not None]
    return float(np.mean(vals[-final_window:])) if vals else None


def crossing(run: RunRecord, metric: str, target: float) -> tuple[int | None, float | None]:
    """(step, train_seconds) of the run's first eval with metric >= target, or (None, None)."""
    idx = first_crossing([e["step"] for e in run.evals], [e.get(metric) for e in run.evals], target)
    if idx is None:
        return None, None
    hit = run.evals[idx]
    return hit["step"], hit.get("train_seconds")


def _ratio(num: float | None, den: float | None) -> float | None:
    # A zero denominator (target met at step 0) has no meaningful speedup, so treat it like a miss.
    if num is None or den is None or den <= 0:
        return None
    return num / den


def build_speedup_table(
    runs: list[RunRecord],
    reference: str = "OPD",
    target_fraction: float = 0.95,
    metric: str = "test/greedy",
    final_window: int = 3,
    ci_method: str = "t",
    paper: dict | None = None,
    extra: dict | None = None,
    target_per_build: bool | str = False,
) -> dict:
    """Build the speedup table's dict: one row per method, stats as {"mean", "ci95", "n"} over seeds.

    Target = target_fraction × mean over runs of the reference method's final accuracy.
    Speedups are per run pair (same world build and seed in reference and method); pairs where either side
    misses the target, or the reference lacks that (build, seed), are left out of the mean and counted in
    pairs_excluded. With runs from one world build the CIs follow ``ci_method`` ("t" or "bootstrap") and the
    table of build-0 runs is that of a single world; with several, every CI accounts for builds as
    well as seeds: "t" becomes a t interval over per-build means, "bootstrap" the hierarchical bootstrap over
    builds then seeds (their stats add "n_builds"), and each row gets "between_builds" (per
    statistic: per-build means, their range and sd). Whenever a build other than 0 is present, the table and each
    row list their "builds", each per-seed entry its "build", and the target's definition names them.

    ``target_per_build``: each build gets its own target, target_fraction x the mean final accuracy of the
    reference's runs *on that build*, and every run is timed against its build's target (the target's "value"
    is then the mean of the per-build targets, "per_build" lists them). Use it when builds differ in how far
    the reference gets: one pooled target is out of reach for a weak build and trivial for a strong one.
    ``"auto"``: per build exactly when the runs span several builds (a single-build table stays as it was).
    """
    if target_per_build not in (True, False, "auto"):
        raise ValueError(f"target_per_build={target_per_build!r}: use True, False or 'auto'")
    if ci_method not in CALLER_CI_METHODS:
        raise ValueError(f"unknown ci_method {ci_method!r}; use one of {list(CALLER_CI_METHODS)} (several world "
                         "builds turn them into 'cluster_t' / 'hierarchical' by themselves)")
    by_method: dict[str, dict[tuple[int, int], RunRecord]] = defaultdict(dict)
    for r in runs:
        if (r.build, r.seed) in by_method[r.method]:
            where = f" build {r.build}" if r.build else ""
            raise ValueError(f"duplicate run for method {r.method!r} seed {r.seed}{where}: {r.path}")
        by_method[r.method][(r.build, r.seed)] = r
    if reference not in by_method:
        raise ValueError(f"reference method {reference!r} not among runs {sorted(by_method)}")
    builds = sorted({r.build for r in runs})
    several = len(builds) > 1  # CIs over builds and the between-build spread
    labelled = builds != [0]  # builds named in the JSON (a table of build-0 runs is what it was before builds)
    target_per_build = several if target_per_build == "auto" else target_per_build

    finals = {(m, k): final_accuracy(r, metric, final_window) for m, rs in by_method.items() for k, r in rs.items()}
    ref_finals = [finals[(reference, k)] for k in sorted(by_method[reference])]
    if any(v is None for v in ref_finals):
        raise ValueError(f"some {reference} runs never report {metric!r}")
    target = target_fraction * float(np.mean(ref_finals))
    build_targets = {b: target for b in builds}
    if target_per_build:
        ref_by_build: dict[int, list[float]] = defaultdict(list)
        for (b, _), r in by_method[reference].items():
            ref_by_build[b].append(finals[(reference, (b, r.seed))])
        missing = [b for b in builds if b not in ref_by_build]
        if missing:
            raise ValueError(f"target_per_build: the reference {reference!r} has no run on world build(s) {missing}")
        build_targets = {b: target_fraction * float(np.mean(v)) for b, v in sorted(ref_by_build.items())}
        target = float(np.mean(list(build_targets.values())))
    cross = {(m, k): crossing(r, metric, build_targets[k[0]]) for m, rs in by_method.items() for k, r in rs.items()}

    def by_build(values, keys) -> dict[int, list]:
        groups: dict[int, list] = defaultdict(list)
        for (b, _), v in zip(keys, values):
            groups[b].append(v)
        return groups

    def ci(values, keys):
        if not several:
            return mean_ci(values, method=ci_method)
        groups = [by_build(values, keys)[b] for b in sorted(by_build(values, keys))]
        return cluster_t_mean_ci(groups) if ci_method == "t" else hierarchical_mean_ci(groups)

    rows = []
    for method in [reference] + sorted(m for m in by_method if m != reference):
        keys = sorted(by_method[method])
        per_seed, sp_steps, sp_wall, excluded = [], [], [], 0
        for k in keys:
            run = by_method[method][k]
            steps, wall = cross[(method, k)]
            tokens = run.tokens_by_step
            per_seed.append({
                **({"build": k[0]} if labelled else {}),
                "seed": k[1],
                "final_accuracy": finals[(method, k)],
                "steps_to_target": steps,
                "wall_seconds_to_target": wall,
                "tokens_to_target": tokens.get(steps) if steps is not None and tokens else None,
                "validation_seconds": float(run.summary.get("validation_seconds", 0.0)),
            })
            ref_steps, ref_wall = cross.get((reference, k), (None, None))
            a, b = _ratio(ref_steps, steps), _ratio(ref_wall, wall)
            if a is None:
                excluded += 1
            sp_steps.append(a)
            sp_wall.append(b)
        columns = {
            "final_accuracy": [p["final_accuracy"] for p in per_seed],
            "steps_to_target": [p["steps_to_target"] for p in per_seed],
            "wall_seconds_to_target": [p["wall_seconds_to_target"] for p in per_seed],
            "tokens_to_target": [p["tokens_to_target"] for p in per_seed],
            "speedup_steps": sp_steps,
            "speedup_wall": sp_wall,
            "validation_overhead_seconds": [p["validation_seconds"] for p in per_seed],
        }
        row = {
            "method": method,
            "n_seeds": len(keys),
            "seeds": [s for _, s in keys],
            **({"builds": sorted({b for b, _ in keys})} if labelled else {}),
            "lr": sorted({by_method[method][k].lr for k in keys}),
            "reached_target": f"{sum(p['steps_to_target'] is not None for p in per_seed)}/{len(keys)}",
            "pairs_excluded": excluded,
            **{f: ci(columns[f], keys) for f in STAT_FIELDS},
        }
        if several:
            row["between_builds"] = {f: between_build_spread(by_build(columns[f], keys)) for f in STAT_FIELDS}
        row["per_seed"] = per_seed
        rows.append(row)

    pct = f"{target_fraction * 100:g}%"
    ref_seeds = sorted({s for _, s in by_method[reference]})
    on_builds = f" on world builds {sorted({b for b, _ in by_method[reference]})}" if labelled else ""
    if target_per_build:
        definition = (f"per world build, {pct} of the mean final {metric} of {reference}'s runs on that build "
                      f"(final = mean of the last {final_window} evals of each run): "
                      + ", ".join(f"build {b} {t:.4f}" for b, t in build_targets.items()) + f" (mean {target:.4f})")
    else:
        definition = (f"{pct} of the mean final {metric} of {reference} over seeds {ref_seeds}{on_builds} "
                      f"(final = mean of the last {final_window} evals of each run): {target:.4f}")
    table = {
        "target": {
            "definition": definition,
            "value": target,
            "metric": metric,
            **({"per_build": {str(b): t for b, t in build_targets.items()}} if target_per_build else {}),
        },
        "reference": reference,
        "seeds": sorted({r.seed for r in runs}),
        **({"builds": builds} if labelled else {}),
        "ci_method": CI_METHODS[{"t": "cluster_t", "bootstrap": "hierarchical"}[ci_method] if several else ci_method],
        "rows": rows,
        "paper": paper,
    }
    clash = set(extra or {}) & set(table)
    if clash:
        raise ValueError(f"extra keys would overwrite table keys: {sorted(clash)}")
    table.update(extra or {})
    return table


# ---------------------------------------------------------------- rendering

def _scaled(stat: dict | None, k: float) -> dict | None:
    if not stat or stat.get("mean") is None:
        return stat
    return {**stat, "mean": stat["mean"] * k, "ci95": [x * k for x in stat["ci95"]] if stat.get("ci95") else None}


def _csv_text(table: dict) -> str:
    """One line per method. With builds other than 0, ``builds`` gives each run's build (aligned with ``seeds``);
    with several, every statistic adds ``_n_builds`` and the spread of its per-build means (``_build_min/max/sd``)."""
    labelled, several = "builds" in table, len(table.get("builds", ())) > 1
    buf = io.StringIO()
    stat_keys = ("mean", "lo", "hi", "n") + (("n_builds", "build_min", "build_max", "build_sd") if several else ())
    stat_cols = [f"{f}_{k}" for f in STAT_FIELDS for k in stat_keys]
    head = ["method", "n_seeds", "seeds", *(["builds"] if labelled else []), "lr", "reached_target", "pairs_excluded"]
    w = csv.DictWriter(buf, [*head, *stat_cols])
    w.writeheader()
    for row in table["rows"]:
        flat = {k: row[k] for k in ("method", "n_seeds", "reached_target", "pairs_excluded")}
        flat["seeds"] = ";".join(map(str, row["seeds"]))
        if labelled:
            flat["builds"] = ";".join(str(p["build"]) for p in row["per_seed"])
        flat["lr"] = ";".join(f"{lr:g}" for lr in row["lr"])
        for f in STAT_FIELDS:
            st = row[f]
            lo, hi = st["ci95"] or (None, None)
            flat.update({f"{f}_mean": st["mean"], f"{f}_lo": lo, f"{f}_hi": hi, f"{f}_n": st["n"]})
            if several:
                spread = row["between_builds"][f]
                b_lo, b_hi = spread["range"] or (None, None)
                flat.update({f"{f}_n_builds": st["n_builds"], f"{f}_build_min": b_lo, f"{f}_build_max": b_hi,
                             f"{f}_build_sd": spread["sd"]})
        w.writerow(flat)
    return buf.getvalue()


def _markdown(table: dict) -> str:
    head = ["method", "seeds", "final acc", "reached", "steps to target", "wall s to target",
            "tokens to target (k)", "speedup steps", "speedup wall (net of validation)", "validation s"]
    paper_col = (table.get("paper") or {}).get("by_method")  # the paper's figure beside ours, per method
    if paper_col:
        head.append("paper (steps)")
    several = len(table.get("builds", ())) > 1
    lines = [f"# {table.get('title', 'Table 2')}", ""]
    if table.get("world_status"):
        lines += [table["world_status"]["line"], ""]
    if table.get("headline"):
        lines += [*headline_markdown(table), "", "## All methods (means over world builds)", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["rows"]:
        seeds = f"{r['n_seeds']} over {len(r['builds'])} builds" if several else str(r["n_seeds"])
        cells = [
            r["method"], seeds, fmt_stat(r["final_accuracy"], 3), r["reached_target"],
            fmt_stat(r["steps_to_target"], 1), fmt_stat(r["wall_seconds_to_target"], 1),
            fmt_stat(_scaled(r["tokens_to_target"], 1e-3), 1), fmt_stat(r["speedup_steps"], 2, "×"),
            fmt_stat(r["speedup_wall"], 2, "×"),
            fmt_stat(r["validation_overhead_seconds"], 1),
        ]
        if paper_col:
            cells.append(paper_col.get(r["method"], DASH))
        lines.append("| " + " | ".join(cells) + " |")
    if several:
        lines += ["", "## Between world builds", "",
                  f"Each build's mean (b<build>: mean over its seeds), the range and sd of those means, for the "
                  f"headline above, which pools builds {table['builds']}.", ""]
        lines += ["| " + " | ".join(["method"] + [name for _, name, _, _ in SPREAD_FIELDS]) + " |",
                  "|" + "---|" * (len(SPREAD_FIELDS) + 1)]
        for r in table["rows"]:
            cells = [fmt_spread(r["between_builds"][f], digits, suffix) for f, _, digits, suffix in SPREAD_FIELDS]
            lines.append("| " + " | ".join([r["method"], *cells]) + " |")
    lines += ["", f"Target: {table['target']['definition']}."]
    paper = table.get("paper")
    if paper:
        summary = paper.get("summary") or "; ".join(f"{k}: {v}" for k, v in paper.items())
        lines += ["", "## Paper reports", "", str(summary)]
    pairs = "(world build, seed) pair" if several else "seed pair"
    lines += ["", f"CI: {table['ci_method']}. Speedups are per {pairs}; excluded pairs are counted per row."]
    return "\n".join(lines) + "\n"


def _mean_band(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray):
    """Interpolate each seed's curve onto `grid`; return mean, min, max across seeds."""
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return ys.mean(0), ys.min(0), ys.max(0)


def _plot_curves(table: dict, runs: list[RunRecord], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly, so the global pyplot backend other code may use is left alone.
    metric, target = table["target"]["metric"], table["target"]["value"]
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for i, row in enumerate(table["rows"]):
        color = f"C{i}"
        mruns = [r for r in runs if r.method == row["method"]]
        for ax, xkey in zip(axes, ("step", "train_seconds")):
            curves = []
            for r in mruns:
                pts = [(e[xkey], e[metric]) for e in r.evals if e.get(xkey) is not None and e.get(metric) is not None]
                if pts:
                    x, y = map(np.asarray, zip(*pts))
                    curves.append((x.astype(float), y.astype(float)))
            if not curves:
                continue
            # Only plot the x range every seed covers, so the mean never extrapolates a finished seed.
            lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
            if xkey == "step":
                grid = np.unique(np.concatenate([c[0] for c in curves]))
                grid = grid[(grid >= lo) & (grid <= hi)]
            else:
                grid = np.linspace(lo, hi, 200)
            if grid.size == 0:
                continue
            mean, ymin, ymax = _mean_band(curves, grid)
            ax.plot(grid, mean, color=color, label=f"{row['method']} (n={len(curves)})")
            ax.fill_between(grid, ymin, ymax, color=color, alpha=0.2, linewidth=0)
    for ax, xlabel in zip(axes, ("training step", "training wall-clock (s, incl. validation)")):
        ax.axhline(target, color="k", linestyle="--", linewidth=1, label=f"target {target:.3f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{metric}: mean over seeds, band = min–max")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def write_speedup_table(table: dict, out_dir: str | Path, runs: list[RunRecord],
                        stem: str = "table2") -> dict[str, Path]:
    """Atomically write <stem>.json, <stem>.csv, <stem>.md and <stem>_curves.png into `out_dir`.

    Returns the written paths keyed by "json", "csv", "md", "png".
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{k}" for k in ("json", "csv", "md")}
    paths["png"] = out / f"{stem}_curves.png"
    atomic_write_json(paths["json"], table)
    atomic_write_text(paths["csv"], _csv_text(table))
    atomic_write_text(paths["md"], _markdown(table))
    _plot_curves(table, runs, paths["png"])
    return paths
