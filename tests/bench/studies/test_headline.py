"""The table headline: geometric mean of per-build ratios with a t interval on the logs, and its verdict."""

from __future__ import annotations

import math

import pytest

from bench.studies.headline import build_headline, verdict_line
from bench.studies.stats import FASTER, NOT_SHOWN, SLOWER, geometric_mean_ci, verdict


def test_geometric_mean_and_t_interval_against_a_hand_computation():
    ratios = [2.0, 1.0, 4.0]
    # logs: ln2, 0, ln4 = 2 ln2 -> mean ln2, sd = ln2 (sample sd of 1, 0, 2 times ln2), t_{0.975,2} = 4.302653
    t = 4.303  # t_{0.975,2} from a printed table (scipy gives 4.30265)
    half = t * math.log(2) / math.sqrt(3)
    out = geometric_mean_ci(ratios)
    assert out["mean"] == pytest.approx(2.0)
    assert out["ci95"] == pytest.approx([2.0 * math.exp(-half), 2.0 * math.exp(half)], rel=1e-3)
    assert out["n"] == 3


def test_geometric_mean_edge_cases():
    assert geometric_mean_ci([1.5]) == {"mean": pytest.approx(1.5), "ci95": None, "n": 1}
    assert geometric_mean_ci([])["mean"] is None
    with pytest.raises(ValueError, match="ratios > 0"):
        geometric_mean_ci([1.0, 0.0])


def test_verdict_reads_the_interval_only():
    assert verdict({"mean": 1.3, "ci95": [1.01, 1.6]}) == FASTER
    assert verdict({"mean": 0.8, "ci95": [0.7, 0.99]}) == SLOWER
    assert verdict({"mean": 1.9, "ci95": [0.95, 3.8]}) == NOT_SHOWN
    assert verdict({"mean": 2.0, "ci95": None}) == NOT_SHOWN
    assert verdict({"mean": 1.0, "ci95": [1.0, 1.2]}) == NOT_SHOWN  # touching 1 is not above it


def _row(method, per_seed):
    return {"method": method, "per_seed": [{"build": b, "seed": s, "steps_to_target": st,
                                            "wall_seconds_to_target": None if st is None else st * 0.5}
                                           for b, s, st in per_seed]}


@pytest.mark.parametrize(("method_steps", "expected"), [
    ([10, 10, 20, 10], FASTER),       # ratios 2, 2, 1.5, 3: consistently faster
    ([40, 40, 60, 60], SLOWER),       # ratios 0.5, 0.5, 0.5, 0.5
    ([10, 40, 30, 30], NOT_SHOWN),    # ratios 2, 0.5, 1, 1
])
def test_verdict_on_synthetic_per_build_ratios(method_steps, expected):
    ref_steps = [20, 20, 30, 30]
    table = {"reference": "OPD", "rows": [
        _row("OPD", [(b, b, st) for b, st in enumerate(ref_steps)]),
        _row("EffOPD", [(b, b, st) for b, st in enumerate(method_steps)])]}
    head = build_headline(table)["EffOPD"]
    ratios = [r / m for r, m in zip(ref_steps, method_steps)]
    assert [head["steps"]["per_build"][str(b)] for b in range(4)] == pytest.approx(ratios)
    assert head["steps"]["verdict"] == expected
    assert head["wall"]["verdict"] == expected  # seconds are half the steps here: same ratios
    assert verdict_line("EffOPD", "OPD", head).startswith("EffOPD vs OPD: ")


def test_build_ratio_is_of_means_and_a_missed_target_drops_the_build():
    table = {"reference": "OPD", "rows": [
        _row("OPD", [(0, 0, 10), (0, 1, 30), (1, 2, 20), (2, 3, 20)]),
        _row("EffOPD", [(0, 0, 10), (0, 1, 10), (1, 2, None), (2, 3, 10)])]}
    head = build_headline(table)["EffOPD"]["steps"]
    assert head["per_build"] == {"0": pytest.approx(2.0), "2": pytest.approx(2.0)}  # (10+30)/2 / (10+10)/2
    assert head["builds_excluded"] == [1]
    assert "1 build(s) left out" in verdict_line("EffOPD", "OPD", {"steps": head, "wall": head})
