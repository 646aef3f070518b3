"""Registries of the extrapolation hook: the method (``effopd.method``) and the validation signal that scores its
candidates (``effopd.val_signal``), each looked up by name.

Adding an extrapolation method is one file plus a registration (import the file, e.g. from
``bench/extrapolation/__init__.py``, so that it registers)::

    @register_extrapolation("mine")
    def build_mine(ctx: ExtrapolationContext) -> ExtrapolationHook:
        return Mine(ctx.cfg.effopd, ctx.model, ctx.scorer, ctx.on_weights_changed, ctx.seed)

and a run selects it with ``effopd.enabled=true effopd.method=mine``. The hook runs right after every optimizer
step of any algorithm (OPD, GRPO, ...); see ``ExtrapolationHook`` for what the trainer calls.

A validation signal is a function of the model as it is now (see ``bench/extrapolation/validation.py``)::

    @register_val_signal("mine", needs_teacher=True)
    def mine(v: ValidationInputs, seed: int) -> ValidationScore: ...

It returns a score where higher is better (a loss is returned negated), the same on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class ValidationScore:
    score: float  # higher is better, the same on every rank
    tokens: int  # tokens the evaluation generated or scored (cost accounting, summed over ranks)


# A scorer evaluates the model as it is now; ``seed`` fixes its sampling noise (common random numbers).
Scorer = Callable[[int], ValidationScore]


class ExtrapolationHook(Protocol):
    """What the trainer calls (bench/train/loop.py). Every rank calls ``after_step`` at every step."""

    def after_step(self, step: int) -> dict | None:
        """Right after the optimizer step that completed global step ``step`` (the engine already synced):
        change the weights in place if the method wants to (then call ``on_weights_changed``), and return a
        record for ``effopd.jsonl`` (``step`` plus anything JSON-serialisable; ``seconds`` and ``tokens`` are
        the validation cost, ``accepted_multiplier`` goes into metrics.jsonl) or ``None`` when nothing ran.
        Its ``total_seconds`` / ``total_tokens`` attributes, when present, are the run's validation cost
        (summary.json's ``validation_seconds`` / ``validation_tokens``, counted in the net wall-clock)."""
        ...

    def state_dict(self) -> dict:
        """Everything needed to resume bit for bit. It must hold ``"anchor"``: ``{parameter name: tensor}``
        laid out like the parameters (``distributed.like_param``); every other dict of tensors in it is saved
        and resharded like ``anchor``, the rest is pickled."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class ExtrapolationContext:
    """What a method's builder gets from the trainer (bench/train/setup.py ``build_extrapolation``)."""

    cfg: object  # the whole run config: a method reads its options from ``cfg.effopd`` (or a block of its own)
    model: torch.nn.Module  # the trained student (FSDP2-sharded under torchrun): the parameters to move
    scorer: Scorer | None  # the validation signal ``effopd.val_signal`` (None when registered needs_validation=False)
    on_weights_changed: Callable[[], None]  # call after every change of the weights (the engine's weight sync)
    seed: int  # the run's seed (trainer.seed): seeds of the scorer's sampling noise
    optimizer: torch.optim.Optimizer | None = None  # the run's optimizer (e.g. to feed a step size back)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # its LR scheduler (an LR change must go into its
    # base LRs, or the scheduler's next step undoes it)


@dataclass(frozen=True)
class ExtrapolationMethod:
    name: str
    build: Callable[[ExtrapolationContext], ExtrapolationHook]
    needs_validation: bool  # the trainer builds the validation scorer (effopd.val_signal, val_prompts, ...)
    check: Callable[[object], None] | None  # start-up check of the run config (raise ValueError naming the key)


@dataclass(frozen=True)
class ValidationSignal:
    name: str
    score: Callable  # (inputs: bench.extrapolation.validation.ValidationInputs, seed: int) -> ValidationScore
    needs_teacher: bool  # runs the teacher's forward (a full-weight copy on every rank)
    needs_teacher_samples: bool  # reads the teacher's cached samples of the validation prompts


EXTRAPOLATIONS: dict[str, ExtrapolationMethod] = {}
VAL_SIGNALS: dict[str, ValidationSignal] = {}


def register_extrapolation(name: str, *, needs_validation: bool = True, check: Callable[[object], None] | None = None):
    """Register ``build(ctx: ExtrapolationContext) -> ExtrapolationHook`` as ``effopd.method=name``.

    ``needs_validation``: the method scores candidates, so the trainer builds ``ctx.scorer`` from
    ``effopd.val_signal`` (otherwise ``ctx.scorer`` is None and no teacher samples are prepared).
    ``check(cfg)``: called at start-up, before any model is loaded; raise ``ValueError`` naming the key."""

    def deco(build):
        if name in EXTRAPOLATIONS:
            raise ValueError(f"extrapolation method {name!r} registered twice")
        EXTRAPOLATIONS[name] = ExtrapolationMethod(name, build, needs_validation, check)
        return build

    return deco


def register_val_signal(name: str, *, needs_teacher: bool = False, needs_teacher_samples: bool = False):
    """Register ``score(inputs: ValidationInputs, seed: int) -> ValidationScore`` as ``effopd.val_signal=name``.

    ``needs_teacher``: the trainer gives ``inputs.teacher`` (full weights on every rank; the run's own teacher
    on one process, else a copy loaded for validation). ``needs_teacher_samples``: ``inputs.teacher_batch``
    holds the teacher's samples of this rank's validation prompts (generated once, cached on disk)."""

    def deco(fn):
        if name in VAL_SIGNALS:
            raise ValueError(f"validation signal {name!r} registered twice")
        VAL_SIGNALS[name] = ValidationSignal(name, fn, needs_teacher, needs_teacher_samples)
        return fn

    return deco


def get_extrapolation(name: str) -> ExtrapolationMethod:
    if name not in EXTRAPOLATIONS:
        raise ValueError(f"unknown effopd.method={name!r}; registered extrapolation methods: {sorted(EXTRAPOLATIONS)} "
                         "(register one with bench.extrapolation.registry.register_extrapolation)")
    return EXTRAPOLATIONS[name]


def get_val_signal(name: str) -> ValidationSignal:
    if name not in VAL_SIGNALS:
        raise ValueError(f"unknown effopd.val_signal={name!r}; registered validation signals: {sorted(VAL_SIGNALS)} "
                         "(register one with bench.extrapolation.registry.register_val_signal)")
    return VAL_SIGNALS[name]


def check_extrapolation(cfg) -> None:
    """Start-up checks of the ``effopd`` block, before any model is loaded: the method and the validation signal
    are registered (checked even when ``effopd.enabled=false``: a misspelt name is a mistake either way), the
    validation settings are in range, and the method's own check passes."""
    e = cfg.effopd
    method = get_extrapolation(e.method)
    get_val_signal(e.val_signal)
    if e.val_samples < 1:
        raise ValueError(f"effopd.val_samples={e.val_samples}; must be >= 1 (samples per validation prompt)")
    if e.val_temperature < 0:
        raise ValueError(f"effopd.val_temperature={e.val_temperature}; must be >= 0 (0 = greedy)")
    if e.enabled and method.check is not None:
        method.check(cfg)
