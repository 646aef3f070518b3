"""DAPO's batch-level pieces (Yu et al. 2025): dynamic sampling and overlong reward shaping, as batch stages.

Its advantage is GRPO's (``bench.algorithms.grpo``), its loss ``ppo_clip`` with clip-higher
(``clip_ratio_high`` 0.28 > ``clip_ratio_low`` 0.2) and ``token-mean`` aggregation; see
``experiments/algorithm/dapo.yaml``. The stages switch on from the algorithm config:
``algorithm.dynamic_sampling``, ``algorithm.overlong_buffer_len > 0`` and ``algorithm.overlong_filter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from bench.algorithms.scored import ScoredBatch
from bench.algorithms.stages import register_batch_stage


def informative_groups(rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: rows whose group's rewards are not all equal. A group with equal rewards has zero
    group-relative advantage, so it only dilutes the batch; dynamic sampling drops it."""
    keep = torch.zeros_like(groups, dtype=torch.bool)
    for g in groups.unique():
        rows = groups == g
        keep[rows] = bool((rewards[rows] != rewards[rows][0]).any())
    return keep


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer_len: int, factor: float) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to ``max_len - buffer_len`` tokens, then linearly down to
    ``-factor`` at ``max_len`` (verl's ``overlong_buffer``)."""
    if buffer_len <= 0:
        return torch.zeros_like(lengths, dtype=torch.float)
    if buffer_len >= max_len:
        raise ValueError(f"algorithm.overlong_buffer_len={buffer_len} must be below rollout.max_new_tokens={max_len}")
    expected = max_len - buffer_len
    return (-(lengths.float() - expected) / buffer_len * factor).clamp(max=0.0)


def check_dynamic_sampling(cfg) -> None:
    n, a = cfg.rollout.n, cfg.algorithm
    if n < 2 or a.max_gen_batches < 1:
        raise ValueError(f"algorithm.dynamic_sampling needs rollout.n >= 2 (got {n}) and "
                         f"algorithm.max_gen_batches >= 1 (got {a.max_gen_batches})")


@register_batch_stage("dynamic_sampling", applies=lambda cfg: cfg.algorithm.dynamic_sampling, collects=True,
                      check=check_dynamic_sampling)
def dynamic_sampling(next_round: Callable[[], ScoredBatch], cfg, pad_id: int) -> tuple[ScoredBatch, dict]:
    """Groups whose rewards are all equal are dropped and more prompts are drawn until
    ``trainer.prompts_per_step`` groups are kept or ``algorithm.max_gen_batches`` rounds ran (then the step
    trains on what it kept). Every generated token counts."""
    want = cfg.trainer.prompts_per_step
    kept, n_kept, rounds, tokens = [], 0, 0, 0
    while n_kept < want and rounds < cfg.algorithm.max_gen_batches:
        scored = next_round()
        rounds += 1
        tokens += scored.rollout.num_tokens
        groups = scored.rollout.prompt_index
        informative = informative_groups(scored.rewards, groups)
        keep_ids = groups[informative].unique()[: want - n_kept]
        n_kept += len(keep_ids)
        if len(keep_ids):
            kept.append(scored.select(torch.nonzero(torch.isin(groups, keep_ids)).squeeze(1)))
    info = {"generated_tokens": tokens, "dapo/gen_rounds": rounds, "dapo/kept_groups": n_kept}
    if not kept:  # nothing informative within the cap: the last round's advantages are all zero
        return scored, info
    return ScoredBatch.concat(kept, pad_id), info


@register_batch_stage("overlong_reward_shaping", applies=lambda cfg: cfg.algorithm.overlong_buffer_len > 0,
                      row_metrics=lambda scored: {"shaped_reward_mean": scored.rewards.float()})
def overlong_reward_shaping(scored: ScoredBatch, cfg) -> ScoredBatch:
    """The soft overlong punishment added to each response's reward (logged as ``shaped_reward_mean``)."""
    a = cfg.algorithm
    penalty = overlong_penalty(scored.rollout.response_mask.sum(1), cfg.rollout.max_new_tokens,
                               a.overlong_buffer_len, a.overlong_penalty_factor)
    return replace(scored, rewards=scored.rewards + penalty)


@register_batch_stage("overlong_filter", applies=lambda cfg: cfg.algorithm.overlong_filter)
def overlong_filter(scored: ScoredBatch, cfg) -> ScoredBatch:
    """Truncated responses (no EOS) contribute no loss."""
    return replace(scored, loss_mask=scored.loss_mask * (~scored.rollout.truncated).float().unsqueeze(1))
