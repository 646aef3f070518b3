"""What the score phase hands to the update, and what the update hands to a policy loss."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from core.rollout import RolloutBatch


@dataclass
class ScoredBatch:
    rollout: RolloutBatch
    teacher_logp: torch.Tensor | None = None  # [B, R] log p_teacher of the sampled tokens (OPD)
    rewards: torch.Tensor | None = None  # [B] rewards the advantage uses (task reward + shaping)
    task_rewards: torch.Tensor | None = None  # [B] 0/1 verifiable task reward (logged for every algorithm)
    teacher_dist: torch.Tensor | None = None  # [B, R, V] teacher log-probs over the vocabulary (GKD losses)
    ref_logp: torch.Tensor | None = None  # [B, R] frozen reference policy log-probs (KL penalty)
    loss_mask: torch.Tensor | None = None  # [B, R] tokens that enter the loss (defaults to the response mask)

    def __post_init__(self):
        if self.loss_mask is None:
            self.loss_mask = self.rollout.response_mask

    def select(self, rows: torch.Tensor | slice) -> ScoredBatch:
        """A micro-batch view: the same fields restricted to ``rows``."""
        return ScoredBatch(rollout=self.rollout.select(rows), **{
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
            for f in fields(self) if f.name != "rollout"})


    @staticmethod
    def concat(batches: list[ScoredBatch], pad_id: int) -> ScoredBatch:
        """Rows of several scored batches in one (DAPO's dynamic sampling); per-token fields are padded
        on the right with zeros to the longest response."""
        rollout = RolloutBatch.concat([b.rollout for b in batches], pad_id)
        width = rollout.response_ids.shape[1]

        def join(name: str):
            parts = [getattr(b, name) for b in batches]
            if any(p is None for p in parts):
                return None
            if parts[0].dim() == 1:
                return torch.cat(parts)
            padded = []
            for p in parts:
                shape = (p.shape[0], width - p.shape[1], *p.shape[2:])
                padded.append(torch.cat([p, torch.zeros(shape, dtype=p.dtype)], dim=1))
            return torch.cat(padded)

        return ScoredBatch(rollout=rollout, **{f.name: join(f.name) for f in fields(ScoredBatch)
                                               if f.name != "rollout"})


@dataclass(frozen=True)
class LossTotals:
    """Whole-step normalisers, so that micro-batch losses sum to the full-batch loss."""

    tokens: float  # loss tokens in the step
    sequences: float  # sequences with at least one loss token
    norm_len: float  # Dr. GRPO's constant length normaliser (seq-mean-token-sum-norm)


@dataclass
class LossInputs:
    logp: torch.Tensor  # [b, R] student log-probs of the response tokens (with grad)
    old_logp: torch.Tensor  # [b, R] behaviour-policy log-probs (detached)
    advantages: torch.Tensor  # [b, R]
    mask: torch.Tensor  # [b, R] loss mask
    totals: LossTotals
    student_dist: torch.Tensor | None = None  # [b, R, V] student log-probs, with grad (needs_student_distribution)
    teacher_dist: torch.Tensor | None = None  # [b, R, V] teacher log-probs (needs_teacher_distribution)
    ref_logp: torch.Tensor | None = None  # [b, R] reference log-probs (algorithm.kl_coef > 0)
