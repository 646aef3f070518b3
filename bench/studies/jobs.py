"""The one job builder: what a study asks ``python -m bench.train`` to run, and where the run folder goes.

A ``Job`` is a run folder plus the Hydra overrides of one training run. Every study builds its jobs with
``train_job`` (experiment preset, world, seed, learning rate, method label, wandb off, selection prompts on
or off, extra overrides), so the same run is described the same way everywhere and a study can reuse another
study's finished folder (``existing_job``: table 2's runs in the efficiency and regimes studies) knowing the
exact overrides that made it. ``builds_for`` spreads a study's seeds over a world's builds (``world.build``),
and ``train_job(..., build=b)`` puts a run in build b. Launching is bench/studies/launcher.py's job;
``Job.command`` is the command line every launcher runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config import WORLD_ROLES
from bench.studies.speedup import run_build, run_build_roles

DEFAULT_LR = 2e-5  # trainer.lr of experiments/trainer/tiny.yaml: the tiny world's OPD default
LR_MULTIPLIERS = (1, 3, 10)  # the standard LR grid around it: x1, x3, x10 (table 2's sweep, the regimes' LRs)
ALL_ROLES = WORLD_ROLES  # world.build_roles' default: a build re-seeds every role
# The roles table 2's world builds re-seed (``--build-roles`` of table 2; efficiency's option too): all of them.
# A build is one draw of the world only when base, teacher and student are all drawn anew; builds that share a
# base are, for the base, one draw however many students they train (docs/worlds.md#what-a-build-varies).
TABLE2_BUILD_ROLES = ALL_ROLES
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


def builds_for(seeds, n_builds: int) -> dict[int, int]:
    """The world build of each seed when a study spreads ``seeds`` over ``n_builds`` builds: round-robin by seed
    value, seed s -> build s % n_builds (seeds 0..4 over 3 builds -> 0, 1, 2, 0, 1).

    By value, not by position, so a seed lands in the same build whatever other seeds a call lists (table 2's
    LR-sweep seeds are a subset of its seeds, and must reuse the same runs). ``n_builds=1`` puts every seed in
    build 0, which is what a study does without builds.
    """
    if isinstance(n_builds, bool) or not isinstance(n_builds, int) or n_builds < 1:
        raise ValueError(f"n_builds = {n_builds!r}: the number of world builds must be an integer >= 1 "
                         "(use 1 for the single default build)")
    seeds = list(seeds)
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds {bad!r}: training seeds must be integers >= 0 (trainer.seed)")
    return {s: s % n_builds for s in seeds}


def build_overrides(build: int, build_roles=ALL_ROLES) -> list[str]:
    """The overrides that put a run in world build ``build`` re-seeding ``build_roles``: none for build 0 (the same
    models whatever the roles), and the roles only when they are not all three (``world.build_roles``' default),
    so a job's overrides, and so its run fingerprint, are what they were before either setting existed."""
    if not build:
        return []
    return [f"world.build={build}", *([roles_override(build_roles)] if tuple(build_roles) != ALL_ROLES else [])]


def roles_override(build_roles) -> str:
    """``world.build_roles=[...]``: the override a study passes to its world builds and its jobs."""
    return f"world.build_roles=[{','.join(build_roles)}]"


def parse_build_roles(text: str) -> tuple[str, ...]:
    """``--build-roles student`` / ``base,teacher,student`` -> the roles; a clear error for anything else."""
    roles = tuple(r.strip() for r in text.split(",") if r.strip())
    if not roles or any(r not in ALL_ROLES for r in roles) or len(set(roles)) != len(roles):
        raise ValueError(f"--build-roles {text!r}: name distinct roles from {','.join(ALL_ROLES)}, e.g. student "
                         "(one base and teacher, a student per build) or base,teacher,student (every role per build)")
    return tuple(r for r in ALL_ROLES if r in roles)


def train_job(runs_dir: Path, label: str, experiment: str, seed: int, lr: float, world: str = "style",
              selection: bool = False, extra: tuple[str, ...] | list[str] = (), build: int = 0,
              build_roles=ALL_ROLES) -> Job:
    """The run ``<runs_dir>/<label>/seed<seed>``: preset ``experiment`` on ``world`` at ``lr``, labelled ``label``.

    Only runs that take part in a learning-rate selection score the validation selection prompts (evaluation
    never touches training randomness, so the runs are otherwise identical); ``extra`` overrides go last.
    ``build`` is the world build (``world.build``): added as an override only when it is not 0, so a build-0
    job's overrides, and so its run fingerprint, are those of a study without builds. The folder does not
    name the build: one label holds one run per seed (spread seeds over builds with ``builds_for``), and a
    finished folder made in another build is caught by its fingerprint (stale) instead of being loaded twice.
    ``build_roles``: the roles the build re-seeds (``build_overrides``).
    """
    if isinstance(build, bool) or not isinstance(build, int) or build < 0:
        raise ValueError(f"build = {build!r}: the world build (world.build) must be an integer >= 0 "
                         "(0 is the default build)")
    return Job(Path(runs_dir) / label / f"seed{seed}",
               [f"experiment={experiment}", f"world={world}", *build_overrides(build, build_roles),
                f"trainer.seed={seed}", f"trainer.lr={lr}", f"method={label}", "logging.wandb=disabled",
                *([] if selection else ["data.selection_prompts=0"]), *extra])


def scored_selection(run_dir: Path) -> bool:
    """Whether a finished run scored the validation selection prompts at every evaluation."""
    evals = [json.loads(line) for line in (Path(run_dir) / "evals.jsonl").read_text().splitlines() if line.strip()]
    return all("val/greedy" in e for e in evals)


def existing_job(runs_dir: Path, label: str, experiment: str, seed: int, lr: float, world: str = "style",
                 needs_selection: bool = False, extra: tuple[str, ...] | list[str] = (),
                 build: int = 0, build_roles=ALL_ROLES) -> Job | None:
    """Another study's finished run of the same (experiment, world, build, seed, LR), as the job that made it, or None.

    The folder is ``train_job``'s (``<runs_dir>/<label>/seed<seed>``); its selection setting and its exact
    learning rate (table 2's 3 x 2e-5 is 6.000000000000001e-05, an LR file's is 6e-05: one ``lr_tag``) are read
    from the run, so the rebuilt overrides are the ones the launcher fingerprinted. None when the folder has no
    summary.json, when its LR or its world build (config.yaml's ``world.build``, 0 when absent) differs, or when
    ``needs_selection`` and the run did not score the selection prompts.
    """

    folder = Path(runs_dir) / label / f"seed{seed}"
    if not (folder / "summary.json").exists():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    run_lr = float(summary.get("lr", lr))
    if lr_tag(run_lr) != lr_tag(lr) or run_build(folder, summary) != build:
        return None
    if build and run_build_roles(folder, summary) != tuple(build_roles):
        return None
    selection = scored_selection(folder)
    if needs_selection and not selection:
        return None
    return train_job(runs_dir, label, experiment, seed, run_lr, world=world, selection=selection, extra=extra,
                     build=build, build_roles=build_roles)

