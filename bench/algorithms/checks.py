"""Start-up checks of an algorithm config: a bad combination fails before any model is loaded, with a
message that names the key and the fix."""

from __future__ import annotations

from bench.algorithms.gkd import DIVERGENCES
from bench.algorithms.policy_loss import LOSS_AGG_MODES
from bench.algorithms.registry import get_advantage, get_policy_loss

ROLLOUT_SOURCES = ("student", "teacher")


def check_algorithm(cfg) -> None:
    a, n = cfg.algorithm, cfg.rollout.n
    advantage, loss = get_advantage(a.name), get_policy_loss(a.policy_loss)  # unknown names raise here
    if a.loss_agg not in LOSS_AGG_MODES:
        raise ValueError(f"unknown algorithm.loss_agg={a.loss_agg!r}; available: {LOSS_AGG_MODES}")
    if a.rollout_source not in ROLLOUT_SOURCES:
        raise ValueError(f"algorithm.rollout_source={a.rollout_source!r}; choose one of {ROLLOUT_SOURCES}")
    if a.name == "opd" and not a.needs_teacher:
        raise ValueError("algorithm.name=opd scores with the teacher: set algorithm.needs_teacher=true")
    if loss.needs_teacher_distribution and not a.needs_teacher:
        raise ValueError(f"algorithm.policy_loss={a.policy_loss} needs the teacher: set algorithm.needs_teacher=true")
    r = cfg.rollout
    if r.is_correction not in ("none", "tis"):
        raise ValueError(f"rollout.is_correction={r.is_correction!r}; choose none or tis")
    if r.is_correction == "tis":
        if a.policy_loss != "ppo_clip" or a.rollout_source != "student":
            raise ValueError("rollout.is_correction=tis weights the ppo_clip loss of on-policy samples; use "
                             f"algorithm.policy_loss=ppo_clip with student rollouts (got {a.policy_loss!r})")
        if r.temperature != 1.0 or r.top_p != 1.0:
            raise ValueError(f"rollout.is_correction=tis compares the engine's log-probs with the trainer's at T = 1: "
                             f"use rollout.temperature=1 and rollout.top_p=1 (got {r.temperature}, {r.top_p})")
    if r.vllm_enforce_eager not in ("auto", "on", "off"):
        raise ValueError(f"rollout.vllm_enforce_eager={r.vllm_enforce_eager!r}; choose auto, on or off")
    if a.gkd_divergence not in DIVERGENCES:
        raise ValueError(f"unknown algorithm.gkd_divergence={a.gkd_divergence!r}; available: {DIVERGENCES}")
    if a.name == "grpo" and n < 2:
        raise ValueError(f"algorithm.name=grpo with rollout.n={n}: group-relative advantages need >= 2 samples "
                         "per prompt (e.g. rollout.n=4 trainer.prompts_per_step=16)")
    if a.dynamic_sampling and (n < 2 or a.max_gen_batches < 1):
        raise ValueError(f"algorithm.dynamic_sampling needs rollout.n >= 2 (got {n}) and "
                         f"algorithm.max_gen_batches >= 1 (got {a.max_gen_batches})")
    if a.rollout_source == "teacher" and (advantage.needs_student_logp or a.policy_loss == "ppo_clip"):
        raise ValueError("algorithm.rollout_source=teacher trains on off-policy teacher samples: use "
                         "algorithm.name=sft algorithm.policy_loss=nll (PPO ratios need the student's own samples)")
    if not 0 <= a.overlong_buffer_len < cfg.rollout.max_new_tokens:
        raise ValueError(f"algorithm.overlong_buffer_len={a.overlong_buffer_len}; must be in "
                         f"[0, rollout.max_new_tokens={cfg.rollout.max_new_tokens})")
    if a.kl_coef < 0 or a.reward_coef < 0:
        raise ValueError(f"algorithm.kl_coef={a.kl_coef} / algorithm.reward_coef={a.reward_coef}: must be >= 0")
