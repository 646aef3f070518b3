"""The speedup-table builder: final accuracy, steps / wall-clock / tokens to a target accuracy, and speedups
over a reference method, per method with 95% CIs over seeds.

Input is a folder tree of finished runs (each with summary.json and evals.jsonl, read by ``load_runs``); output
is a dict (``build_speedup_table``) that ``write_speedup_table`` renders as JSON, CSV, Markdown and a curves
plot. Table 2, the efficiency table, every regime of the regimes table and the leaderboard are built with it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.studies.report import DASH, fmt_stat
from bench.studies.stats import first_crossing, mean_ci
from core.io import atomic_write_json, atomic_write_text, read_jsonl

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
}


@dataclass
class RunRecord:
    """One finished training run: identity, its summary.json and its evals.jsonl (sorted by step)."""

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
            tokens_by_step=cumulative_tokens(folder),
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


def _crossing(run: RunRecord, metric: str, target: float) -> tuple[int | None, float | None]:
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
) -> dict:
    """Build the speedup table's dict: one row per method, stats as {"mean", "ci95", "n"} over seeds.

    Target = target_fraction × mean over seeds of the reference method's final accuracy.
    Speedups are per seed pair (same seed in reference and method); pairs where either side misses
    the target, or the reference lacks that seed, are left out of the mean and counted in pairs_excluded.
    """
    if ci_method not in CI_METHODS:
        raise ValueError(f"unknown ci_method {ci_method!r}")
    by_method: dict[str, dict[int, RunRecord]] = defaultdict(dict)
    for r in runs:
        if r.seed in by_method[r.method]:
            raise ValueError(f"duplicate run for method {r.method!r} seed {r.seed}: {r.path}")
        by_method[r.method][r.seed] = r
    if reference not in by_method:
        raise ValueError(f"reference method {reference!r} not among runs {sorted(by_method)}")

    finals = {(m, s): final_accuracy(r, metric, final_window) for m, rs in by_method.items() for s, r in rs.items()}
    ref_finals = [finals[(reference, s)] for s in sorted(by_method[reference])]
    if any(v is None for v in ref_finals):
        raise ValueError(f"some {reference} runs never report {metric!r}")
    target = target_fraction * float(np.mean(ref_finals))
    cross = {(m, s): _crossing(r, metric, target) for m, rs in by_method.items() for s, r in rs.items()}

    def ci(values):
        return mean_ci(values, method=ci_method)

    rows = []
    for method in [reference] + sorted(m for m in by_method if m != reference):
        seeds = sorted(by_method[method])
        per_seed, sp_steps, sp_wall, excluded = [], [], [], 0
        for s in seeds:
            steps, wall = cross[(method, s)]
            tokens = by_method[method][s].tokens_by_step
            per_seed.append({
                "seed": s,
                "final_accuracy": finals[(method, s)],
                "steps_to_target": steps,
                "wall_seconds_to_target": wall,
                "tokens_to_target": tokens.get(steps) if steps is not None and tokens else None,
                "validation_seconds": float(by_method[method][s].summary.get("validation_seconds", 0.0)),
            })
            ref_steps, ref_wall = cross.get((reference, s), (None, None))
            a, b = _ratio(ref_steps, steps), _ratio(ref_wall, wall)
            if a is None:
                excluded += 1
            sp_steps.append(a)
            sp_wall.append(b)
        col = lambda key: [p[key] for p in per_seed]  # noqa: E731
        rows.append({
            "method": method,
            "n_seeds": len(seeds),
            "seeds": seeds,
            "lr": sorted({by_method[method][s].lr for s in seeds}),
            "reached_target": f"{sum(p['steps_to_target'] is not None for p in per_seed)}/{len(seeds)}",
            "pairs_excluded": excluded,
            "final_accuracy": ci(col("final_accuracy")),
            "steps_to_target": ci(col("steps_to_target")),
            "wall_seconds_to_target": ci(col("wall_seconds_to_target")),
            "tokens_to_target": ci(col("tokens_to_target")),
            "speedup_steps": ci(sp_steps),
            "speedup_wall": ci(sp_wall),
            "validation_overhead_seconds": ci(col("validation_seconds")),
            "per_seed": per_seed,
        })

    pct = f"{target_fraction * 100:g}%"
    table = {
        "target": {
            "definition": (
                f"{pct} of the mean final {metric} of {reference} over seeds {sorted(by_method[reference])} "
                f"(final = mean of the last {final_window} evals of each run): {target:.4f}"
            ),
            "value": target,
            "metric": metric,
        },
        "reference": reference,
        "seeds": sorted({r.seed for r in runs}),
        "ci_method": CI_METHODS[ci_method],
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
    buf = io.StringIO()
    stat_cols = [f"{f}_{k}" for f in STAT_FIELDS for k in ("mean", "lo", "hi", "n")]
    w = csv.DictWriter(buf, ["method", "n_seeds", "seeds", "lr", "reached_target", "pairs_excluded", *stat_cols])
    w.writeheader()
    for row in table["rows"]:
        flat = {k: row[k] for k in ("method", "n_seeds", "reached_target", "pairs_excluded")}
        flat["seeds"] = ";".join(map(str, row["seeds"]))
        flat["lr"] = ";".join(f"{lr:g}" for lr in row["lr"])
        for f in STAT_FIELDS:
            st = row[f]
            lo, hi = st["ci95"] or (None, None)
            flat.update({f"{f}_mean": st["mean"], f"{f}_lo": lo, f"{f}_hi": hi, f"{f}_n": st["n"]})
        w.writerow(flat)
    return buf.getvalue()


def _markdown(table: dict) -> str:
    head = ["method", "seeds", "final acc", "reached", "steps to target", "wall s to target",
            "tokens to target (k)", "speedup steps", "speedup wall (net of validation)", "validation s"]
    paper_col = (table.get("paper") or {}).get("by_method")  # the paper's figure beside ours, per method
    if paper_col:
        head.append("paper (steps)")
    lines = [f"# {table.get('title', 'Table 2')}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["rows"]:
        cells = [
            r["method"], str(r["n_seeds"]), fmt_stat(r["final_accuracy"], 3), r["reached_target"],
            fmt_stat(r["steps_to_target"], 1), fmt_stat(r["wall_seconds_to_target"], 1),
            fmt_stat(_scaled(r["tokens_to_target"], 1e-3), 1), fmt_stat(r["speedup_steps"], 2, "×"),
            fmt_stat(r["speedup_wall"], 2, "×"),
            fmt_stat(r["validation_overhead_seconds"], 1),
        ]
        if paper_col:
            cells.append(paper_col.get(r["method"], DASH))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Target: {table['target']['definition']}."]
    paper = table.get("paper")
    if paper:
        summary = paper.get("summary") or "; ".join(f"{k}: {v}" for k, v in paper.items())
        lines += ["", "## Paper reports", "", str(summary)]
    lines += ["", f"CI: {table['ci_method']}. Speedups are per seed pair; excluded pairs are counted per row."]
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
