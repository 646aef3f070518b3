"""The variant study (bench/studies/variant.py) on synthetic run folders: its goals read from the regime map's
result, its ablation runs on the map's seeds and builds of style's default cell, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.studies import cli, map_grid, variant
from bench.studies.jobs import builds_for
from tests.bench.studies.synthetic_runs import SyntheticLauncher, fake_train_ext
from tests.bench.studies.test_regime_map import run_map


def run_variant(tmp: Path) -> tuple[dict, SyntheticLauncher]:
    launcher = SyntheticLauncher(train=fake_train_ext)
    cli.main(["variant", "--map-json", str(tmp / "out" / "regime_map.json"), "--map-runs-dir", str(tmp / "runs"),
              "--runs-dir", str(tmp / "variant_runs"), "--out", str(tmp / "out"), "--workers", "1"],
             launcher=launcher)
    return json.loads((tmp / "out" / "variant.json").read_text()), launcher


def test_goals_and_ablations_from_the_map(tmp_path, no_builds):
    mapped, _, _ = run_map(tmp_path, "--worlds", "flip,style")
    built_by_map = len(no_builds)
    result, launcher = run_variant(tmp_path)
    # every world the variant's jobs run in is built first, in all the builds its seeds spread over
    assert no_builds[built_by_map:] == [(w, mapped["builds"])
                                       for w in dict.fromkeys(["style", *variant.held_out_worlds(mapped)])]
    # The ablation arms: one run per seed of style's default cell (4 seeds over 2 builds), in runs/variant/style;
    # the held-out runs: WindowLR at each held-out LR and the tuned OPD, per measurable world and held-out seed.
    held = [p for p in launcher.launched if "/held_out/" in str(p)]
    ablation = [p for p in launcher.launched if "/held_out/" not in str(p)]
    assert len(ablation) == len(variant.ABLATIONS) * 4 and all("/style/" in str(p) for p in ablation)
    worlds = variant.held_out_worlds(mapped)
    assert worlds and len(held) == len(worlds) * len(variant.HELD_OUT_SEEDS) * (len(variant.HELD_OUT_MULTIPLIERS) + 1)
    builds = builds_for(list(variant.HELD_OUT_SEEDS), mapped["builds"])
    for name in worlds:  # per seed: the tuned OPD's steps over WindowLR's, averaged like every map cell
        for c in result["held_out"][name]["cells"]:
            pairs = [(builds[s], c["tuned_opd_steps"][str(s)] / c["window_lr_steps"][str(s)]) for s in c["seeds"]
                     if c["tuned_opd_steps"][str(s)] and c["window_lr_steps"][str(s)]]
            mean = map_grid.pair_ci([r for _, r in pairs], [b for b, _ in pairs])["mean"]
            assert c["speedup_steps_vs_tuned"]["mean"] == pytest.approx(mean)
            assert c["met"] == (mean >= 1 / 1.1)
    # Goal (a) is the ratio of the map's two wall-clock speedups at style x1.
    cell = next(c for c in mapped["worlds"]["style"]["cells"] if c["lr_multiplier"] == 1)
    a = result["goals"]["a"]
    w, e = cell["WindowLR"]["speedup_wall_vs_same_lr"]["mean"], cell["EffOPD"]["speedup_wall_vs_same_lr"]["mean"]
    assert a["ratio"] == pytest.approx(w / e) and a["met"] == (w / e >= 1.5)
    # Goal (b): per world, every cell's WindowLR speedup over the tuned OPD against 1/1.1.
    for name, world in mapped["worlds"].items():
        b = result["goals"]["b"][name]
        expected = [c["WindowLR"]["speedup_steps_vs_tuned"]["mean"] for c in world["cells"]]
        assert [r["speedup_steps_vs_tuned"]["mean"] for r in b["cells"]] == expected
        assert b["met"] == all(v is not None and v >= 1 / 1.1 for v in expected)
    # The ablation table re-reads the map's own runs: its WindowLR and EffOPD arms agree with the map's cell.
    ab = result["ablations"]
    assert ab["target"]["value"] == pytest.approx(cell["target"])
    for method in ("EffOPD", "WindowLR"):
        assert ab["arms"][method]["steps_to_target"] == cell[method]["steps_to_target"]
        assert ab["arms"][method]["speedup_steps_vs_same_lr"] == cell[method]["speedup_steps_vs_same_lr"]
    assert set(ab["arms"]) == {"EffOPD", "WindowLR", *variant.ABLATIONS}
    md = (tmp_path / "out" / "variant.md").read_text()
    assert "## Goal (a)" in md and "### flip" in md and "WindowLR-noLR" in md and "held-out seeds 5, 6, 7" in md
    # Resumable: a second pass trains nothing.
    again, launcher2 = run_variant(tmp_path)
    assert launcher2.launched == [] and again["goals"] == result["goals"]


def test_needs_the_map_and_its_window_lr_cells(tmp_path):
    with pytest.raises(FileNotFoundError, match="--map-json=.*make reproduce-map"):
        variant.load_map(tmp_path / "missing.json")
    old = {"worlds": {"style": {"cells": [{"OPD": {}, "EffOPD": {}}]}}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="no WindowLR cells"):
        variant.load_map(tmp_path / "old.json")


def test_goal_b_is_not_measurable_on_a_world_whose_targets_sit_in_the_start_noise():
    def cell(m, window_vs_tuned):
        stat = {"mean": window_vs_tuned, "ci95": None}
        return {"lr_multiplier": m, "lr": 2e-5 * m, "OPD": {"steps_to_target": stat, "speedup_steps_vs_tuned": stat},
                "EffOPD": {"steps_to_target": stat, "speedup_steps_vs_tuned": stat},
                "WindowLR": {"speedup_steps_vs_tuned": stat, "steps_to_target": stat, "reached": "3/3"}}

    worlds = {"flip": {"selected_multiplier": 10, "cells": [cell(1, 0.95)], "targets_within_start_noise": []},
              "scratch": {"selected_multiplier": 1, "cells": [cell(1, 2.0)], "targets_within_start_noise": ["1"]}}
    g = variant.goals({"worlds": worlds})
    assert g["b"]["flip"]["met"] is True
    assert g["b"]["scratch"]["met"] is None and g["b"]["scratch"]["targets_within_start_noise"] == ["1"]
