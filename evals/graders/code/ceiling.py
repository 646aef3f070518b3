"""The canonical-solution ceiling: how many of evalplus's own reference solutions pass under our limits, here.

A model's pass@1 is bounded by this number on the same machine and limits: references can time out (the time
limits derive from the references' own timings, taken once on a possibly busy machine) or trip a special oracle.

    python -m evals.graders.code.ceiling --dataset humaneval mbpp --out results/code_ceiling.json

The output JSON holds one entry per dataset (merged into an existing file, written atomically): counts, the
failing tasks with status, failing input (truncated repr), its reference time and time limit, and the run's
metadata (dataset md5, time limits, memory cap, isolation, wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from evals.graders.code import evalplus_grader as eg
from evals.graders.code import sandbox

# Failures that are evalplus's, not the machine's: no solution can pass these under this evalplus version.
KNOWN_ISSUES = {
    "HumanEval/32": "evalplus 0.3.1 unsafe_execute: the find_zero special oracle `continue`s past the "
                    "details/progress bookkeeping, so every input counts as not run and the task always fails",
}


def _why(grade: eg.CodeGrade, problem: dict, expected: dict, min_tl: float, factor: float) -> dict:
    """The failing input of a reference solution and the time limit it had, so a timeout can be judged."""
    part = "base" if grade.base_status != "pass" else "plus"
    idx = grade.base_failed_input if part == "base" else grade.plus_failed_input
    out = {"task_id": grade.task_id, "base_status": grade.base_status, "plus_status": grade.plus_status,
           "part": part, "failed_input": idx}
    if idx is not None and idx < len(problem[f"{part}_input"]):
        ref = expected[f"{part}_time"][idx]
        out.update(input=repr(problem[f"{part}_input"][idx])[:200], ref_time_s=round(ref, 4),
                   time_limit_s=round(max(min_tl, factor * ref), 4))
    if grade.message:
        out["message"] = grade.message[:300]
    if grade.task_id in KNOWN_ISSUES and problem.get("entry_point") == "find_zero":
        out["known_issue"] = KNOWN_ISSUES[grade.task_id]
    return out


def ceiling(dataset: str, *, parallel: int = 2, limit: int | None = None, **kwargs) -> dict:
    """Grade the first ``limit`` (all if None) canonical solutions of ``dataset``; a JSON-ready summary."""
    start = time.monotonic()
    problems, expected, _ = eg.load_problems(dataset, kwargs.get("data_dir"), kwargs.get("cache_dir"))
    tasks = list(problems)[:limit]
    samples = [{"task_id": t, "solution": problems[t]["prompt"] + problems[t]["canonical_solution"]} for t in tasks]
    res = eg.grade_evalplus(dataset, samples, parallel=parallel, **kwargs)
    min_tl, factor = res.metadata["min_time_limit"], res.metadata["gt_time_limit_factor"]
    failures = [_why(g, problems[g.task_id], expected[g.task_id], min_tl, factor) for g in res.grades if not g.passed]
    n = len(res.grades)
    return {"n_tasks": n, "base_pass": res.base_pass, "plus_pass": res.plus_pass,
            "base_pass_rate": round(res.base_pass / max(1, n), 4),
            "plus_pass_rate": round(res.plus_pass / max(1, n), 4),
            "failures": failures, "metadata": res.metadata, "wall_s": round(time.monotonic() - start, 1)}


def write_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", nargs="+", choices=sorted(eg.DATASETS), required=True)
    p.add_argument("--out", type=Path, default=Path("results/code_ceiling.json"))
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks (a quick check)")
    p.add_argument("--min-time-limit", type=float, default=eg.DEFAULT_MIN_TIME_LIMIT)
    p.add_argument("--gt-time-limit-factor", type=float, default=eg.DEFAULT_GT_TIME_LIMIT_FACTOR)
    p.add_argument("--memory-mb", type=int, default=eg.DEFAULT_MEMORY_BYTES >> 20)
    p.add_argument("--isolation", default="auto", choices=[*sandbox.ISOLATIONS, "evalplus"])
    p.add_argument("--data-dir", default=None, help="default: $EFFOPD_DATA_DIR or <repo>/../shared/data")
    p.add_argument("--cache-dir", default=None, help="default: <repo>/.cache/evalplus")
    a = p.parse_args(argv)
    report = json.loads(a.out.read_text()) if a.out.is_file() else {}
    report.setdefault("datasets", {})
    for ds in a.dataset:
        summary = ceiling(ds, parallel=a.parallel, limit=a.limit, data_dir=a.data_dir, cache_dir=a.cache_dir,
                          min_time_limit=a.min_time_limit, gt_time_limit_factor=a.gt_time_limit_factor,
                          memory_bytes=a.memory_mb << 20, isolation=a.isolation)
        summary["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        summary["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                              "sandbox": {k: v for k, v in sandbox.capabilities().items() if k != "setup"}}
        report["datasets"][ds] = summary
        write_atomic(a.out, report)
        print(f"{ds}: base {summary['base_pass']}/{summary['n_tasks']}, plus {summary['plus_pass']}/"
              f"{summary['n_tasks']}, {len(summary['failures'])} failing, {summary['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
