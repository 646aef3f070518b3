"""Where the seconds of ``make reproduce-table2`` go: install, world builds, runs, render.

    python -m bench.studies.perf.table2_time --checkout /path/to/fresh/clone --start EPOCH --end EPOCH \\
        --log make.log --label before [--out results/perf/table2_time.json]

Reads a finished run of the target in a fresh clone: the install stamp's time (``.venv/.installed-*``), the run
folders' first and last writes (``config.yaml`` at a run's start, ``summary.json`` at its end), every run's
per-step split (``metrics.jsonl``: generate, score, update, EffOPD validation), its periodic evaluations
(``evals.jsonl``) and the world builds' training seconds (the ``[build <role>] ... in Ns`` lines of the log).
Stages are wall-clock on the machine; the per-run phases are summed over runs (two run in parallel, so their
sum is about twice their stage's wall-clock). Writes one entry under ``--label`` of the JSON (atomic), keeping
the other labels, so "before" and "after" sit side by side.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench.studies.report import machine
from core.io import atomic_write_json, read_jsonl
from core.paths import RESULTS_DIR

BUILD_LINE = re.compile(r"^\[build (\w+)\] (\S+) \(build (\d+)\): .* in (\d+)s$")
PHASES = ("generate", "score", "update", "validation")


def run_split(folder: Path) -> dict:
    """One run: its wall-clock (first to last write), per-phase step seconds, evaluation seconds and the rest
    (process start, model loading, checkpoints, the final save)."""
    metrics, evals = read_jsonl(folder / "metrics.jsonl"), read_jsonl(folder / "evals.jsonl")
    wall = (folder / "summary.json").stat().st_mtime - (folder / "config.yaml").stat().st_mtime
    phases = {p: sum(m.get(f"time/{p}", 0.0) for m in metrics) for p in PHASES}
    evaluation = sum(e.get("eval_seconds", 0.0) for e in evals)
    return {"wall": wall, **phases, "eval": evaluation, "other": wall - sum(phases.values()) - evaluation,
            "steps": len(metrics), "evals": len(evals)}


def world_builds(log_text: str) -> list[dict]:
    """The ``[build <role>] <key> (build <b>): ... in <N>s`` lines: training seconds per role and build."""
    out = []
    for line in log_text.splitlines():
        m = BUILD_LINE.match(line.strip())
        if m:
            out.append({"role": m.group(1), "model": m.group(2), "build": int(m.group(3)),
                        "train_seconds": int(m.group(4))})
    return out


def split(checkout: Path, start: float, end: float, log_text: str, runs_subdir: str = "runs/table2") -> dict:
    stamps = sorted((checkout / ".venv").glob(".installed-*"))
    if not stamps:
        raise FileNotFoundError(f"{checkout}/.venv/.installed-* is missing: run make reproduce-table2 there first")
    installed = stamps[-1].stat().st_mtime
    runs = sorted(p.parent for p in (checkout / runs_subdir).rglob("summary.json"))
    if not runs:
        raise FileNotFoundError(f"no finished run under {checkout / runs_subdir}")
    first = min((r / "config.yaml").stat().st_mtime for r in runs)
    last = max((r / "summary.json").stat().st_mtime for r in runs)
    per_run = {str(r.relative_to(checkout / runs_subdir)): run_split(r) for r in runs}
    totals = {k: round(sum(s[k] for s in per_run.values()), 1) for k in ("wall", *PHASES, "eval", "other")}
    builds = world_builds(log_text)
    return {
        "total_seconds": round(end - start, 1),
        "stages": {"install": round(installed - start, 1), "world_builds": round(first - installed, 1),
                   "runs": round(last - first, 1), "render": round(end - last, 1)},
        "runs": {"count": len(runs), "steps": sum(s["steps"] for s in per_run.values()),
                 "summed_seconds": totals, "per_run": per_run},
        "world_builds": {"models": builds, "train_seconds": sum(b["train_seconds"] for b in builds)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkout", type=Path, required=True, help="the fresh clone the target ran in")
    p.add_argument("--start", type=float, required=True, help="epoch seconds when make started")
    p.add_argument("--end", type=float, required=True, help="epoch seconds when make ended")
    p.add_argument("--log", type=Path, required=True, help="make's output")
    p.add_argument("--label", required=True, help='e.g. "before" or "after"')
    p.add_argument("--commit", default="", help="the commit the clone was at")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "perf" / "table2_time.json")
    args = p.parse_args(argv)
    entry = {**split(args.checkout, args.start, args.end, args.log.read_text(errors="replace")),
             "commit": args.commit, "machine": machine(parallel_runs=2),
             "command": "make reproduce-table2 (fresh clone)"}
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result[args.label] = entry
    atomic_write_json(args.out, result)
    s = entry["stages"]
    print(f"{args.label}: {entry['total_seconds'] / 60:.1f} min = install {s['install']:.0f}s + world builds "
          f"{s['world_builds']:.0f}s + runs {s['runs']:.0f}s + render {s['render']:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
