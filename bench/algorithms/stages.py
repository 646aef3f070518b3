"""Batch stages: steps between sampling and the update that an algorithm's config switches on.

The trainer builds each step's batch as: generate a round of rollouts, score it, apply the active *round*
stages to it; a *collecting* stage, when one is active, decides how many rounds make the batch. Adding one
(as DAPO's dynamic sampling) is a registration here, never an edit of the loop::

    @register_batch_stage("drop_truncated", applies=lambda cfg: cfg.algorithm.overlong_filter)
    def drop_truncated(scored: ScoredBatch, cfg) -> ScoredBatch:  # a round stage
        ...

    @register_batch_stage("dynamic_sampling", applies=lambda cfg: cfg.algorithm.dynamic_sampling, collects=True)
    def dynamic_sampling(next_round, cfg, pad_id: int) -> tuple[ScoredBatch, dict]:  # a collecting stage
        ...

Round stages run in registration order on every scored round and return a new ``ScoredBatch`` (use
``dataclasses.replace``; never modify the input's tensors in place: ``rewards`` may be ``task_rewards``).
A collecting stage calls ``next_round()`` (generate + score + round stages) as often as it likes and returns
the step's batch and counters for the step's record (``generated_tokens``: every generated token; more keys
are logged as they are, summed over ranks). At most one collecting stage may be active.
DAPO's stages live in ``bench.algorithms.dapo``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.algorithms.scored import ScoredBatch

RowMetrics = Callable[[ScoredBatch], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class BatchStage:
    name: str
    fn: Callable  # round: fn(scored, cfg) -> ScoredBatch; collecting: fn(next_round, cfg, pad_id) -> (batch, info)
    applies: Callable[[Any], bool]  # from the run's config: is the stage on?
    collects: bool = False
    row_metrics: RowMetrics | None = None  # per-row [B] values whose batch means the step's record logs
    check: Callable[[Any], None] | None = None  # start-up check of the config when the stage is on (raise ValueError)


BATCH_STAGES: dict[str, BatchStage] = {}


def register_batch_stage(name: str, *, applies: Callable[[Any], bool], collects: bool = False,
                         row_metrics: RowMetrics | None = None, check: Callable[[Any], None] | None = None):
    """Register a batch stage (see the module docstring); ``applies(cfg)`` switches it on from the config.

    ``row_metrics(scored) -> {key: Tensor[B]}``: per-row values averaged over the step's (global) batch into
    the step's record. ``check(cfg)``: raises ``ValueError`` naming the key when the stage's settings are bad.
    """

    def deco(fn):
        if name in BATCH_STAGES:
            raise ValueError(f"batch stage {name!r} registered twice")
        BATCH_STAGES[name] = BatchStage(name, fn, applies, collects, row_metrics, check)
        return fn

    return deco


def active_batch_stages(cfg) -> list[BatchStage]:
    """The stages ``cfg`` switches on, in registration order."""
    stages = [s for s in BATCH_STAGES.values() if s.applies(cfg)]
    collecting = [s.name for s in stages if s.collects]
    if len(collecting) > 1:
        raise ValueError(f"batch stages {collecting} each decide how many rounds make a batch; switch all but one "
                         "off")
    return stages


def apply_round_stages(stages: list[BatchStage], scored: ScoredBatch, cfg) -> ScoredBatch:
    for stage in stages:
        if not stage.collects:
            scored = stage.fn(scored, cfg)
    return scored


def collecting_stage(stages: list[BatchStage]) -> BatchStage | None:
    return next((s for s in stages if s.collects), None)
