"""On-policy distillation: per-token advantage = log p_teacher(y_t) - log p_student(y_t) on the student's samples.

The sum of these advantages over a response is minus a single-sample estimate of the reverse KL
KL(student || teacher), so maximising it with a policy gradient pulls the student towards the teacher
on exactly the states the student visits.
"""

from __future__ import annotations

import torch

from bench.algorithms.registry import register_advantage
from bench.algorithms.scored import ScoredBatch


@register_advantage("opd")
def opd_advantage(scored: ScoredBatch, student_logp: torch.Tensor) -> torch.Tensor:
    if scored.teacher_logp is None:
        raise ValueError("OPD needs teacher log-probs; set algorithm.needs_teacher=true")
    mask = scored.rollout.response_mask
    return (scored.teacher_logp - student_logp.detach()) * mask
