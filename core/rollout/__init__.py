"""Rollout engines: generate n samples per prompt with per-token log-probs, behind one interface.

Engines register themselves with ``register_engine`` (core/rollout/registry.py), each with the dataclass of its
options; ``make_engine(name, model, tokenizer, settings, seed=)`` builds one. Importing this package registers
the built-in engines: ``hf``, ``qwen3_fast`` and ``vllm`` (vLLM itself is imported only when that engine is built).
"""

from core.rollout.base import RolloutBatch, RolloutEngine, SamplingParams
from core.rollout.hf import HFRolloutEngine, HFSettings
from core.rollout.qwen3_fast import Qwen3FastEngine
from core.rollout.registry import engine_settings, get_engine, make_engine, register_engine, registered_engines
from core.rollout.vllm_engine import VLLMSettings

__all__ = ["HFRolloutEngine", "HFSettings", "Qwen3FastEngine", "RolloutBatch", "RolloutEngine",
           "SamplingParams", "VLLMSettings", "engine_settings", "get_engine", "make_engine", "register_engine",
           "registered_engines"]
