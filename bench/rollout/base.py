"""The rollout interface every engine implements (Hugging Face now, vLLM later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    logprobs: bool = True  # return log-probs of the sampled tokens under softmax(logits / temperature)


@dataclass
class RolloutBatch:
    """``B = len(prompts) * n`` rows; prompts left-padded, responses right-padded.

    ``response_mask`` covers the generated tokens up to and including EOS; ``truncated`` marks rows that hit
    ``max_new_tokens`` without EOS. ``prompt_index[i]`` is the prompt row ``i`` was sampled for.
    """

    prompt_ids: torch.Tensor  # [B, P] long
    prompt_mask: torch.Tensor  # [B, P] long
    response_ids: torch.Tensor  # [B, R] long
    response_mask: torch.Tensor  # [B, R] float
    logprobs: torch.Tensor | None  # [B, R] float, 0 where masked
    truncated: torch.Tensor  # [B] bool
    texts: list[str]
    prompt_index: torch.Tensor  # [B] long

    @property
    def num_tokens(self) -> int:
        return int(self.response_mask.sum().item())

    def full_sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[prompt | response]`` ids and attention mask for a teacher or trainer forward pass."""
        ids = torch.cat([self.prompt_ids, self.response_ids], dim=1)
        mask = torch.cat([self.prompt_mask, self.response_mask.long()], dim=1)
        return ids, mask


class RolloutEngine(Protocol):
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> RolloutBatch: ...

    def sync_weights(self) -> None:
        """Make the engine sample from the trainer's current weights (after a step, extrapolation or rollback)."""
        ...
