"""Per-token log-probabilities of given response tokens under a causal LM."""

from __future__ import annotations

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them (so training matches sampling)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def response_logits(model, input_ids, attention_mask, response_len: int) -> torch.Tensor:
    """fp32 logits ``[B, response_len, V]`` that predict the last ``response_len`` tokens of ``input_ids``.

    The row's full sequence is ``[left-padded prompt | response]``; token t is predicted from position t-1.
    """
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask)
    ).logits
    return logits[:, -response_len - 1 : -1].float()


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[targets]``: ``[B, R, V]`` and ``[B, R]`` -> ``[B, R]``."""
    return pick(torch.log_softmax(logits, dim=-1), targets)


def pick(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The ``[B, R]`` entries ``targets`` of full ``[B, R, V]`` log-probs."""
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def response_logprobs(model, input_ids, attention_mask, response_len: int) -> torch.Tensor:
    """Log-probs ``[B, response_len]`` of the last ``response_len`` tokens of ``input_ids``."""
    logits = response_logits(model, input_ids, attention_mask, response_len)
    return gather_logprobs(logits, input_ids[:, -response_len:])
