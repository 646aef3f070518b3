"""The regime map's grid, shared by the studies that read its runs (``map`` in regime_map.py, ``variant`` in
variant.py): the worlds and their default LRs and horizons, the methods on the map, the run folders of the grid,
and the per-(build, seed) paired speedup. Studies import this module, never each other."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.studies.jobs import Job, builds_for, lr_tag, train_job
from bench.studies.speedup import RunRecord, load_runs
from bench.studies.stats import cluster_t_mean_ci, mean_ci

METHODS = {"OPD": "opd", "EffOPD": "effopd", "WindowLR": "window_lr"}
EXTRAPOLATED = ("EffOPD", "WindowLR")  # the methods compared with OPD at the same LR (WindowLR is ours)
TUNED = "OPD, tuned LR"
TARGET_FRACTION = 0.95
EVAL_EVERY = 2  # trainer.eval_every of experiments/trainer/tiny.yaml: horizons are rounded up to a multiple


@dataclass(frozen=True)
class WorldSpec:
    """A world's place on the map: its default learning rate and the horizon of a run at that LR."""

    default_lr: float  # OPD's default LR on this world (the map's x1)
    base_steps: int  # trainer.total_steps at x1 and above; below x1 it grows as 1/multiplier


# style and flip: the tiny trainer's default LR (2e-5, experiments/trainer/tiny.yaml), 50 steps as in table 2.
# scratch: the regimes study ran it at 2e-5, 6e-5 and 2e-4 and none of them moved the student much in 50 steps
# (docs/results.md: 11-12% at 2e-5 and 6e-5, 7% at 2e-4), so it keeps the default LR and gets twice the steps.
WORLDS = {"style": WorldSpec(2e-5, 50), "flip": WorldSpec(2e-5, 50), "scratch": WorldSpec(2e-5, 100)}


def horizon(spec: WorldSpec, multiplier: float, max_steps: int) -> int:
    """trainer.total_steps at ``multiplier`` x the default LR: base / min(multiplier, 1), rounded up to a multiple
    of the eval interval, capped by ``max_steps``."""
    steps = math.ceil(spec.base_steps / min(multiplier, 1.0) / EVAL_EVERY - 1e-9) * EVAL_EVERY
    return min(steps, max_steps)


def cell_seeds(multiplier: float, seeds: int, default_seeds: int) -> list[int]:
    return list(range(default_seeds if multiplier == 1 else seeds))


def grid(runs_dir: Path, worlds: list[str], mults: list[float], seeds: int, default_seeds: int, n_builds: int,
         selection_seeds: int, max_steps: int) -> dict[tuple[str, float, str, int], Job]:
    """Every run of the map, keyed (world, multiplier, method, seed): ``<runs_dir>/<world>/lr<tag>/<method>/seed<s>``.

    OPD runs of the first ``selection_seeds`` seeds score the selection prompts (the LR selection); seeds are
    spread over the world's builds by value (``builds_for``); ``trainer.total_steps`` is the cell's horizon."""
    jobs = {}
    for world in worlds:
        spec = WORLDS[world]
        for m in mults:
            lr = spec.default_lr * m
            seeds_here = cell_seeds(m, seeds, default_seeds)
            builds = builds_for(seeds_here, n_builds)
            steps = horizon(spec, m, max_steps)
            for method, preset in METHODS.items():
                for s in seeds_here:
                    jobs[(world, m, method, s)] = train_job(
                        runs_dir / world / f"lr{lr_tag(lr)}", method, preset, s, lr, world=world,
                        selection=method == "OPD" and s < selection_seeds, build=builds[s],
                        extra=(f"trainer.total_steps={steps}",))
    return jobs


def load_as(job: Job, method: str) -> RunRecord:
    (run,) = load_runs(job.run_dir)
    return RunRecord(**{**run.__dict__, "method": method})


def pair_ci(values: list[float | None], builds: list[int]) -> dict:
    """Mean and CI the way build_speedup_table does it: over seeds with one build, over build means with several."""
    if len(set(builds)) <= 1:
        return mean_ci(values)
    groups: dict[int, list] = {}
    for b, v in zip(builds, values):
        groups.setdefault(b, []).append(v)
    return cluster_t_mean_ci([groups[b] for b in sorted(groups)])


def paired_speedup(num: dict, den: dict, field: str) -> dict:
    """num / den per (build, seed) pair of two rows' ``per_seed`` entries (a miss on either side drops the pair);
    with no pair at all, the ratio of the two rows' means (method "ratio of means", no CI)."""
    ref = {(p.get("build", 0), p["seed"]): p[field] for p in num["per_seed"]}
    values, builds, excluded = [], [], 0
    for p in den["per_seed"]:
        key = (p.get("build", 0), p["seed"])
        a, b = ref.get(key), p[field]
        if a is None or b is None or b <= 0:
            excluded += 1
            continue
        values.append(a / b)
        builds.append(key[0])
    if values:
        return {**pair_ci(values, builds), "pairs_excluded": excluded, "method": "per (build, seed) pair"}
    mn = mean_ci([p[field] for p in num["per_seed"]])["mean"]
    md = mean_ci([p[field] for p in den["per_seed"]])["mean"]
    ratio = mn / md if mn is not None and md else None
    return {"mean": ratio, "ci95": None, "n": 0, "pairs_excluded": excluded, "method": "ratio of means"}
