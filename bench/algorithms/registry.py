"""Registries: an algorithm is a small advantage function plus a policy loss, looked up by name.

Like verl's ``register_adv_est`` / ``register_policy_loss``: adding an algorithm means registering a
function here, never subclassing the trainer.
"""

from __future__ import annotations

from collections.abc import Callable

ADVANTAGES: dict[str, Callable] = {}
POLICY_LOSSES: dict[str, Callable] = {}


def register_advantage(name: str):
    """Register ``fn(scored: ScoredBatch, student_logp: Tensor[B, R]) -> Tensor[B, R]`` (token advantages)."""

    def deco(fn):
        if name in ADVANTAGES:
            raise ValueError(f"advantage {name!r} registered twice")
        ADVANTAGES[name] = fn
        return fn

    return deco


def register_policy_loss(name: str):
    """Register ``fn(logp, old_logp, advantages, mask, cfg) -> (loss, stats)``."""

    def deco(fn):
        if name in POLICY_LOSSES:
            raise ValueError(f"policy loss {name!r} registered twice")
        POLICY_LOSSES[name] = fn
        return fn

    return deco


def get_advantage(name: str) -> Callable:
    if name not in ADVANTAGES:
        raise ValueError(f"unknown algorithm.name={name!r}; registered: {sorted(ADVANTAGES)}")
    return ADVANTAGES[name]


def get_policy_loss(name: str) -> Callable:
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown algorithm.policy_loss={name!r}; registered: {sorted(POLICY_LOSSES)}")
    return POLICY_LOSSES[name]
