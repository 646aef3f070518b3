"""What both sides of a pair read from disk, built before any timing starts: the tiny world's models and,
for SFT, the cached teacher samples (generated once for the whole training pool, then shared)."""

from __future__ import annotations

from bench.config import compose_config
from bench.studies.perf.pairs import Pair, our_overrides
from bench.world import load_world
from bench.world.teacher_samples import TeacherTrajectories, teacher_trajectories_for_run


def pair_config(pair: Pair, steps: int, threads: int, out_dir, extra: list[str] = ()):
    return compose_config(our_overrides(pair, steps, threads, out_dir, extra))


def teacher_samples(cfg, world) -> TeacherTrajectories:
    """The teacher samples our SFT trains on (the same cache entry as ``bench.train``)."""
    return teacher_trajectories_for_run(cfg, world)


def prepare(pair: Pair, steps: int, threads: int, out_dir, extra: list[str] = ()) -> None:
    cfg = pair_config(pair, steps, threads, out_dir, extra)
    world = load_world(cfg)  # builds and caches the models when missing
    if cfg.algorithm.rollout_source == "teacher":
        teacher_samples(cfg, world)
