"""A CPU fast path for sampling from small Qwen3 models: the decode loop written out, KV cache preallocated.

On the tiny world HF ``generate`` spends most of each decode step in per-module Python overhead (the model
itself is ~1M parameters), and rollouts are half of a training step. This engine runs the same maths as
``transformers.Qwen3ForCausalLM`` (same RMSNorm formula, rotary module, SDPA, sampling as HF's
temperature / top-p warpers then ``torch.multinomial``) directly on the model's own parameters, so it stays
in sync with the trainer without copying weights. ``tests/core/test_rollout.py`` checks it against HF:
logits to 1e-5 and identical greedy outputs. Select it with ``rollout.engine=qwen3_fast``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.rollout.base import RolloutBatch, SamplingParams
from core.rollout.hf import finish_batch
from core.rollout.registry import register_engine


def _rms(x: torch.Tensor, norm) -> torch.Tensor:
    """Qwen3RMSNorm's exact formula (fp32 variance), without the module call."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x32.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """HF's TopPLogitsWarper: drop the least likely tokens whose cumulative mass is <= 1 - top_p."""
    if top_p >= 1.0:
        return scores
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cum <= (1 - top_p)
    remove[..., -1:] = False  # always keep the most likely token
    return scores.masked_fill(remove.scatter(1, sorted_idx, remove), float("-inf"))


class Qwen3FastEngine:
    def __init__(self, model, tokenizer):
        if getattr(model.config, "model_type", None) != "qwen3":
            raise ValueError(f"rollout.engine=qwen3_fast supports Qwen3 models only, got "
                             f"model_type={getattr(model.config, 'model_type', None)!r}; use rollout.engine=hf")
        if tokenizer.padding_side != "left":
            raise ValueError("rollouts need a left-padding tokenizer (tokenizer.padding_side = 'left')")
        self.model, self.tokenizer = model, tokenizer

    def sync_weights(self) -> None:
        return None  # reads the trainer's parameters directly

    def _forward(self, ids, pos, start: int, key_valid, caches) -> torch.Tensor:
        """Logits of the last position for ``ids`` [B, t] at cache offset ``start``; fills the KV cache."""
        m, cfg = self.model.model, self.model.config
        B, t = ids.shape
        end = start + t
        h = m.embed_tokens(ids)
        cos, sin = m.rotary_emb(h, pos)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q_idx = start + torch.arange(t)
        k_idx = torch.arange(end)
        causal = k_idx[None, :] <= q_idx[:, None]
        # A query may always see itself, so left-padding positions never have an all-masked row (NaNs).
        mask = (key_valid[:, None, None, :end] & causal) | (k_idx[None, :] == q_idx[:, None])
        hq, hkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        for layer, (kc, vc) in zip(m.layers, caches):
            att = layer.self_attn
            x = _rms(h, layer.input_layernorm)
            q = _rms(att.q_proj(x).view(B, t, hq, d), att.q_norm).transpose(1, 2)
            k = _rms(att.k_proj(x).view(B, t, hkv, d), att.k_norm).transpose(1, 2)
            v = att.v_proj(x).view(B, t, hkv, d).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            kc[:, :, start:end] = k * cos + _rotate_half(k) * sin
            vc[:, :, start:end] = v
            o = F.scaled_dot_product_attention(q, kc[:, :, :end], vc[:, :, :end], attn_mask=mask,
                                               scale=att.scaling, enable_gqa=hq != hkv)
            h = h + att.o_proj(o.transpose(1, 2).reshape(B, t, hq * d))
            x = _rms(h, layer.post_attention_layernorm)
            mlp = layer.mlp
            h = h + mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
        return self.model.lm_head(_rms(h[:, -1:], m.norm))[:, -1].float()

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> RolloutBatch:
        tok, cfg = self.tokenizer, self.model.config
        enc = tok([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        ids, am = enc["input_ids"], enc["attention_mask"]
        B, P = ids.shape
        T = params.max_new_tokens
        dtype = self.model.lm_head.weight.dtype
        caches = [(torch.zeros(B, cfg.num_key_value_heads, P + T, cfg.head_dim, dtype=dtype),
                   torch.zeros(B, cfg.num_key_value_heads, P + T, cfg.head_dim, dtype=dtype))
                  for _ in range(cfg.num_hidden_layers)]
        key_valid = torch.zeros(B, P + T, dtype=torch.bool)
        key_valid[:, :P] = am.bool()
        pos = (am.long().cumsum(-1) - 1).masked_fill(am == 0, 0)  # as HF generate: left padding skipped
        greedy = params.temperature <= 0
        out = torch.full((B, T), tok.pad_token_id, dtype=torch.long)
        unfinished = torch.ones(B, dtype=torch.bool)
        all_logits = []
        logits = self._forward(ids, pos, 0, key_valid, caches)
        next_pos = pos[:, -1:] + 1
        steps = 0
        for step in range(T):
            if params.logprobs:
                all_logits.append(logits)
            if greedy:
                nxt = logits.argmax(dim=-1)
            else:
                scores = top_p_filter(logits / params.temperature, params.top_p)
                nxt = torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, tok.pad_token_id))
            out[:, step] = nxt
            steps = step + 1
            unfinished &= nxt != tok.eos_token_id
            if not unfinished.any() or step == T - 1:
                break
            key_valid[:, P + step] = True
            logits = self._forward(nxt[:, None], next_pos, P + step, key_valid, caches)
            next_pos = next_pos + 1
        logits_t = torch.stack(all_logits, dim=1) if params.logprobs else None
        return finish_batch(tok, enc, out[:, :steps], logits_t, params, len(prompts), n)


@register_engine("qwen3_fast")
def build_qwen3_fast_engine(model, tokenizer, settings=None, seed: int = 0) -> Qwen3FastEngine:
    """``rollout.engine=qwen3_fast``: no options; sampling is seeded by torch's global RNG like hf's."""
    return Qwen3FastEngine(model, tokenizer)
