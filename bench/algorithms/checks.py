"""Start-up checks of an algorithm config: a bad combination fails before any model is loaded, with a
message that names the key and the fix.

No algorithm is special-cased by name: the checks read what the registered functions declare
(``register_advantage(needs_teacher=, min_group_size=)``, ``register_policy_loss(importance_ratio=,
needs_teacher_distribution=)``), the active batch stages' own checks, and each rollout engine's settings.
"""

from __future__ import annotations

from bench.algorithms.gkd import DIVERGENCES
from bench.algorithms.policy_loss import LOSS_AGG_MODES
from bench.algorithms.registry import get_advantage, get_policy_loss
from bench.algorithms.stages import active_batch_stages
from core.rollout import engine_settings, get_engine, registered_engines

ROLLOUT_SOURCES = ("student", "teacher")


def check_algorithm(cfg) -> None:
    a, n = cfg.algorithm, cfg.rollout.n
    advantage, loss = get_advantage(a.name), get_policy_loss(a.policy_loss)  # unknown names raise here
    if a.loss_agg not in LOSS_AGG_MODES:
        raise ValueError(f"unknown algorithm.loss_agg={a.loss_agg!r}; available: {LOSS_AGG_MODES}")
    if a.rollout_source not in ROLLOUT_SOURCES:
        raise ValueError(f"algorithm.rollout_source={a.rollout_source!r}; choose one of {ROLLOUT_SOURCES}")
    if advantage.needs_teacher and not a.needs_teacher:
        raise ValueError(f"algorithm.name={a.name} scores with the teacher: set algorithm.needs_teacher=true")
    if loss.needs_teacher_distribution and not a.needs_teacher:
        raise ValueError(f"algorithm.policy_loss={a.policy_loss} needs the teacher: set algorithm.needs_teacher=true")
    check_rollout(cfg)
    if a.gkd_divergence not in DIVERGENCES:
        raise ValueError(f"unknown algorithm.gkd_divergence={a.gkd_divergence!r}; available: {DIVERGENCES}")
    if n < advantage.min_group_size:
        raise ValueError(f"algorithm.name={a.name} with rollout.n={n}: group-relative advantages need >= "
                         f"{advantage.min_group_size} samples per prompt "
                         "(e.g. rollout.n=4 trainer.prompts_per_step=16)")
    for stage in active_batch_stages(cfg):
        if stage.check is not None:
            stage.check(cfg)
    if a.rollout_source == "teacher" and (advantage.needs_student_logp or loss.importance_ratio):
        raise ValueError("algorithm.rollout_source=teacher trains on off-policy teacher samples: use "
                         "algorithm.name=sft algorithm.policy_loss=nll (PPO ratios need the student's own samples)")
    if not 0 <= a.overlong_buffer_len < cfg.rollout.max_new_tokens:
        raise ValueError(f"algorithm.overlong_buffer_len={a.overlong_buffer_len}; must be in "
                         f"[0, rollout.max_new_tokens={cfg.rollout.max_new_tokens})")
    if a.kl_coef < 0 or a.reward_coef < 0:
        raise ValueError(f"algorithm.kl_coef={a.kl_coef} / algorithm.reward_coef={a.reward_coef}: must be >= 0")


def check_rollout(cfg) -> None:
    """The engine is registered, every engine's settings block is valid, importance correction fits the loss."""
    a, r = cfg.algorithm, cfg.rollout
    if r.is_correction not in ("none", "tis"):
        raise ValueError(f"rollout.is_correction={r.is_correction!r}; choose none or tis")
    if r.is_correction == "tis":
        if not get_policy_loss(a.policy_loss).importance_ratio or a.rollout_source != "student":
            raise ValueError("rollout.is_correction=tis weights the ppo_clip loss of on-policy samples; use "
                             f"algorithm.policy_loss=ppo_clip with student rollouts (got {a.policy_loss!r})")
        if r.temperature != 1.0 or r.top_p != 1.0:
            raise ValueError(f"rollout.is_correction=tis compares the engine's log-probs with the trainer's at T = 1: "
                             f"use rollout.temperature=1 and rollout.top_p=1 (got {r.temperature}, {r.top_p})")
    get_engine(r.engine)  # unknown names raise here, listing the registered engines
    for name in registered_engines():
        if name in r:  # the block rollout.<name>: its dataclass validates the values
            engine_settings(name, r[name])
