"""Rollout engines: generate n samples per prompt with per-token log-probs, behind one interface."""

from bench.rollout.base import RolloutBatch, RolloutEngine, SamplingParams
from bench.rollout.hf import HFRolloutEngine

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingParams", "HFRolloutEngine", "make_engine"]


def make_engine(name: str, model, tokenizer) -> RolloutEngine:
    if name == "hf":
        return HFRolloutEngine(model, tokenizer)
    raise ValueError(f"unknown rollout engine {name!r}; available: 'hf' (vLLM arrives with issue 5)")
