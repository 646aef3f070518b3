"""The kill -9 matrix (issue 15): a micro EffOPD run is killed with SIGKILL at each fault point, then resumed with
``trainer.resume=auto``; its metrics, evals, EffOPD log and final weights must equal an uninterrupted run's.

    python -m tests.fault_injection [--work DIR] [--step 2] [--points step,eval]

Fault points are ``core/faults.py``'s (``EFFOPD_FAULT=<point>@<step>``): mid-step, during EffOPD validation at an
unaccepted candidate, during a periodic evaluation, between the checkpoint write and its rename, right after
``checkpoints/latest`` moves. Each run is a real ``python -m bench.train`` process on the micro tiny world
(tests/conftest.py), checkpointing every step. ``tests/test_fault_injection.py`` runs the matrix in ``make test``;
run as a script it prints the table and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from core.faults import ENV, POINTS
from core.paths import REPO_ROOT
from tests.conftest import MICRO_RUN, MICRO_WORLD

RUN = ["world=style", *MICRO_WORLD, *MICRO_RUN, "experiment=effopd", "trainer.save_every=1"]
VOLATILE = ("train_seconds", "seconds", "eval_seconds")  # timings differ between any two runs


def launch(cache: Path, out: Path, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(OMP_NUM_THREADS="1", **({ENV: fault} if fault else {}))
    cmd = [sys.executable, "-m", "bench.train", *RUN, f"world.cache_dir={cache}", *extra, f"hydra.run.dir={out}"]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def outputs(out: Path) -> dict:
    """What must not depend on a crash: every logged record (timings aside) and the final weights' sha256."""
    def rows(name):
        path = out / f"{name}.jsonl"
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        return [{k: v for k, v in r.items() if not k.startswith("time/") and k not in VOLATILE} for r in recs]
    weights = out / "final_model" / "model.safetensors"
    return {"metrics": rows("metrics"), "evals": rows("evals"), "effopd": rows("effopd"),
            "final_model": hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None}


def run_matrix(cache: Path, work: Path, points=POINTS, step: int = 2) -> list[dict]:
    """One row per fault point: killed (exit by SIGKILL), resumed (exit 0) and identical to the straight run."""
    straight = launch(cache, work / "straight")
    if straight.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {straight.stderr[-2000:]}")
    want = outputs(work / "straight")
    rows = []
    for point in points:
        out = work / point
        first = launch(cache, out, fault=f"{point}@{step}")
        again = launch(cache, out, "trainer.resume=auto")
        got = outputs(out) if again.returncode == 0 else {}
        differ = [k for k in want if got.get(k) != want[k]]
        rows.append({"point": point, "step": step, "killed": first.returncode == -9,
                     "resume_exit": again.returncode, "identical": not differ, "differs": differ,
                     "stderr": "" if again.returncode == 0 else again.stderr[-1500:]})
    return rows


def ok(row: dict) -> bool:
    return row["killed"] and row["resume_exit"] == 0 and row["identical"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one)")
    p.add_argument("--step", type=int, default=2, help="global step at which each fault fires (1-3)")
    p.add_argument("--points", default=",".join(POINTS), help=f"comma-separated subset of {POINTS}")
    args = p.parse_args(argv)
    from bench.config import compose_config
    from bench.world.tiny.build import ensure_world

    with tempfile.TemporaryDirectory(prefix="effopd-faults-") as tmp:
        work = args.work or Path(tmp)
        cache = work / "cache"
        ensure_world(compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={cache}"]).world)
        rows = run_matrix(cache, work, args.points.split(","), args.step)
    print("| fault point | step | killed by SIGKILL | resume exit | identical to the uninterrupted run |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['point']} | {r['step']} | {r['killed']} | {r['resume_exit']} | "
              f"{'yes' if r['identical'] else 'no: ' + ', '.join(r['differs'])} |")
    return 0 if all(ok(r) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
