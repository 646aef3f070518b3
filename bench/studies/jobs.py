"""The one job builder: what a study asks ``python -m bench.train`` to run, and where the run folder goes.

A ``Job`` is a run folder plus the Hydra overrides of one training run. Every study builds its jobs with
``train_job`` (experiment preset, world, seed, learning rate, method label, wandb off, selection prompts on
or off, extra overrides), so the same run is described the same way everywhere and a study can reuse another
study's finished folder (``existing_job``: table 2's runs in the efficiency and regimes studies) knowing the
exact overrides that made it. Launching is bench/studies/launcher.py's job; ``Job.command`` is the command
line every launcher runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LR = 2e-5  # trainer.lr of experiments/trainer/tiny.yaml: the tiny world's OPD default
LR_MULTIPLIERS = (1, 3, 10)  # the standard LR grid around it: x1, x3, x10 (table 2's sweep, the regimes' LRs)
# Added to every job by every launcher (and so part of every run's config fingerprint): one torch thread per
# run, no progress bar in train.log.
LAUNCH_OVERRIDES = ("trainer.threads=1", "logging.progress_bar=false")


@dataclass
class Job:
    run_dir: Path
    overrides: list[str]

    @property
    def done(self) -> bool:
        return (self.run_dir / "summary.json").exists()

    def train_args(self) -> list[str]:
        """The arguments after ``python``: ``-m bench.train <overrides> <launch overrides> hydra.run.dir=...``."""
        return ["-m", "bench.train", *self.overrides, *LAUNCH_OVERRIDES, f"hydra.run.dir={self.run_dir}"]

    def command(self, python: str | None = None) -> list[str]:
        return [python or sys.executable, *self.train_args()]


def lr_tag(lr: float) -> str:
    """A learning rate as it appears in run-folder names and labels: 6e-05 -> "6e-5"."""
    return f"{lr:.0e}".replace("e-0", "e-")


def sweep_label(method: str, lr: float, default_lr: float = DEFAULT_LR) -> str:
    """A run's label in a learning-rate sweep: the method's name at the default LR, ``<method>-lr<tag>`` elsewhere
    (table 2's run folders: runs/table2/OPD, runs/table2/OPD-lr6e-5, ...)."""
    return method if lr == default_lr else f"{method}-lr{lr_tag(lr)}"


def train_job(runs_dir: Path, label: str, experiment: str, seed: int, lr: float, world: str = "style",
              selection: bool = False, extra: tuple[str, ...] | list[str] = ()) -> Job:
    """The run ``<runs_dir>/<label>/seed<seed>``: preset ``experiment`` on ``world`` at ``lr``, labelled ``label``.

    Only runs that take part in a learning-rate selection score the validation selection prompts (evaluation
    never touches training randomness, so the runs are otherwise identical); ``extra`` overrides go last.
    """
    return Job(Path(runs_dir) / label / f"seed{seed}",
               [f"experiment={experiment}", f"world={world}", f"trainer.seed={seed}", f"trainer.lr={lr}",
                f"method={label}", "logging.wandb=disabled", *([] if selection else ["data.selection_prompts=0"]),
                *extra])


def scored_selection(run_dir: Path) -> bool:
    """Whether a finished run scored the validation selection prompts at every evaluation."""
    evals = [json.loads(line) for line in (Path(run_dir) / "evals.jsonl").read_text().splitlines() if line.strip()]
    return all("val/greedy" in e for e in evals)


def existing_job(runs_dir: Path, label: str, experiment: str, seed: int, lr: float, world: str = "style",
                 needs_selection: bool = False, extra: tuple[str, ...] | list[str] = ()) -> Job | None:
    """Another study's finished run of the same (experiment, world, seed, LR), as the job that made it, or None.

    The folder is ``train_job``'s (``<runs_dir>/<label>/seed<seed>``); its selection setting and its exact
    learning rate (table 2's 3 x 2e-5 is 6.000000000000001e-05, an LR file's is 6e-05: one ``lr_tag``) are read
    from the run, so the rebuilt overrides are the ones the launcher fingerprinted. None when the folder has no
    summary.json, when its LR differs, or when ``needs_selection`` and the run did not score the selection prompts.
    """
    folder = Path(runs_dir) / label / f"seed{seed}"
    if not (folder / "summary.json").exists():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    run_lr = float(summary.get("lr", lr))
    if lr_tag(run_lr) != lr_tag(lr):
        return None
    selection = scored_selection(folder)
    if needs_selection and not selection:
        return None
    return train_job(runs_dir, label, experiment, seed, run_lr, world=world, selection=selection, extra=extra)
