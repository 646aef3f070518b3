"""``trainer.dry_run=true``: check a run's config and models without loading weights, and size it.

Resolves the config (interpolations included), reads the student's and teacher's configs and tokenizers
(local folders or the hub), checks that they share a vocabulary, counts parameters on the meta device, and
prints a memory estimate per GPU for the world size of this launch and for 1/2/4/8/16/32 GPUs, so a
paper-scale preset can be sanity-checked on a laptop before a cluster job is queued.

The memory model is deliberately simple (see ``estimate_memory``); it is a first check, not a promise.
"""

from __future__ import annotations

import json
import os

import torch
from omegaconf import OmegaConf

GIB = 1024**3
PROMPT_TOKENS = 1024  # assumed prompt length (DeepMath/AIME prompts with the chat template stay below)


def _model_config(path: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except OSError as exc:
        raise ValueError(f"dry run: cannot read the config of {path!r} ({str(exc)[:200]}). Offline, point "
                         "world.student_path / world.teacher_path at local HF-format folders") from exc


def count_parameters(config) -> int:
    """Parameters of the model ``config`` describes, built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# fp32 logits-sized buffers alive at the peak of the log-prob backward, measured on CPU at 8 x 1024 tokens and a
# 151,936 vocabulary (results/perf/real_vocab_memory.json): the plain path holds ~3 (the full-sequence
# logits HF returns, the log-softmax saved for backward, its gradient); the chunked path ~5 per chunk (the
# recomputed chunk logits, logsumexp's softmax, the gather's and the sum's gradients, the result).
LOGITS_COPIES = {"plain": 3, "chunked": 5}


def estimate_memory(cfg, student_cfg, student_params: int, teacher_params: int, world_size: int,
                    prompt_tokens: int = PROMPT_TOKENS) -> dict:
    """GiB per GPU: FSDP-sharded fp32 master weights, grads and AdamW moments (16 B/param) of the student, the
    teacher sharded the same way (``trainer.dist_param_dtype`` bytes per parameter; fp32 on one process, where
    nothing converts it), and one micro-batch's activations and logits.

    Activations: with ``trainer.activation_checkpointing`` one bf16 hidden state per layer per token plus one
    layer's working set, without it every layer's working set. Logits: ``LOGITS_COPIES`` fp32 buffers of
    ``trainer.logprob_chunk`` positions (chunked) or of the whole sequence, prompt included (the plain path: HF
    computes every position's logits); the rollout engine's KV cache (vLLM) is not included. Checked against a
    measured CPU peak by bench/studies/perf/real_vocab_memory.py."""
    mb = cfg.trainer.micro_batch_size
    tokens = mb * (prompt_tokens + cfg.rollout.max_new_tokens)
    hidden, layers = student_cfg.hidden_size, student_cfg.num_hidden_layers
    inter = getattr(student_cfg, "intermediate_size", 4 * hidden)
    vocab = student_cfg.vocab_size
    states = 16 * student_params / world_size
    teacher_bytes = 2 if world_size > 1 and cfg.trainer.dist_param_dtype == "bf16" else 4
    teacher = teacher_bytes * teacher_params / world_size
    checkpoints = 2 * tokens * hidden * layers
    working = tokens * (10 * hidden + 3 * inter) * 2
    chunk = getattr(cfg.trainer, "logprob_chunk", 0) or 0
    if chunk > 0:
        logits = 4 * mb * min(chunk, cfg.rollout.max_new_tokens) * vocab * LOGITS_COPIES["chunked"]
    else:
        logits = 4 * tokens * vocab * LOGITS_COPIES["plain"]
    activations = checkpoints + working if cfg.trainer.activation_checkpointing else working * layers
    parts = {"student_states": states, "teacher_weights": teacher, "activations": activations,
             "logits": logits}
    return {k: round(v / GIB, 2) for k, v in parts.items()} | {"total": round(sum(parts.values()) / GIB, 2)}


def dry_run(cfg) -> dict:
    """Print and return the dry-run report; raises a clear error on a bad config or unreachable model."""
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation must resolve
    w = cfg.world
    if w.kind == "tiny":
        from bench.world.tiny.build import model_key

        report = {"world": "tiny", "models": {r: model_key(w, r) for r in ("student", "teacher")},
                  "note": "tiny-world models are built and cached on first use (make build-world)"}
        print(json.dumps(report, indent=2))
        return report
    from bench.world import check_same_vocabulary
    from bench.world.hub import check_paths, load_tokenizer

    check_paths(w)
    configs = {role: _model_config(getattr(w, f"{role}_path")) for role in ("student", "teacher")}
    toks = {role: load_tokenizer(getattr(w, f"{role}_path")) for role in ("student", "teacher")}
    check_same_vocabulary(toks["student"], toks["teacher"], configs["student"].vocab_size,
                          configs["teacher"].vocab_size)
    params = {role: count_parameters(c) for role, c in configs.items()}
    here = int(os.environ.get("WORLD_SIZE", "1"))
    sizes = sorted({here, 1, 2, 4, 8, 16, 32})
    report = {
        "world": "hub", "student": w.student_path, "teacher": w.teacher_path,
        "parameters": params, "vocab_size": configs["student"].vocab_size,
        "batch": {"prompts_per_step": cfg.trainer.prompts_per_step, "n": cfg.rollout.n,
                  "micro_batch_size": cfg.trainer.micro_batch_size, "max_new_tokens": cfg.rollout.max_new_tokens},
        "world_size_of_this_launch": here,
        "memory_gib_per_gpu": {str(n): estimate_memory(cfg, configs["student"], params["student"],
                                                       params["teacher"], n) for n in sizes},
        "assumptions": f"prompts <= {PROMPT_TOKENS} tokens; " + " ".join((estimate_memory.__doc__ or "").split()),
    }
    print(json.dumps(report, indent=2))
    return report
