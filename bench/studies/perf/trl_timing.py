"""How TRL's steps are timed: a callback for whole optimizer steps, and TRL's own phase profiler.

TRL times its phases (``transformers.generate``, ``_prepare_inputs``, ``compute_loss``, the reward
function, ...) with ``trl.extras.profiling`` but reports them only to wandb / mlflow / trackio; with
``report_to="none"`` they are captured here instead.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Seconds per optimizer step: from ``on_train_begin`` to the first ``on_step_end``, then between
    consecutive ``on_step_end`` calls (data loading, generation, forward/backward, optimizer step, logging)."""

    def __init__(self):
        self.step_seconds: list[float] = []
        self._last = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.step_seconds.append(now - self._last)
        self._last = now


@contextlib.contextmanager
def capture_profiling():
    """Yields ``{phase: total seconds}`` filled by TRL's profiling contexts while the block runs
    (the trainer-class prefix is dropped: ``DistillationTrainer.compute_loss`` -> ``compute_loss``)."""
    from trl.extras import profiling

    totals: dict[str, float] = defaultdict(float)
    original = profiling.ProfilingContext._log_metrics

    def record(self, duration: float) -> None:
        totals[self.name.split(".", 1)[-1]] += duration
        original(self, duration)

    profiling.ProfilingContext._log_metrics = record
    try:
        yield totals
    finally:
        profiling.ProfilingContext._log_metrics = original


def phase_split(step_total: float, phases: dict[str, float]) -> dict[str, float]:
    """TRL's step time in our phase names. ``generate``: HF generate; ``prepare``: the rest of
    ``_prepare_inputs`` (tokenising, padding, rewards and advantages); ``update``: everything after it
    (student and teacher forwards, loss, backward, optimizer step, logging); ``update.compute_loss`` is
    its forward + loss part. Without profiled phases (SFTTrainer) only ``total``."""
    if "_prepare_inputs" not in phases:
        return {"total": step_total}
    gen = phases.get("transformers.generate", 0.0)
    prep = phases["_prepare_inputs"]
    return {"generate": gen, "prepare": prep - gen, "update": step_total - prep,
            "update.compute_loss": phases.get("compute_loss", 0.0)}
