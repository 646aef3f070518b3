"""Algorithms as registered functions. Importing this package registers the built-in ones: advantages and
policy losses (``registry``) and batch stages (``stages``; DAPO's in ``dapo``)."""

from bench.algorithms import dapo, gkd, grpo, opd, policy_loss, sft  # noqa: F401  (registration side effects)
from bench.algorithms.registry import get_advantage, get_policy_loss, register_advantage, register_policy_loss
from bench.algorithms.scored import LossInputs, LossTotals, ScoredBatch
from bench.algorithms.stages import BatchStage, active_batch_stages, register_batch_stage

__all__ = ["BatchStage", "LossInputs", "LossTotals", "ScoredBatch", "active_batch_stages", "get_advantage",
           "get_policy_loss", "register_advantage", "register_batch_stage", "register_policy_loss"]
