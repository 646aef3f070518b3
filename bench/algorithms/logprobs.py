"""Per-token log-probabilities of given response tokens under a causal LM."""

from __future__ import annotations

import torch
import torch.utils.checkpoint


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


def response_hidden(model, input_ids, attention_mask, response_len: int) -> torch.Tensor:
    """Final (post-norm) hidden states ``[B, response_len, H]`` that predict the last ``response_len`` tokens.

    Goes through the model's own forward (so wrappers such as FSDP see an ordinary call) and asks for the
    logits of the last position only; HF's last hidden state is already normed."""
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask), output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1][:, -response_len - 1 : -1]


def chunked_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """``log softmax(lm_head(hidden))[targets]`` computed ``chunk`` positions at a time, each chunk
    recomputed in backward (activation checkpointing): fp32 logits exist for one chunk only, never for the
    whole ``[B, R, V]`` batch (at a 152k vocabulary that is most of a plain HF step's memory)."""
    head = model.get_output_embeddings()

    def piece(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logits = head(h).float()
        return logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)

    parts = [torch.utils.checkpoint.checkpoint(piece, hidden[:, s : s + chunk], targets[:, s : s + chunk],
                                               use_reentrant=False)
             for s in range(0, hidden.shape[1], chunk)]
    return torch.cat(parts, dim=1)


def token_logprobs(model, input_ids, attention_mask, response_len: int, chunk: int = 0,
                   full: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probs ``[B, R]`` of the response tokens, the full ``[B, R, V]`` log-softmax when ``full``).

    ``chunk > 0`` takes the chunked path unless the full distribution is needed (GKD losses); ``chunk == 0``
    is the plain path, bit-identical to ``response_logprobs``."""
    targets = input_ids[:, -response_len:]
    if full or chunk <= 0:
        dist = torch.log_softmax(response_logits(model, input_ids, attention_mask, response_len), dim=-1)
        return pick(dist, targets), (dist if full else None)
    hidden = response_hidden(model, input_ids, attention_mask, response_len)
    return chunked_logprobs(model, hidden, targets, chunk), None
