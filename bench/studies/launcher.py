"""Launching a study's jobs: ``run_jobs`` (fingerprints, stale runs, skipping finished runs) and the launchers.

Every job is the same command line, ``python -m bench.train <overrides> trainer.threads=1
logging.progress_bar=false hydra.run.dir=<run_dir>`` (``Job.command``), with its console output in
``<run_dir>/train.log``. A launcher only decides where that command runs:

- ``LocalLauncher`` (the default, ``--launcher local``): ``workers`` subprocesses on this machine, one torch
  thread each.
- ``SubmititLauncher`` (``--launcher submitit``): through submitit's ``AutoExecutor``: each job is a SLURM job
  on a SLURM machine (partition, GPUs, CPUs, memory and time limit configurable; ``workers`` caps the running
  array tasks), or a local submitit process with ``cluster="local"`` (what the tests use).

Why submitit directly, not Hydra's submitit launcher plugin (hydra-submitit-launcher)? That plugin is a Hydra
*Launcher*: it runs the sweep of one ``python -m bench.train --multirun`` app, building the grid from Hydra's
sweep syntax, placing runs under ``hydra.sweep.dir`` and calling the task function inside submitit's pickled
job. Our grids are not Hydra sweeps: they are built in Python per study (LR sweeps that grow at their top edge,
winners topped up to all seeds, finished runs reused from another study's folders), every job has its own run
folder (``hydra.run.dir``), finished and fingerprinted folders are skipped before anything is submitted, and
each job must be exactly the ``python -m bench.train`` process the local launcher starts, so that a run is the
same whichever launcher made it (the fingerprint does not depend on the launcher). Submitting that command
line per job with submitit is the direct fit; the plugin would need one multirun per study phase and its own
output layout.

``run_jobs`` before launching: a finished folder (summary.json) is checked against the job's fingerprint
(bench/studies/fingerprint.py). Stale folders (fingerprint missing or different) are refused with one message
naming each folder and what differs, unless ``stale="rerun"`` (moved aside to ``<folder>.stale-<hash>`` and
trained again) or ``stale="reuse"`` (used as they are and recorded). Each launched job gets its
``fingerprint.json`` first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.studies import fingerprint
from bench.studies.jobs import Job
from core.paths import REPO_ROOT

# Every training process: one thread (several runs share the machine), no tokenizer threads, quiet wandb.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
              "WANDB_SILENT": "true"}
STALE_POLICIES = ("refuse", "rerun", "reuse")


class StaleRunError(RuntimeError):
    """Finished run folders that this code and config did not make (see fingerprint.py)."""


class Launcher:
    """Runs jobs whose folders and fingerprints are ready; returns the jobs that failed."""

    name = "base"

    def launch(self, jobs: list[Job]) -> list[Job]:
        raise NotImplementedError


@dataclass
class LocalLauncher(Launcher):
    """``workers`` local subprocesses at a time, one torch thread each; console output in train.log."""

    workers: int = 2
    name = "local"

    def launch(self, jobs: list[Job]) -> list[Job]:
        pending = list(jobs)
        env = {**os.environ, **THREAD_ENV}
        running: list[tuple[Job, subprocess.Popen, object]] = []
        failed: list[Job] = []
        t0 = time.time()
        total = len(pending)
        while pending or running:
            while pending and len(running) < self.workers:
                job = pending.pop(0)
                job.run_dir.mkdir(parents=True, exist_ok=True)
                log = open(job.run_dir / "train.log", "w")
                proc = subprocess.Popen(job.command(), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                running.append((job, proc, log))
            time.sleep(0.5)
            for job, proc, log in list(running):
                if proc.poll() is None:
                    continue
                running.remove((job, proc, log))
                log.close()
                ok = proc.returncode == 0 and job.done
                _progress(total - len(pending) - len(running), total, job,
                          "ok" if ok else f"FAILED (exit {proc.returncode})", t0)
                if not ok:
                    failed.append(job)
        return failed


@dataclass
class TrainCommand:
    """What a submitit job runs: the job's ``python -m bench.train`` command, console output in train.log.

    Picklable (submitit sends it to the node); the interpreter is the node's ``sys.executable``, i.e. the one
    submitit started there. A failure raises, so submitit reports it."""

    train_args: list[str]
    log: str
    cwd: str = str(REPO_ROOT)
    env: dict = field(default_factory=lambda: dict(THREAD_ENV))

    def __call__(self) -> str:
        with open(self.log, "w") as fh:
            rc = subprocess.run([sys.executable, *self.train_args], cwd=self.cwd, env={**os.environ, **self.env},
                                stdout=fh, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            raise RuntimeError(f"python -m bench.train exited with {rc}; see {self.log}")
        return self.log


@dataclass
class SubmititLauncher(Launcher):
    """Each job through ``submitit.AutoExecutor(folder, cluster)``: SLURM jobs on a SLURM machine, else local.

    ``cluster``: None lets submitit pick (slurm where ``sbatch`` exists, else local); "local" and "debug" are
    submitit's local executors. On SLURM all jobs go in one job array with at most ``workers`` running;
    elsewhere at most ``workers`` run at a time. ``slurm_args`` are extra sbatch parameters (e.g. account,
    qos, constraint). submitit's own logs go to ``folder/<job id>_*``.
    """

    folder: Path = Path("runs/submitit")
    cluster: str | None = None
    workers: int = 2
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    timeout_min: int = 120
    mem_gb: float | None = None
    slurm_args: dict = field(default_factory=dict)
    poll_seconds: float = 2.0
    name = "submitit"

    def executor(self):
        import submitit

        ex = submitit.AutoExecutor(folder=Path(self.folder) / "%j", cluster=self.cluster)
        params = {"name": "effopd-bench", "timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_job,
                  "gpus_per_node": self.gpus_per_job, "mem_gb": self.mem_gb,
                  "slurm_partition": self.partition, "slurm_array_parallelism": self.workers,
                  "slurm_additional_parameters": dict(self.slurm_args) or None}
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def launch(self, jobs: list[Job]) -> list[Job]:
        ex = self.executor()
        for job in jobs:
            job.run_dir.mkdir(parents=True, exist_ok=True)
        calls = {id(j): TrainCommand(j.train_args(), str(j.run_dir / "train.log")) for j in jobs}
        pending, running, failed = list(jobs), [], []
        t0, total = time.time(), len(jobs)
        if ex.cluster == "slurm":  # one job array; SLURM keeps at most `workers` of it running
            with ex.batch():
                subs = [ex.submit(calls[id(j)]) for j in pending]
            running, pending = list(zip(pending, subs)), []
        while pending or running:
            while pending and len(running) < self.workers:
                job = pending.pop(0)
                running.append((job, ex.submit(calls[id(job)])))
            time.sleep(self.poll_seconds)
            for job, sub in list(running):
                if not sub.done():
                    continue
                running.remove((job, sub))
                err = sub.exception()
                ok = err is None and job.done
                _progress(total - len(pending) - len(running), total, job,
                          "ok" if ok else f"FAILED (submitit job {sub.job_id}; {sub.paths.stderr})", t0)
                if not ok:
                    failed.append(job)
        return failed


LAUNCHERS = {"local": LocalLauncher, "submitit": SubmititLauncher}


def _progress(finished: int, total: int, job: Job, status: str, t0: float) -> None:
    print(f"[{finished}/{total}] {job.run_dir} {status} ({time.time() - t0:.0f}s elapsed)", flush=True)


def _move_aside(run_dir: Path, recorded: dict | None) -> Path:
    import hashlib

    tag = fingerprint.short(recorded) if recorded else hashlib.sha256(
        (run_dir / "summary.json").read_bytes()).hexdigest()[:8]
    dest = run_dir.with_name(f"{run_dir.name}.stale-{tag}")
    n = 1
    while dest.exists():
        n += 1
        dest = run_dir.with_name(f"{run_dir.name}.stale-{tag}-{n}")
    run_dir.rename(dest)
    return dest


def check_stale(jobs: list[Job], stale: str = "refuse", reused: list[dict] | None = None) -> None:
    """Compare each finished job's folder with the job's fingerprint and apply the ``stale`` policy."""
    if stale not in STALE_POLICIES:
        raise ValueError(f"stale={stale!r}; use one of {STALE_POLICIES}")
    found = {}
    for job in jobs:
        if job.done and job.run_dir not in found:
            reason = fingerprint.stale_reason(job)
            if reason:
                found[job.run_dir] = reason
    if not found:
        return
    if stale == "refuse":
        lines = "\n".join(f"  {d}: {why}" for d, why in found.items())
        raise StaleRunError(
            f"{len(found)} finished run folder(s) were not made by this code and config:\n{lines}\n"
            "Fix: rerun with --stale rerun (move each folder aside to <folder>.stale-<hash> and train it again) "
            "or --stale reuse (use them as they are; the study's output lists them).")
    for run_dir, why in found.items():
        if stale == "rerun":
            dest = _move_aside(run_dir, fingerprint.read(run_dir))
            print(f"stale run {run_dir} ({why}) moved to {dest}; training it again", flush=True)
        elif reused is None or all(r["run_dir"] != str(run_dir) for r in reused):
            if reused is not None:
                reused.append({"run_dir": str(run_dir), "differs": why})
            print(f"stale run {run_dir} reused as it is (--stale reuse): {why}", flush=True)


def run_jobs(jobs: list[Job], launcher: Launcher | None = None, workers: int = 2, stale: str = "refuse",
             reused: list[dict] | None = None) -> float:
    """Run the unfinished ``jobs`` with ``launcher`` (default: ``LocalLauncher(workers)``); returns wall seconds.

    Finished folders are checked first (``check_stale``; ``reused`` collects the stale runs used anyway). Each
    job to run gets its folder and ``fingerprint.json``, then the launcher runs them all. Raises RuntimeError
    naming every failed run's train.log.
    """
    t0 = time.time()
    launcher = launcher or LocalLauncher(workers=workers)
    check_stale(jobs, stale, reused)
    pending = [j for j in jobs if not j.done]
    for job in pending:
        fingerprint.write(job)
    failed = launcher.launch(pending) if pending else []
    if failed:
        logs = "\n".join(f"  {j.run_dir / 'train.log'}" for j in failed)
        raise RuntimeError(f"{len(failed)} run(s) failed; see their logs:\n{logs}")
    return time.time() - t0
