"""The tiny-world runs the analysis needs: OPD and GRPO at the efficiency table's LR, several seeds, snapshots on.

Runs live under ``runs/analysis/<METHOD>/seed<S>``; finished runs are reused (bench.studies.launcher skips them).
"""

from __future__ import annotations

from pathlib import Path

from bench.studies.launcher import Job, run_jobs

LR = 6e-5  # results/efficiency.md: the validation-selected LR of both OPD and GRPO
SNAPSHOT_STEPS = "pow2+every:5"
METHODS = {"OPD": "opd", "GRPO": "grpo"}


def analysis_jobs(runs_dir: Path, seeds: list[int], lr: float = LR, snapshot_steps: str = SNAPSHOT_STEPS) -> list[Job]:
    jobs = []
    for seed in seeds:  # interleaved: a partial sweep already holds OPD/GRPO pairs
        for label, experiment in METHODS.items():
            jobs.append(Job(Path(runs_dir) / label / f"seed{seed}",
                            [f"experiment={experiment}", "world=style", f"trainer.seed={seed}", f"trainer.lr={lr}",
                             f"method={label}", "logging.wandb=disabled", "data.selection_prompts=0",
                             f"trainer.snapshot_steps={snapshot_steps}"]))
    return jobs


def ensure_runs(runs_dir: Path, seeds: list[int], workers: int = 2) -> dict[str, list[Path]]:
    jobs = analysis_jobs(runs_dir, seeds)
    run_jobs(jobs, workers=workers)
    return {label: [Path(runs_dir) / label / f"seed{s}" for s in seeds] for label in METHODS}
