"""What the score phase hands to the loss: the rollout plus whatever the algorithm's scorers produced."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.rollout import RolloutBatch


@dataclass
class ScoredBatch:
    rollout: RolloutBatch
    teacher_logp: torch.Tensor | None = None  # [B, R] log p_teacher of the sampled tokens (OPD)
    rewards: torch.Tensor | None = None  # [B] task rewards (RL algorithms, logging)

    def select(self, rows: torch.Tensor | slice) -> "ScoredBatch":
        """A micro-batch view: the same fields restricted to ``rows``."""
        r = self.rollout
        sub = type(r)(
            prompt_ids=r.prompt_ids[rows], prompt_mask=r.prompt_mask[rows], response_ids=r.response_ids[rows],
            response_mask=r.response_mask[rows], logprobs=None if r.logprobs is None else r.logprobs[rows],
            truncated=r.truncated[rows], texts=r.texts[rows] if isinstance(rows, slice) else [r.texts[i] for i in rows],
            prompt_index=r.prompt_index[rows],
        )
        return ScoredBatch(
            rollout=sub,
            teacher_logp=None if self.teacher_logp is None else self.teacher_logp[rows],
            rewards=None if self.rewards is None else self.rewards[rows],
        )
