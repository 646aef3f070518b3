"""HumanEval+ and MBPP+ grading through evalplus's own evaluation functions, on local data, in our sandbox.

evalplus (0.3.1, installed ``--no-deps``; see the ``code`` extra) is used for what defines the benchmark: its
dataset loaders and md5 (``get_human_eval_plus[_hash]``, ``get_mbpp_plus[_hash]``), its ground truth
(``get_groundtruth``: runs the canonical solutions once, times them, caches a pickle) and its checker
(``untrusted_check``: special oracles, float tolerance, per-input time limits ``max(min_time_limit,
gt_time_limit_factor * reference time)``). What we control:
- data: the override paths point at ``$EFFOPD_DATA_DIR/code/{HumanEvalPlus.jsonl.gz,MbppPlus.jsonl}`` (default
  ``<repo>/../shared/data``), and evalplus's downloader is replaced by one that raises, so nothing is fetched;
- cache: evalplus keeps ``CACHE_DIR`` in module globals (from appdirs, at import time), so we patch those
  globals, under a lock, to our cache directory (default ``<repo>/.cache/evalplus``): nothing is written elsewhere;
- containment: each sample's ``untrusted_check`` calls run inside ``sandbox.run`` (namespaces where available),
  with evalplus's own memory cap set to ours. ``isolation="evalplus"`` instead calls evalplus's
  ``check_correctness`` directly in a process pool: evalplus's own (best-effort) guard, for comparison.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.graders.code import sandbox

DATASETS = {"humaneval": "HumanEvalPlus.jsonl.gz", "mbpp": "MbppPlus.jsonl"}
DEFAULT_MIN_TIME_LIMIT = 1.0  # evalplus.config.DEFAULT_MIN_TIME_LIMIT (0.3.1)
DEFAULT_GT_TIME_LIMIT_FACTOR = 4.0  # evalplus.config.DEFAULT_GT_TIME_LIMIT_FACTOR (0.3.1)
DEFAULT_MEMORY_BYTES = 4 << 30  # evalplus's own default cap (EVALPLUS_MAX_MEMORY_BYTES)
_EVALPLUS_LOCK = threading.Lock()  # evalplus's paths are module globals: one configuration at a time


def data_dir() -> Path:
    return Path(os.environ.get("EFFOPD_DATA_DIR") or Path(sandbox.REPO_ROOT).parent / "shared" / "data")


def dataset_path(dataset: str, data_root: str | os.PathLike | None = None) -> Path:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    return Path(data_root or data_dir()) / "code" / DATASETS[dataset]


def default_cache_dir() -> Path:
    return Path(sandbox.REPO_ROOT) / ".cache" / "evalplus"


@dataclass
class CodeGrade:
    """One sample's verdict. Statuses are evalplus's (pass / fail / timeout); ``*_failed_input`` is the index of
    the input that failed (the one running, for a timeout), None when unknown (e.g. the code did not load)."""

    task_id: str
    passed: bool  # base, and plus unless base_only
    base_status: str
    plus_status: str | None
    base_failed_input: int | None = None
    plus_failed_input: int | None = None
    message: str = ""  # sandbox-level facts when the sandbox, not evalplus, decided
    time_s: float = 0.0


@dataclass
class EvalplusResult:
    dataset: str
    grades: list[CodeGrade]
    metadata: dict = field(default_factory=dict)

    @property
    def base_pass(self) -> int:
        return sum(g.base_status == "pass" for g in self.grades)

    @property
    def plus_pass(self) -> int:
        return sum(g.passed for g in self.grades)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "metadata": self.metadata, "grades": [asdict(g) for g in self.grades]}


# ------------------------------------------------------------------------------------------------------------
# evalplus configuration
# ------------------------------------------------------------------------------------------------------------
def _no_download(url, path):
    raise RuntimeError(f"evalplus tried to download {url} to {path}; the override path should have been used")


@contextlib.contextmanager
def evalplus_paths(dataset: str, data_file: Path, cache_dir: Path):
    """Point evalplus at ``data_file`` and ``cache_dir`` (its override/cache globals), forbid downloads, restore."""
    if not data_file.is_file():
        raise FileNotFoundError(f"{dataset} data not found at {data_file} (set EFFOPD_DATA_DIR)")
    import evalplus.data.humaneval as he
    import evalplus.data.mbpp as mb
    import evalplus.data.utils as du
    import evalplus.evaluate as ev

    patches = [(m, "CACHE_DIR", str(cache_dir)) for m in (du, he, mb, ev)]
    patches += [(m, "make_cache", _no_download) for m in (du, he, mb)]
    patches += [(he, "HUMANEVAL_OVERRIDE_PATH", str(data_file) if dataset == "humaneval" else None),
                (mb, "MBPP_OVERRIDE_PATH", str(data_file) if dataset == "mbpp" else None)]
    with _EVALPLUS_LOCK:
        saved = [(m, name, getattr(m, name)) for m, name, _ in patches]
        try:
            for m, name, value in patches:
                setattr(m, name, value)
            cache_dir.mkdir(parents=True, exist_ok=True)
            yield
        finally:
            for m, name, value in saved:
                setattr(m, name, value)


def load_problems(dataset: str, data_root=None, cache_dir=None) -> tuple[dict, dict, dict]:
    """(problems, expected outputs, metadata) via evalplus's loaders and ``get_groundtruth`` (cached by md5)."""
    from evalplus import __version__
    from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash, get_mbpp_plus, get_mbpp_plus_hash
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.evaluate import get_groundtruth

    data_file = dataset_path(dataset, data_root)
    cache = Path(cache_dir or default_cache_dir())
    with evalplus_paths(dataset, data_file, cache), contextlib.redirect_stdout(sys.stderr):
        if dataset == "humaneval":
            problems, md5, not_none = get_human_eval_plus(), get_human_eval_plus_hash(), []
        else:
            problems, md5, not_none = get_mbpp_plus(), get_mbpp_plus_hash(), MBPP_OUTPUT_NOT_NONE_TASKS
        expected = get_groundtruth(problems, md5, not_none)
    meta = {"dataset_md5": md5, "data_file": str(data_file), "cache_dir": str(cache), "evalplus_version": __version__,
            "n_tasks": len(problems)}
    return problems, expected, meta


