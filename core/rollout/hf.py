"""Rollouts with Hugging Face ``generate``: batched, left padding, EOS stopping, temperature / top-p."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.rollout.base import RolloutBatch, SamplingParams
from core.rollout.registry import register_engine

STATIC_CACHE_MODES = ("auto", "on", "off")


@dataclass
class HFSettings:
    """``rollout.hf``: options of the HF ``generate`` engine (``rollout.engine=hf``)."""

    static_cache: str = "auto"  # "auto" (a static KV cache on CUDA, 5x the dynamic cache's tokens/s at batch 64
    # on an H200; HF's dynamic cache on CPU) | "on" | "off"

    def __post_init__(self):
        if self.static_cache not in STATIC_CACHE_MODES:
            raise ValueError(f"rollout.hf.static_cache={self.static_cache!r}; choose auto, on or off")


class HFRolloutEngine:
    """Generates with the trainer's own module, so weights are always in sync (``sync_weights`` is a no-op)."""

    def __init__(self, model, tokenizer, static_cache: str = "auto"):
        if tokenizer.padding_side != "left":
            raise ValueError("HF rollouts need a left-padding tokenizer (tokenizer.padding_side = 'left')")
        HFSettings(static_cache)  # validates
        self.model = model
        self.tokenizer = tokenizer
        self.static_cache = static_cache

    def _cache_implementation(self) -> str | None:
        """A static KV cache on CUDA (fixed shapes, no per-step reallocation); HF's dynamic cache elsewhere."""
        on = self.static_cache == "on" or (self.static_cache == "auto" and self.model.device.type == "cuda")
        return "static" if on else None

    def sync_weights(self) -> None:
        return None

    @torch.no_grad()  # not inference_mode: its tensors would be unusable in the autograd update
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> RolloutBatch:
        tok = self.tokenizer
        rows = [p for p in prompts for _ in range(n)]
        # On the model's device, so that the same engine serves GPU evals; a no-op on CPU.
        enc = tok(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        greedy = params.temperature <= 0
        was_training = self.model.training
        self.model.eval()
        out = self.model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=None if greedy else params.top_p,
            top_k=None,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_logits=params.logprobs,
            cache_implementation=self._cache_implementation(),
        )
        self.model.train(was_training)
        prompt_len = enc["input_ids"].shape[1]
        logits = torch.stack(out.logits, dim=1) if params.logprobs else None
        return finish_batch(tok, enc, out.sequences[:, prompt_len:], logits, params, len(prompts), n)


@register_engine("hf", HFSettings)
def build_hf_engine(model, tokenizer, settings: HFSettings, seed: int = 0) -> HFRolloutEngine:
    """``rollout.engine=hf``: sampling is seeded by torch's global RNG, so ``seed`` is not needed."""
    return HFRolloutEngine(model, tokenizer, static_cache=settings.static_cache)


def finish_batch(tok, enc, response: torch.Tensor, logits: torch.Tensor | None, params: SamplingParams,
                 n_prompts: int, n: int) -> RolloutBatch:
    """Generated ids -> a RolloutBatch: mask up to and including the first EOS, decode, sampled-token
    log-probs under softmax(logits / temperature) when ``logits`` ([B, R, V]) are given."""
    is_eos = response == tok.eos_token_id
    # Keep tokens up to and including the first EOS; everything after it is padding.
    after_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    mask = (~after_eos).float()
    truncated = ~is_eos.any(dim=1)
    response = response.masked_fill(after_eos, tok.pad_token_id)
    logprobs = None
    if logits is not None:
        temp = params.temperature if params.temperature > 0 else 1.0
        lp = torch.log_softmax(logits.float() / temp, dim=-1)
        logprobs = lp.gather(-1, response.unsqueeze(-1)).squeeze(-1) * mask
    texts = tok.batch_decode(response.masked_fill(is_eos, tok.pad_token_id), skip_special_tokens=True)
    return RolloutBatch(
        prompt_ids=enc["input_ids"],
        prompt_mask=enc["attention_mask"],
        response_ids=response,
        response_mask=mask,
        logprobs=logprobs,
        truncated=truncated,
        texts=texts,
        prompt_index=torch.arange(n_prompts).repeat_interleave(n),
    )
