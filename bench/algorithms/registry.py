"""Registries: an algorithm is a small advantage function plus a policy loss, looked up by name.

Like verl's ``register_adv_est`` / ``register_policy_loss``: adding an algorithm means registering a
function here, never subclassing the trainer. What a function needs from the trainer is declared at
registration (keyword flags stored on the function), so the loop computes only what is used, and the
start-up checks (``bench.algorithms.checks``) refuse configs that cannot give it (no algorithm names there).
"""

from __future__ import annotations

from collections.abc import Callable

ADVANTAGES: dict[str, Callable] = {}
POLICY_LOSSES: dict[str, Callable] = {}


def register_advantage(name: str, *, needs_student_logp: bool = False, needs_teacher: bool = False,
                       min_group_size: int = 1):
    """Register ``fn(scored: ScoredBatch, student_logp: Tensor[B, R] | None, cfg) -> Tensor[B, R]``.

    ``needs_student_logp``: the advantage depends on the behaviour policy's per-token log-probs (OPD). The
    trainer then calls it per micro-batch with those log-probs, so it must act row by row. Otherwise it is
    called once on the whole step's batch with ``student_logp=None`` (group statistics, e.g. GRPO).
    ``needs_teacher``: it reads the teacher's log-probs (OPD): ``algorithm.needs_teacher`` must be true.
    ``min_group_size``: it compares the samples of one prompt (GRPO: 2): ``rollout.n`` must be at least this.
    """
    if min_group_size < 1:
        raise ValueError(f"advantage {name!r}: min_group_size={min_group_size} must be >= 1")

    def deco(fn):
        if name in ADVANTAGES:
            raise ValueError(f"advantage {name!r} registered twice")
        fn.needs_student_logp = needs_student_logp
        fn.needs_teacher = needs_teacher
        fn.min_group_size = min_group_size
        ADVANTAGES[name] = fn
        return fn

    return deco


def register_policy_loss(name: str, *, needs_student_distribution: bool = False,
                         needs_teacher_distribution: bool = False, importance_ratio: bool = False):
    """Register ``fn(inputs: LossInputs, cfg: AlgorithmConfig) -> (loss, stats: dict[str, float])``.

    ``needs_student_distribution``: the loss reads the student's full-vocabulary log-probs over the response.
    ``needs_teacher_distribution``: the score phase stores the teacher's full-vocabulary log-probs (so
    ``algorithm.needs_teacher`` must be true).
    ``importance_ratio``: the loss weighs advantages by the ratio pi_theta / pi_old of the student's own samples
    (PPO): it needs on-policy rollouts, and it is the loss ``rollout.is_correction=tis`` reweights.
    """

    def deco(fn):
        if name in POLICY_LOSSES:
            raise ValueError(f"policy loss {name!r} registered twice")
        fn.needs_student_distribution = needs_student_distribution
        fn.needs_teacher_distribution = needs_teacher_distribution
        fn.importance_ratio = importance_ratio
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
