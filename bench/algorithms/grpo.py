"""GRPO: group-relative advantages from verifiable rewards (also DAPO's estimator).

Each prompt's ``rollout.n`` samples form a group; a sample's advantage is its reward minus the group mean,
divided by the group's standard deviation when ``algorithm.norm_adv_by_std`` (GRPO; off in Dr. GRPO),
and is the same for every token of the response. Groups whose rewards are all equal get zero advantage.
"""

from __future__ import annotations

import torch

from bench.algorithms.registry import register_advantage
from bench.algorithms.scored import ScoredBatch

EPS = 1e-6  # verl's epsilon in the std normalisation


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, norm_by_std: bool) -> torch.Tensor:
    """``[B]`` rewards and group ids -> ``[B]`` advantages (torch.std's unbiased estimate, as verl)."""
    rewards = rewards.double()
    adv = torch.zeros_like(rewards)
    for g in groups.unique():
        rows = groups == g
        r = rewards[rows]
        if r.numel() == 1:  # verl: a lone sample has mean 0 and std 1, i.e. its raw reward
            adv[rows] = r
            continue
        centred = r - r.mean()
        adv[rows] = centred / (r.std() + EPS) if norm_by_std else centred
    return adv.float()


@register_advantage("grpo", min_group_size=2)
def grpo_advantage(scored: ScoredBatch, student_logp=None, cfg=None) -> torch.Tensor:
    if scored.rewards is None:
        raise ValueError("GRPO needs rewards from the score phase")
    norm = True if cfg is None else cfg.norm_adv_by_std
    adv = group_advantages(scored.rewards, scored.rollout.prompt_index, norm)
    return adv.unsqueeze(1) * scored.rollout.response_mask
