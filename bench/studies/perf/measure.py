"""One side's measurement of one run: the record both sides return, and how rates are derived."""

from __future__ import annotations


def measurement(side: str, pair: str, steps: int, completions_per_step: int, step_seconds: list[float],
                wall_seconds: float, completion_tokens: int, time_split: dict[str, float],
                threads: int, **extra) -> dict:
    """``step_seconds``: the timed training steps (what steps/s uses); ``wall_seconds``: the whole call
    (model loading, setup, evaluations, checkpoints included)."""
    total = sum(step_seconds)
    steady = sum(step_seconds[1:])  # without each run's first step (first-call allocations, caches)
    return {
        "side": side, "pair": pair, "steps": steps, "completions_per_step": completions_per_step,
        "step_seconds_total": round(total, 4), "step_seconds": [round(s, 4) for s in step_seconds],
        "wall_seconds": round(wall_seconds, 4), "completion_tokens": int(completion_tokens),
        "steps_per_s": steps / total if total > 0 else None,
        "tokens_per_s": completion_tokens / total if total > 0 else None,
        "steady_steps_per_s": (len(step_seconds) - 1) / steady if steady > 0 else None,
        "time_split": {k: round(v, 4) for k, v in time_split.items()}, "threads": threads, **extra,
    }
