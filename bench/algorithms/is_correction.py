"""Truncated importance sampling (TIS) for the rollout / trainer mismatch.

A fast rollout engine (vLLM: other kernels, another dtype, a stale weight copy) samples from a policy that is
slightly off the trainer's: ``pi_rollout != pi_trainer`` token by token. The policy gradient is then
off-policy, and the per-token correction is the importance ratio ``pi_trainer / pi_rollout``, truncated at a
cap ``C`` so that a few badly mismatched tokens cannot dominate the update:

    w_t = min(exp(logp_trainer_t - logp_rollout_t), C)

``w_t`` is a constant (no gradient flows through it) that multiplies token t's policy-gradient loss.
``logp_trainer`` must be the trainer's log-probs of the sampled tokens under the same distribution the engine
sampled from (the same temperature; with ``top_p < 1`` vLLM's processed log-probs are renormalised over
the nucleus), ``logp_rollout`` the engine's (``RolloutBatch.logprobs``, sampled with
``SamplingParams(logprobs=True)``).
"""

from __future__ import annotations

import math

import torch


def truncated_is_weights(logp_trainer: torch.Tensor, logp_rollout: torch.Tensor, mask: torch.Tensor,
                         cap: float = 2.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level truncated IS weights ``min(exp(logp_trainer - logp_rollout), cap)`` and mismatch statistics.

    Args:
        logp_trainer: ``[B, R]`` the trainer's log-probs of the sampled tokens (detached here).
        logp_rollout: ``[B, R]`` the rollout engine's log-probs of the same tokens.
        mask: ``[B, R]`` which tokens count (the loss mask); weights are 0 outside it.
        cap: the truncation ``C`` (> 0; ``math.inf`` = untruncated IS).

    Returns:
        ``(weights, stats)``: weights ``[B, R]`` float, detached; stats over the masked tokens, for logging:
        ``is/mismatch_abs_mean`` and ``is/mismatch_abs_max`` (``|logp_trainer - logp_rollout|``, nats),
        ``is/mismatch_mean`` (signed), ``is/mismatch_kl`` (k3 estimate of KL(rollout || trainer), per token),
        ``is/truncated_frac`` (tokens whose ratio exceeded the cap), ``is/weight_mean``, ``is/tokens``.
    """
    if not cap > 0:
        raise ValueError(f"truncated IS cap must be > 0, got {cap}")
    if logp_rollout is None:
        raise ValueError("no rollout log-probs: sample with SamplingParams(logprobs=True) to use IS correction")
    if logp_trainer.shape != logp_rollout.shape or logp_trainer.shape != mask.shape:
        raise ValueError(f"shape mismatch: trainer {tuple(logp_trainer.shape)}, rollout "
                         f"{tuple(logp_rollout.shape)}, mask {tuple(mask.shape)}")
    with torch.no_grad():
        m = mask.float()
        keep = m > 0
        # Masked positions get delta 0 (ratio 1) so that padding's -inf / garbage never reaches exp().
        delta = torch.where(keep, logp_trainer.detach().float() - logp_rollout.float(), torch.zeros_like(m))
        ratio = torch.exp(delta)
        weights = ratio.clamp(max=cap) * m if math.isfinite(cap) else ratio * m
        n = int(keep.sum().item())
        if n == 0:
            return weights, {"is/mismatch_abs_mean": 0.0, "is/mismatch_abs_max": 0.0, "is/mismatch_mean": 0.0,
                             "is/mismatch_kl": 0.0, "is/truncated_frac": 0.0, "is/weight_mean": 0.0,
                             "is/tokens": 0}
        d = delta[keep]
        stats = {
            "is/mismatch_abs_mean": d.abs().mean().item(),
            "is/mismatch_abs_max": d.abs().max().item(),
            "is/mismatch_mean": d.mean().item(),
            # k3: E_rollout[r - 1 - log r] with r = pi_trainer / pi_rollout, >= 0 per token.
            "is/mismatch_kl": (torch.expm1(d) - d).mean().item(),
            "is/truncated_frac": (ratio[keep] > cap).float().mean().item(),
            "is/weight_mean": weights[keep].mean().item(),
            "is/tokens": n,
        }
    return weights, stats
