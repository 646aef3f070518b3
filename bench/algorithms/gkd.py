"""Distribution-matching distillation losses on the student's own samples (GKD, Agarwal et al. 2024).

Instead of a policy gradient through the sampled tokens, the student's full next-token distribution at
every response position is pulled towards the teacher's. ``algorithm.gkd_divergence`` picks the divergence
(TRL's ``generalized_jsd_loss`` conventions, so numbers compare with ``trl.GKDTrainer``):

- ``reverse_kl``: KL(student || teacher), mode-seeking (TRL beta = 1).
- ``forward_kl``: KL(teacher || student), mass-covering (TRL beta = 0).
- ``jsd``: beta * KL(teacher || M) + (1 - beta) * KL(student || M), M = beta * teacher + (1 - beta) * student,
  with ``algorithm.gkd_beta`` in (0, 1).
- ``topk_forward_kl``: forward KL over the teacher's ``algorithm.gkd_topk`` most likely tokens, the teacher
  renormalised over them (what a server returning top-k log-probs allows); the student keeps its
  full-vocabulary log-probs.
"""

from __future__ import annotations

import math

import torch

from bench.algorithms.policy_loss import aggregate
from bench.algorithms.registry import register_policy_loss
from bench.algorithms.scored import LossInputs

DIVERGENCES = ("reverse_kl", "forward_kl", "jsd", "topk_forward_kl")


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dimension from log-probabilities (0 * log 0 = 0)."""
    p = p_log.exp()
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1)


def token_divergence(student_log: torch.Tensor, teacher_log: torch.Tensor, kind: str, beta: float = 0.5,
                     topk: int = 8) -> torch.Tensor:
    """``[..., V]`` student and teacher log-probs -> ``[...]`` per-position divergence."""
    if kind == "reverse_kl":
        return _kl(student_log, teacher_log)
    if kind == "forward_kl":
        return _kl(teacher_log, student_log)
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"algorithm.gkd_beta={beta}; jsd needs 0 < beta < 1 (use forward_kl for 0, "
                             "reverse_kl for 1)")
        mix = torch.logsumexp(torch.stack([teacher_log + math.log(beta), student_log + math.log(1 - beta)]), 0)
        return beta * _kl(teacher_log, mix) + (1 - beta) * _kl(student_log, mix)
    if kind == "topk_forward_kl":
        if topk < 1:
            raise ValueError(f"algorithm.gkd_topk={topk}; must be >= 1")
        k = min(topk, teacher_log.shape[-1])
        top_vals, top_idx = teacher_log.topk(k, dim=-1)
        teacher_top = torch.log_softmax(top_vals, dim=-1)
        return _kl(teacher_top, student_log.gather(-1, top_idx))
    raise ValueError(f"unknown algorithm.gkd_divergence={kind!r}; available: {DIVERGENCES}")


@register_policy_loss("gkd", needs_student_distribution=True, needs_teacher_distribution=True)
def gkd_loss(inp: LossInputs, cfg):
    if inp.student_dist is None or inp.teacher_dist is None:
        raise ValueError("the gkd loss needs the student's and the teacher's distributions")
    div = token_divergence(inp.student_dist, inp.teacher_dist, cfg.gkd_divergence, cfg.gkd_beta, cfg.gkd_topk)
    loss = aggregate(div, inp.mask, cfg.loss_agg, inp.totals)
    with torch.no_grad():
        mean_div = ((div * inp.mask).sum() / inp.mask.sum().clamp(min=1)).item()
    return loss, {"clip_frac": 0.0, "divergence": mean_div}
