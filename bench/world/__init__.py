"""Everything a run needs from its world: models, tokenizer, prompt sets and the success criterion.

``world.kind=tiny`` (tiny/: built locally and cached) or ``hub`` (hub.py: paper-scale models and benchmark
prompts)."""

from __future__ import annotations

from bench.world.base import World, check_same_vocabulary, load_model

__all__ = ["World", "check_same_vocabulary", "load_model", "load_world"]


def load_world(cfg) -> World:
    kind = cfg.world.kind
    if kind == "hub":
        from bench.world.hub import load_hub_world  # lazy: the tiny world never needs the benchmark stack

        return load_hub_world(cfg)
    if kind == "tiny":
        from bench.world.tiny.world import load_tiny_world

        return load_tiny_world(cfg)
    raise ValueError(f"world.kind={kind!r}; choose 'tiny' (built locally) or 'hub' (paper-scale models)")