# ------------------------------------------------------------------------------------------------------------
# checking one sample
# ------------------------------------------------------------------------------------------------------------
def _check_timeout(ref_time: list[float], min_time_limit: float, factor: float) -> float:
    """Upper bound of one ``untrusted_check`` call, mirroring evalplus: min(60, sum of limits) + 1 + join slack."""
    return min(60.0, sum(max(min_time_limit, factor * t) for t in ref_time)) + 2.5


def _failed_input(status: str, details: list) -> int | None:
    if status == "pass" or (status == "fail" and not details):
        return None
    return len(details) - 1 if status == "fail" else len(details)


def _child_check(args: dict, channel) -> None:
    """Inside the sandbox: evalplus's ``untrusted_check`` on base then plus inputs (as ``check_correctness``)."""
    from evalplus.eval import untrusted_check

    for part in ("base", "plus")[: 1 if args["base_only"] else 2]:
        status, details = untrusted_check(
            args["dataset"], args["solution"], args["problem"][f"{part}_input"], args["problem"]["entry_point"],
            expected=args["expected"][part], atol=args["problem"]["atol"], ref_time=args["expected"][f"{part}_time"],
            fast_check=True, min_time_limit=args["min_time_limit"], gt_time_limit_factor=args["gt_time_limit_factor"])
        channel.send({"event": "result", "part": part, "status": status, "details": [bool(d) for d in details]})


def _grade_sandboxed(job: dict) -> CodeGrade:
    problem, expected = job["problem"], job["expected"]
    parts = ("base",) if job["base_only"] else ("base", "plus")
    budget = sum(_check_timeout(expected[f"{p}_time"], job["min_time_limit"], job["gt_time_limit_factor"])
                 for p in parts)
    mem = job["memory_bytes"]
    limits = sandbox.Limits(cpu_seconds=budget + 5, wall_seconds=budget + 30, memory_bytes=mem, stack_bytes=mem,
                            file_size_bytes=64 << 20, max_processes=64, startup_seconds=30)
    args = {k: job[k] for k in ("dataset", "solution", "base_only", "min_time_limit", "gt_time_limit_factor")}
    args["problem"] = {k: problem[k] for k in ("base_input", "plus_input", "entry_point", "atol")}
    args["expected"] = {k: expected[k] for k in ("base", "plus", "base_time", "plus_time")}
    r = sandbox.run(entry=f"{__name__}:_child_check", args=args, limits=limits, isolation=job["isolation"],
                    extra_env={"EVALPLUS_MAX_MEMORY_BYTES": str(mem)}, allow_fork=True)
    got = {f["part"]: (str(f.get("status")), list(f.get("details") or [])) for f in r.frames
           if f.get("event") == "result" and f.get("part") in parts}
    message = ""
    if len(got) < len(parts):
        status = sandbox.classify(r, limits)
        message = f"sandbox: {status} (exit {r.exit_code}, signal {r.signal}, killed {r.killed}) {r.stderr[-300:]}"
        for p in parts:
            got.setdefault(p, ("timeout" if status == "timeout" else "fail", []))
    return _grade(problem["task_id"], got, job["base_only"], message, r.wall_s)


