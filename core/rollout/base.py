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

    def select(self, rows: torch.Tensor | slice) -> RolloutBatch:
        """The rows ``rows`` (a slice or an index tensor) of this batch."""
        texts = self.texts[rows] if isinstance(rows, slice) else [self.texts[int(i)] for i in rows]
        return RolloutBatch(
            prompt_ids=self.prompt_ids[rows], prompt_mask=self.prompt_mask[rows],
            response_ids=self.response_ids[rows], response_mask=self.response_mask[rows],
            logprobs=None if self.logprobs is None else self.logprobs[rows], truncated=self.truncated[rows],
            texts=texts, prompt_index=self.prompt_index[rows],
        )

    def to(self, device) -> RolloutBatch:
        """Every tensor on ``device`` (the trainer's, under torchrun on GPUs); ``self`` when already there."""
        if self.response_ids.device == torch.device(device) and self.prompt_index.device == torch.device(device):
            return self
        return RolloutBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()})

    @staticmethod
    def concat(batches: list[RolloutBatch], pad_id: int) -> RolloutBatch:
        """Rows of several batches in one (prompts re-padded on the left, responses on the right); prompt
        indices are offset so that they keep pointing at distinct prompts."""
        p_len = max(b.prompt_ids.shape[1] for b in batches)
        r_len = max(b.response_ids.shape[1] for b in batches)

        def pad(t: torch.Tensor, width: int, value, left: bool) -> torch.Tensor:
            extra = width - t.shape[1]
            fill = torch.full((t.shape[0], extra), value, dtype=t.dtype)
            return torch.cat([fill, t] if left else [t, fill], dim=1)

        offsets, total = [], 0
        for b in batches:
            offsets.append(total)
            total += int(b.prompt_index.max().item()) + 1 if len(b.prompt_index) else 0
        with_lp = all(b.logprobs is not None for b in batches)
        return RolloutBatch(
            prompt_ids=torch.cat([pad(b.prompt_ids, p_len, pad_id, True) for b in batches]),
            prompt_mask=torch.cat([pad(b.prompt_mask, p_len, 0, True) for b in batches]),
            response_ids=torch.cat([pad(b.response_ids, r_len, pad_id, False) for b in batches]),
            response_mask=torch.cat([pad(b.response_mask, r_len, 0.0, False) for b in batches]),
            logprobs=torch.cat([pad(b.logprobs, r_len, 0.0, False) for b in batches]) if with_lp else None,
            truncated=torch.cat([b.truncated for b in batches]),
            texts=[t for b in batches for t in b.texts],
            prompt_index=torch.cat([b.prompt_index + o for b, o in zip(batches, offsets)]),
        )

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
