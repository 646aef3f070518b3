"""Rollout engines: generate n samples per prompt with per-token log-probs, behind one interface."""

from core.rollout.base import RolloutBatch, RolloutEngine, SamplingParams
from core.rollout.hf import HFRolloutEngine
from core.rollout.qwen3_fast import Qwen3FastEngine

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingParams", "HFRolloutEngine", "Qwen3FastEngine", "make_engine"]
ENGINES = ("hf", "qwen3_fast", "vllm")


def make_engine(name: str, model, tokenizer, hf_static_cache: str = "auto",
                vllm_kwargs: dict | None = None) -> RolloutEngine:
    """The rollout engine ``name`` over the trainer's ``model``. ``hf_static_cache`` is the hf engine's KV-cache
    choice; ``vllm_kwargs`` go to ``VLLMEngine`` (core/rollout/vllm_engine.py). Each is ignored by the others."""
    if name == "hf":
        return HFRolloutEngine(model, tokenizer, static_cache=hf_static_cache)
    if name == "qwen3_fast":
        return Qwen3FastEngine(model, tokenizer)
    if name == "vllm":
        # Lazy: vLLM lives in its own virtualenv (.venv-vllm, make test-vllm); the main one never imports it.
        from core.rollout.vllm_engine import VLLMEngine, vllm_import_error

        err = vllm_import_error()
        if err is not None:
            raise ValueError(f"rollout.engine='vllm' needs vLLM, which does not import here ({err}); on CPU use "
                             "the .venv-vllm virtualenv (make test-vllm), on a GPU box pip install vllm")
        return VLLMEngine(model, tokenizer, **(vllm_kwargs or {}))
    raise ValueError(f"unknown rollout.engine={name!r}; available: {ENGINES}")
