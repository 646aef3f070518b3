"""Paired statistics over interleaved repeats: each repeat runs both sides back to back, so the ratio is
taken within a repeat (machine load drifts between repeats) and then summarised by its median."""

from __future__ import annotations

import statistics

# (key, higher_is_faster): ratios are ours / TRL, so > 1 means ours is faster for rates, slower for seconds
METRICS = (("steps_per_s", True), ("tokens_per_s", True), ("steady_steps_per_s", True),
           ("step_seconds_total", False), ("wall_seconds", False))


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def by_repeat(runs: list[dict], side: str) -> dict[int, dict]:
    return {r["repeat"]: r for r in runs if r["side"] == side}


def paired_ratios(runs: list[dict], key: str) -> list[float]:
    """ours / TRL of ``key`` for every repeat that has both sides (repeat order)."""
    ours, trl = by_repeat(runs, "ours"), by_repeat(runs, "trl")
    return [ours[i][key] / trl[i][key] for i in sorted(ours.keys() & trl.keys())
            if ours[i].get(key) is not None and trl[i].get(key)]


def split_medians(runs: list[dict], side: str) -> dict[str, float]:
    """Median over repeats of each phase's seconds per step."""
    rs = list(by_repeat(runs, side).values())
    keys = sorted({k for r in rs for k in r["time_split"]})
    return {k: round(median(r["time_split"][k] / r["steps"] for r in rs if k in r["time_split"]), 4) for k in keys}


def summarize_pair(runs: list[dict]) -> dict:
    out = {}
    for key, higher_is_faster in METRICS:
        ratios = paired_ratios(runs, key)
        out[key] = {
            "ours_median": median(r[key] for r in by_repeat(runs, "ours").values()),
            "trl_median": median(r[key] for r in by_repeat(runs, "trl").values()),
            "ratio_ours_over_trl": {"per_repeat": [round(x, 4) for x in ratios], "median": median(ratios),
                                    "ours_faster_if": "> 1" if higher_is_faster else "< 1"},
        }
    out["seconds_per_step_split"] = {"ours": split_medians(runs, "ours"), "trl": split_medians(runs, "trl")}
    return out
