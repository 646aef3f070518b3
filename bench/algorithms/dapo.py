"""DAPO's batch-level pieces (Yu et al. 2025): dynamic sampling and overlong reward shaping.

Its advantage is GRPO's (``bench.algorithms.grpo``), its loss ``ppo_clip`` with clip-higher
(``clip_ratio_high`` 0.28 > ``clip_ratio_low`` 0.2) and ``token-mean`` aggregation; see
``experiments/algorithm/dapo.yaml``.
"""

from __future__ import annotations

import torch


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