def _grade(task_id: str, got: dict, base_only: bool, message: str, time_s: float) -> CodeGrade:
    base_status, base_details = got["base"]
    plus_status, plus_details = got.get("plus", (None, []))
    passed = base_status == "pass" and (base_only or plus_status == "pass")
    return CodeGrade(task_id, passed, base_status, plus_status, _failed_input(base_status, base_details),
                     None if plus_status is None else _failed_input(plus_status, plus_details), message, time_s)


def _grade_evalplus_native(job: dict) -> CodeGrade:
    """evalplus's ``check_correctness`` as its CLI calls it (in a pool worker process), for comparison."""
    import time

    from evalplus.evaluate import check_correctness

    start = time.monotonic()
    os.environ["EVALPLUS_MAX_MEMORY_BYTES"] = str(job["memory_bytes"])
    res = check_correctness(job["dataset"], 0, job["problem"], job["solution"], job["expected"], job["base_only"],
                            True, job["problem"]["task_id"], job["min_time_limit"], job["gt_time_limit_factor"])
    got = {p: (res[p][0], [bool(d) for d in res[p][1]]) for p in ("base", "plus") if p in res}
    return _grade(job["problem"]["task_id"], got, job["base_only"], "", time.monotonic() - start)


# ------------------------------------------------------------------------------------------------------------
# public entry point
# ------------------------------------------------------------------------------------------------------------
def grade_evalplus(dataset: str, samples: list[dict[str, Any]], *, data_dir=None, cache_dir=None,
                   base_only: bool = False, parallel: int = 2, min_time_limit: float = DEFAULT_MIN_TIME_LIMIT,
                   gt_time_limit_factor: float = DEFAULT_GT_TIME_LIMIT_FACTOR,
                   memory_bytes: int = DEFAULT_MEMORY_BYTES, isolation: str = "auto") -> EvalplusResult:
    """Grade ``samples`` (dicts with ``task_id`` and ``solution`` (full code) or ``completion`` (appended to the
    prompt), as evalplus's sample files) on HumanEval+ (``"humaneval"``) or MBPP+ (``"mbpp"``).

    Grades come back in sample order; several samples per task are fine. ``isolation``: a sandbox isolation
    (``auto``/``namespaces``/``unsafe-rlimits``; ``auto`` refuses without namespaces) or ``"evalplus"`` for
    evalplus's own process guard only (no containment either: trusted code only).
    """
    if isolation != "evalplus":
        isolation = sandbox.resolve_isolation(isolation)  # refuses here, before any job, when auto has no namespaces
    problems, expected, meta = load_problems(dataset, data_dir, cache_dir)
    jobs = []
    for s in samples:
        tid = s["task_id"]
        if tid not in problems:
            raise KeyError(f"{tid!r} is not a task of {dataset} ({meta['data_file']})")
        solution = s["solution"] if "solution" in s else problems[tid]["prompt"] + s["completion"]
        jobs.append({"dataset": dataset, "problem": problems[tid], "expected": expected[tid], "solution": solution,
                     "base_only": base_only, "min_time_limit": min_time_limit, "memory_bytes": memory_bytes,
                     "gt_time_limit_factor": gt_time_limit_factor, "isolation": isolation})
    if isolation == "evalplus":
        with ProcessPoolExecutor(max_workers=max(1, parallel)) as pool:
            grades = list(pool.map(_grade_evalplus_native, jobs))
    else:
        grades = sandbox.map_bounded(_grade_sandboxed, jobs, parallel)
    meta.update(min_time_limit=min_time_limit, gt_time_limit_factor=gt_time_limit_factor, memory_bytes=memory_bytes,
                base_only=base_only, parallel=parallel, isolation=isolation, n_samples=len(samples))
    return EvalplusResult(dataset, grades, meta)
