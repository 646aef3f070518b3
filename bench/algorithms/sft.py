"""SFT on teacher trajectories: weight 1 on every response token, used with the ``nll`` loss.

The rollouts come from a cached set of teacher samples for the same prompts
(``algorithm.rollout_source=teacher``, see ``bench.world.teacher_samples``), so SFT runs through the same
loop, logging, evaluation and checkpoints as the on-policy algorithms.
"""

from __future__ import annotations

from bench.algorithms.registry import register_advantage
from bench.algorithms.scored import ScoredBatch


@register_advantage("sft")
def sft_weights(scored: ScoredBatch, student_logp=None, cfg=None):
    return scored.rollout.response_mask.clone()
