"""Policy losses. ``ppo_clip``: the PPO clipped surrogate with asymmetric clip bounds (verl's "vanilla")."""

from __future__ import annotations

import torch

from bench.algorithms.registry import register_policy_loss


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, mode: str, total_tokens: float) -> torch.Tensor:
    """Reduce ``[B, R]`` token losses to a scalar. ``token-mean`` divides by the tokens of the whole step
    (``total_tokens``), so micro-batches sum to the full-batch token mean."""
    if mode == "token-mean":
        return (token_loss * mask).sum() / max(total_tokens, 1.0)
    raise ValueError(f"unknown algorithm.loss_agg={mode!r}; available: 'token-mean' (more arrive with issue 3)")


@register_policy_loss("ppo_clip")
def ppo_clip_loss(logp, old_logp, advantages, mask, cfg, total_tokens: float):
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1.0 - cfg.clip_ratio_low, 1.0 + cfg.clip_ratio_high)
    token_loss = torch.maximum(-advantages * ratio, -advantages * clipped)
    loss = aggregate(token_loss, mask, cfg.loss_agg, total_tokens)
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        # verl's definition: tokens where clipping actually binds (changes the loss), not merely out of range.
        frac_clipped = (((-advantages * clipped) > (-advantages * ratio)).float() * mask).sum() / n
    return loss, {"clip_frac": frac_clipped.item()}
