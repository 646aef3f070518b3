"""Algorithms as registered functions. Importing this package registers the built-in ones."""

from bench.algorithms import gkd, grpo, opd, policy_loss, sft  # noqa: F401  (registration side effects)
from bench.algorithms.registry import get_advantage, get_policy_loss, register_advantage, register_policy_loss
from bench.algorithms.scored import LossInputs, LossTotals, ScoredBatch

__all__ = ["LossInputs", "LossTotals", "ScoredBatch", "get_advantage", "get_policy_loss", "register_advantage",
           "register_policy_loss"]
