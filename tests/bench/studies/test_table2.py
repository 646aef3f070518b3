"""Tests for bench.studies.stats and bench.studies.speedup on small synthetic run folders."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest

from bench.studies.speedup import build_speedup_table, fmt_stat, load_runs, write_speedup_table
from bench.studies.stats import between_build_spread, first_crossing, hierarchical_mean_ci, mean_ci

STEPS = [0, 10, 20, 30, 40, 50]
# Accuracy curves per (method, seed), one value per step in STEPS.
CURVES = {
    ("OPD", 0): [0.0, 0.5, 0.96, 1.0, 1.0, 1.0],  # final 1.0, crosses at 20
    ("OPD", 1): [0.0, 0.5, 0.80, 0.95, 0.92, 0.94],  # final 0.93667, crosses at 30
    ("EffOPD", 0): [0.0, 0.97, 0.98, 0.99, 0.99, 0.99],  # crosses at 10
    ("EffOPD", 1): [0.0, 0.93, 0.95, 0.96, 0.97, 0.97],  # crosses at 10
    ("OPD, tuned LR", 0): [0.0, 0.3, 0.6, 0.9, 0.93, 0.95],  # crosses at 40
    ("OPD, tuned LR", 1): [0.0, 0.3, 0.6, 0.8, 0.85, 0.90],  # never crosses
}
SEC_PER_STEP = {"OPD": 2.0, "EffOPD": 3.0, "OPD, tuned LR": 2.0}
VALIDATION_S = {"OPD": 0.0, "EffOPD": 5.0, "OPD, tuned LR": 0.0}
TARGET = 0.95 * (1.0 + (0.95 + 0.92 + 0.94) / 3) / 2


def write_run(root, method, seed, accs, status="complete"):
    """Write one synthetic run folder with summary.json and evals.jsonl; return the folder."""
    folder = root / method.replace(" ", "_").replace(",", "") / f"seed{seed}"
    folder.mkdir(parents=True)
    evals = [
        {"step": s, "train_seconds": s * SEC_PER_STEP[method], "test/greedy": a, "val/greedy": a}
        for s, a in zip(STEPS, accs)
    ]
    (folder / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    summary = {
        "method": method, "seed": seed, "lr": 1e-5 if method != "OPD, tuned LR" else 3e-5,
        "world": "tiny", "status": status, "total_steps": STEPS[-1],
        "train_seconds": evals[-1]["train_seconds"], "validation_seconds": VALIDATION_S[method],
        "validation_tokens": 0, "final": {"test/greedy": accs[-1]},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    # 100 rollout tokens per step; EffOPD also spends 7 validation tokens at each of its triggers.
    metrics = [{"step": s, "generated_tokens": 100} for s in range(1, STEPS[-1] + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if method == "EffOPD":
        triggers = [{"step": s, "tokens": 7} for s in (1, 2, 4, 8, 16, 32)]
        (folder / "effopd.jsonl").write_text("".join(json.dumps(t) + "\n" for t in triggers))
    return folder


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    for (method, seed), accs in CURVES.items():
        write_run(root / "nested" if method == "EffOPD" else root, method, seed, accs)
    return root


@pytest.fixture
def table(runs_root):
    return build_speedup_table(load_runs(runs_root), extra={"machine": "test-box", "git_commit": "abc"})


def rows_by_method(table):
    return {r["method"]: r for r in table["rows"]}


# ---------------------------------------------------------------- stats

def test_t_interval_matches_hand_computed():
    out = mean_ci([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)
    assert out["n"] == 3 and out["mean"] == pytest.approx(2.0)
    assert out["ci95"] == pytest.approx([2.0 - half, 2.0 + half], abs=1e-3)


def test_mean_ci_edge_cases():
    assert mean_ci([]) == {"mean": None, "ci95": None, "n": 0}
    assert mean_ci([0.7]) == {"mean": 0.7, "ci95": None, "n": 1}
    assert mean_ci([None, 1.0, 3.0])["n"] == 2  # None entries (e.g. missed targets) are dropped


def test_bootstrap_contains_mean_and_is_deterministic():
    vals = [0.1, 0.4, 0.35, 0.8, 0.5]
    a = mean_ci(vals, method="bootstrap", seed=3)
    b = mean_ci(vals, method="bootstrap", seed=3)
    assert a == b
    lo, hi = a["ci95"]
    assert lo <= a["mean"] <= hi and lo < hi


def test_hierarchical_bootstrap_edge_cases():
    assert hierarchical_mean_ci([]) == {"mean": None, "ci95": None, "n": 0, "n_builds": 0}
    assert hierarchical_mean_ci([[None], [None]]) == {"mean": None, "ci95": None, "n": 0, "n_builds": 0}
    # One build with values: no between-build spread to estimate, so no interval (n_builds says why).
    assert hierarchical_mean_ci([[1.0, 3.0], [None]]) == {"mean": 2.0, "ci95": None, "n": 2, "n_builds": 1}
    out = hierarchical_mean_ci([[1.0, None, 3.0], [5.0]])
    assert out["mean"] == pytest.approx(3.0) and out["n"] == 3 and out["n_builds"] == 2
    assert out == hierarchical_mean_ci([[1.0, 3.0], [5.0]])  # None entries dropped, deterministic (fixed seed)
    lo, hi = out["ci95"]
    assert 1.0 <= lo < 3.0 < hi <= 5.0


def test_hierarchical_bootstrap_against_the_one_level_one():
    between = [[3.0, 2.9, 2.8], [1.5, 1.4, 1.3], [1.0, 0.9, 0.8]]  # builds far apart, seeds close together
    flat = [v for g in between for v in g]
    hier, one = hierarchical_mean_ci(between), mean_ci(flat, method="bootstrap")
    assert hier["mean"] == pytest.approx(one["mean"])
    assert hier["ci95"][1] - hier["ci95"][0] > 1.5 * (one["ci95"][1] - one["ci95"][0])
    same = [[1.0, 1.5, 2.5, 3.0]] * 3  # identical builds: resampling builds changes nothing
    hier, one = hierarchical_mean_ci(same), mean_ci([v for g in same for v in g], method="bootstrap")
    assert hier["ci95"] == pytest.approx(one["ci95"], abs=0.05 * (one["ci95"][1] - one["ci95"][0]))


def test_between_build_spread():
    out = between_build_spread({2: [4.0, None], 0: [1.0, 3.0], 5: [None]})
    assert out["per_build"] == [{"build": 0, "mean": 2.0, "n": 2}, {"build": 2, "mean": 4.0, "n": 1},
                                {"build": 5, "mean": None, "n": 0}]
    assert out["range"] == [2.0, 4.0] and out["sd"] == pytest.approx(math.sqrt(2.0))
    assert between_build_spread({0: [1.0]}) == {"per_build": [{"build": 0, "mean": 1.0, "n": 1}],
                                                "range": [1.0, 1.0], "sd": None}


def test_first_crossing():
    assert first_crossing([0, 1, 2], [0.1, 0.5, 0.9], 0.5) == 1
    assert first_crossing([0, 1, 2], [0.1, None, 0.9], 0.5) == 2
    assert first_crossing([0, 1, 2], [0.1, 0.2, 0.3], 0.5) is None


# ---------------------------------------------------------------- table 2

def test_target_is_fraction_of_reference_final(table):
    assert table["target"]["value"] == pytest.approx(TARGET)
    assert table["target"]["metric"] == "test/greedy"
    assert "95%" in table["target"]["definition"] and "OPD" in table["target"]["definition"]
    opd = rows_by_method(table)["OPD"]
    assert opd["final_accuracy"]["mean"] == pytest.approx(TARGET / 0.95)


def test_steps_wall_and_pairwise_speedups(table):
    rows = rows_by_method(table)
    opd, eff = rows["OPD"], rows["EffOPD"]
    assert [p["steps_to_target"] for p in opd["per_seed"]] == [20, 30]
    assert [p["steps_to_target"] for p in eff["per_seed"]] == [10, 10]
    assert opd["steps_to_target"]["mean"] == pytest.approx(25.0)
    assert eff["wall_seconds_to_target"]["mean"] == pytest.approx(30.0)
    # Per seed pair: 20/10 and 30/10 -> 2.5; wall: 40/30 and 60/30.
    assert eff["speedup_steps"]["mean"] == pytest.approx(2.5)
    assert eff["speedup_steps"]["n"] == 2
    assert eff["speedup_wall"]["mean"] == pytest.approx((40 / 30 + 60 / 30) / 2)
    assert eff["validation_overhead_seconds"]["mean"] == pytest.approx(5.0)
    assert opd["speedup_steps"]["mean"] == 1.0 and opd["speedup_wall"]["mean"] == 1.0
    assert eff["pairs_excluded"] == 0 and eff["reached_target"] == "2/2"


def test_seed_missing_target_is_counted_not_dropped(table):
    row = rows_by_method(table)["OPD, tuned LR"]
    assert row["n_seeds"] == 2 and row["reached_target"] == "1/2"
    assert row["pairs_excluded"] == 1
    assert row["steps_to_target"] == {"mean": 40.0, "ci95": None, "n": 1}
    assert row["speedup_steps"]["mean"] == pytest.approx(20 / 40)
    assert row["final_accuracy"]["n"] == 2
    assert row["per_seed"][1]["steps_to_target"] is None
    assert row["lr"] == [3e-5]


def test_top_level_keys(table):
    assert table["seeds"] == [0, 1]
    assert "t" in table["ci_method"] and "95%" in table["ci_method"]
    assert table["machine"] == "test-box" and table["paper"] is None
    assert [r["method"] for r in table["rows"]][0] == "OPD"


def test_write_speedup_table_outputs(runs_root, tmp_path):
    runs = load_runs(runs_root)
    paper = {"summary": "EffOPD reaches OPD accuracy about 3x faster.", "speedup": 3.0}
    table = build_speedup_table(runs, ci_method="bootstrap", paper=paper, extra={"total_wall_seconds": 1.5})
    paths = write_speedup_table(table, tmp_path / "out", runs)
    for key, name in [("json", "table2.json"), ("csv", "table2.csv"), ("md", "table2.md"),
                      ("png", "table2_curves.png")]:
        assert paths[key].name == name and paths[key].stat().st_size > 0
    data = json.loads(paths["json"].read_text())
    for key in ("target", "seeds", "ci_method", "rows", "paper", "total_wall_seconds"):
        assert key in data
    for key in ("method", "n_seeds", "seeds", "lr", "reached_target", "pairs_excluded", "per_seed",
                "final_accuracy", "steps_to_target", "wall_seconds_to_target", "speedup_steps",
                "speedup_wall", "validation_overhead_seconds"):
        assert key in data["rows"][0]
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 3 and "final_accuracy_mean" in rows[0] and "speedup_wall_hi" in rows[0]
    md = paths["md"].read_text()
    assert "| method |" in md and "Paper reports" in md and "3x faster" in md
    assert table["target"]["definition"] in md and "bootstrap" in md
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_formatting_handles_none(runs_root, tmp_path):
    assert fmt_stat(None) == "—" and fmt_stat({"mean": None, "ci95": None, "n": 0}) == "—"
    assert fmt_stat({"mean": 2.0, "ci95": None, "n": 1}, 1) == "2.0"
    assert fmt_stat({"mean": 2.0, "ci95": [1.0, 3.0], "n": 3}, 1, "×") == "2.0× [1.0, 3.0]"
    # A method where no seed reaches the target must still render (as dashes), not crash.
    runs = [r for r in load_runs(runs_root) if r.method != "EffOPD"]
    table = build_speedup_table(runs, target_fraction=1.5)
    paths = write_speedup_table(table, tmp_path / "out", runs)
    assert "—" in paths["md"].read_text()
    assert rows_by_method(table)["OPD"]["reached_target"] == "0/2"


def test_incomplete_run_raises_with_folder(runs_root):
    bad = write_run(runs_root, "EffOPD", 7, CURVES[("EffOPD", 0)], status="running")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_runs(runs_root)


def test_tokens_to_target_count_rollouts_and_validation(table):
    rows = {r["method"]: r for r in table["rows"]}
    opd = [p["tokens_to_target"] for p in rows["OPD"]["per_seed"]]
    assert opd == [2000, 3000]  # crossings at steps 20 and 30
    eff = [p["tokens_to_target"] for p in rows["EffOPD"]["per_seed"]]
    assert eff == [1000 + 4 * 7, 1000 + 4 * 7]  # step 10, triggers 1, 2, 4, 8 before it
    assert rows["OPD, tuned LR"]["per_seed"][1]["tokens_to_target"] is None  # never reached
