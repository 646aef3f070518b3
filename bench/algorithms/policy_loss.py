"""Policy losses over sampled tokens and how token losses become one scalar.

``ppo_clip``: the PPO clipped surrogate with asymmetric bounds (verl's "vanilla"; DAPO's clip-higher is
``clip_ratio_high > clip_ratio_low``), plus an optional k3 KL penalty to a frozen reference policy.
``nll``: advantage-weighted negative log-likelihood (SFT: weight 1 on every target token).
"""

from __future__ import annotations

import torch

from bench.algorithms.registry import register_policy_loss
from bench.algorithms.scored import LossInputs, LossTotals

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, mode: str, totals: LossTotals) -> torch.Tensor:
    """Reduce ``[b, R]`` token losses of one micro-batch to its share of the step's scalar loss.

    - ``token-mean``: sum over the step's loss tokens / their number (long responses weigh more; DAPO).
    - ``seq-mean-token-mean``: each sequence's token mean, averaged over sequences (original GRPO).
    - ``seq-mean-token-sum-norm``: each sequence's token sum / a constant length, averaged over sequences
      (Dr. GRPO: no length bias).
    Normalisers are whole-step totals, so micro-batches add up to the full-batch value.
    """
    if mode == "token-mean":
        return (token_loss * mask).sum() / max(totals.tokens, 1.0)
    if mode == "seq-mean-token-mean":
        per_seq = (token_loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return per_seq.sum() / max(totals.sequences, 1.0)
    if mode == "seq-mean-token-sum-norm":
        per_seq = (token_loss * mask).sum(dim=1) / totals.norm_len
        return per_seq.sum() / max(totals.sequences, 1.0)
    raise ValueError(f"unknown algorithm.loss_agg={mode!r}; available: {LOSS_AGG_MODES}")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(student || reference) estimate ``exp(r - s) - (r - s) - 1`` (verl's ``low_var_kl``):
    non-negative, unbiased under the student's samples. Clamped like verl for numerical safety."""
    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


@register_policy_loss("ppo_clip", importance_ratio=True)
def ppo_clip_loss(inp: LossInputs, cfg):
    ratio = torch.exp(inp.logp - inp.old_logp)
    adv = inp.advantages
    clipped = ratio.clamp(1.0 - cfg.clip_ratio_low, 1.0 + cfg.clip_ratio_high)
    token_loss = torch.maximum(-adv * ratio, -adv * clipped)
    stats = {}
    if cfg.kl_coef > 0:
        if inp.ref_logp is None:
            raise ValueError("algorithm.kl_coef > 0 needs reference log-probs (the trainer loads the reference)")
        kl = k3_kl(inp.logp, inp.ref_logp)
        token_loss = token_loss + cfg.kl_coef * kl
        stats["kl_ref"] = ((kl.detach() * inp.mask).sum() / inp.mask.sum().clamp(min=1)).item()
    loss = aggregate(token_loss, inp.mask, cfg.loss_agg, inp.totals)
    with torch.no_grad():
        n = inp.mask.sum().clamp(min=1)
        # verl's definition: tokens where clipping actually binds (changes the loss), not merely out of range.
        stats["clip_frac"] = (((-adv * clipped) > (-adv * ratio)).float() * inp.mask).sum().item() / n.item()
    return loss, stats


@register_policy_loss("nll")
def nll_loss(inp: LossInputs, cfg):
    """``-A * log p`` per token: plain cross-entropy when the advantages are 1 (SFT)."""
    token_loss = -inp.advantages * inp.logp
    return aggregate(token_loss, inp.mask, cfg.loss_agg, inp.totals), {"clip_frac": 0.0}
