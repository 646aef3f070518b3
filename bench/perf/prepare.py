"""What both sides of a pair read from disk, built before any timing starts: the tiny world's models and,
for SFT, the cached teacher samples (generated once for the whole training pool, then shared)."""

from __future__ import annotations

from bench.config import compose_config
from bench.perf.pairs import Pair, our_overrides
from bench.rollout import SamplingParams
from bench.rollout.teacher_cache import TeacherTrajectories, load_teacher_trajectories
from bench.world import load_model, load_world


def pair_config(pair: Pair, steps: int, threads: int, out_dir, extra: list[str] = ()):
    return compose_config(our_overrides(pair, steps, threads, out_dir, extra))


def teacher_samples(cfg, world) -> TeacherTrajectories:
    """The teacher samples our SFT trains on (the same cache key as ``bench.train``)."""
    r = cfg.rollout
    source, _ = load_teacher_trajectories(
        cfg.world.cache_dir, world.teacher_path, lambda: load_model(world.teacher_path, trainable=False),
        world.tokenizer, [p.prompt for p in world.train], r.n, SamplingParams(r.temperature, r.top_p, r.max_new_tokens),
        seed=cfg.trainer.seed)
    return source


def prepare(pair: Pair, steps: int, threads: int, out_dir, extra: list[str] = ()) -> None:
    cfg = pair_config(pair, steps, threads, out_dir, extra)
    world = load_world(cfg)  # builds and caches the models when missing
    if cfg.algorithm.rollout_source == "teacher":
        teacher_samples(cfg, world)
