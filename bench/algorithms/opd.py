"""On-policy distillation: per-token advantage = log p_teacher(y_t) - log p_student(y_t) on the student's samples.

The sum of these advantages over a response is minus a single-sample estimate of the reverse KL
KL(student || teacher), so maximising it with a policy gradient pulls the student towards the teacher
on exactly the states the student visits. ``algorithm.reward_coef`` optionally adds the task reward
(times the coefficient) to every token's advantage, mixing distillation with RL.
"""

from __future__ import annotations

import torch

from bench.algorithms.registry import register_advantage
from bench.algorithms.scored import ScoredBatch


@register_advantage("opd", needs_student_logp=True, needs_teacher=True)
def opd_advantage(scored: ScoredBatch, student_logp: torch.Tensor, cfg=None) -> torch.Tensor:
    if scored.teacher_logp is None:
        raise ValueError("OPD needs teacher log-probs; set algorithm.needs_teacher=true")
    mask = scored.rollout.response_mask
    adv = scored.teacher_logp - student_logp.detach()
    coef = 0.0 if cfg is None else cfg.reward_coef
    if coef:
        if scored.rewards is None:
            raise ValueError("algorithm.reward_coef needs task rewards from the score phase")
        adv = adv + coef * scored.rewards.to(adv.dtype).unsqueeze(1)
    return adv * mask
