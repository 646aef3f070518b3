"""Rollout engines: generate n samples per prompt with per-token log-probs, behind one interface."""

from bench.rollout.base import RolloutBatch, RolloutEngine, SamplingParams
from bench.rollout.hf import HFRolloutEngine
from bench.rollout.qwen3_fast import Qwen3FastEngine

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingParams", "HFRolloutEngine", "Qwen3FastEngine", "make_engine"]
ENGINES = ("hf", "qwen3_fast")


def make_engine(name: str, model, tokenizer) -> RolloutEngine:
    if name == "hf":
        return HFRolloutEngine(model, tokenizer)
    if name == "qwen3_fast":
        return Qwen3FastEngine(model, tokenizer)
    raise ValueError(f"unknown rollout.engine={name!r}; available: {ENGINES} (vLLM arrives with issue 5)")
