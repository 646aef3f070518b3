"""Algorithms as registered functions. Importing this package registers the built-in ones."""

from bench.algorithms import opd, policy_loss  # noqa: F401  (registration side effects)
from bench.algorithms.registry import get_advantage, get_policy_loss, register_advantage, register_policy_loss
from bench.algorithms.scored import ScoredBatch

__all__ = ["ScoredBatch", "get_advantage", "get_policy_loss", "register_advantage", "register_policy_loss"]
