"""The tiny-world runs the analysis needs: OPD and GRPO at the efficiency table's LR, several seeds, snapshots on.

Runs live under ``runs/analysis/<METHOD>/seed<S>``, built with the shared job builder (bench/studies/jobs.py)
and launched by the study (bench/studies/parameter_dynamics.py); finished runs are reused.
"""

from __future__ import annotations

from pathlib import Path

from bench.studies.jobs import Job, train_job

LR = 6e-5  # results/efficiency.md: the validation-selected LR of both OPD and GRPO
SNAPSHOT_STEPS = "pow2+every:5"
METHODS = {"OPD": "opd", "GRPO": "grpo"}


def analysis_jobs(runs_dir: Path, seeds: list[int], lr: float = LR, snapshot_steps: str = SNAPSHOT_STEPS) -> list[Job]:
    # Interleaved: a partial sweep already holds OPD/GRPO pairs.
    return [train_job(runs_dir, label, experiment, seed, lr, extra=(f"trainer.snapshot_steps={snapshot_steps}",))
            for seed in seeds for label, experiment in METHODS.items()]


def run_dirs(runs_dir: Path, seeds: list[int]) -> dict[str, list[Path]]:
    """{method: [run folder per seed]}."""
    return {label: [Path(runs_dir) / label / f"seed{s}" for s in seeds] for label in METHODS}
