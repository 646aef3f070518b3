"""Run many training jobs in parallel, one torch thread each, skipping runs that already finished.

Each job is ``python -m bench.train <overrides> hydra.run.dir=<run_dir>``; its console output goes to
``<run_dir>/train.log``. A finished run (``summary.json`` present) is never rerun, so an interrupted sweep
continues where it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.paths import REPO_ROOT


@dataclass
class Job:
    run_dir: Path
    overrides: list[str]

    @property
    def done(self) -> bool:
        return (self.run_dir / "summary.json").exists()


def run_jobs(jobs: list[Job], workers: int = 2) -> float:
    """Run the unfinished ``jobs`` with ``workers`` processes; returns the wall seconds spent."""
    pending = [j for j in jobs if not j.done]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "WANDB_SILENT": "true"}
    running: list[tuple[Job, subprocess.Popen, object]] = []
    failed: list[Job] = []
    t0 = time.time()
    total = len(pending)
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            job.run_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "bench.train", *job.overrides, "trainer.threads=1",
                   "logging.progress_bar=false", f"hydra.run.dir={job.run_dir}"]
            log = open(job.run_dir / "train.log", "w")
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((job, proc, log))
        time.sleep(0.5)
        for job, proc, log in list(running):
            if proc.poll() is None:
                continue
            running.remove((job, proc, log))
            log.close()
            finished = total - len(pending) - len(running)
            status = "ok" if proc.returncode == 0 and job.done else f"FAILED (exit {proc.returncode})"
            print(f"[{finished}/{total}] {job.run_dir} {status} ({time.time() - t0:.0f}s elapsed)", flush=True)
            if status != "ok":
                failed.append(job)
    if failed:
        logs = "\n".join(f"  {j.run_dir / 'train.log'}" for j in failed)
        raise RuntimeError(f"{len(failed)} run(s) failed; see their logs:\n{logs}")
    return time.time() - t0
