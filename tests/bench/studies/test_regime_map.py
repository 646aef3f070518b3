"""The regime map study (bench/studies/regime_map.py) end to end on synthetic run folders (fake_train)."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from bench.studies import cli, map_grid, regime_map
from bench.studies.jobs import builds_for
from bench.studies.run_metrics import selection_score, start_by_build, targets_within_start_noise
from bench.studies.speedup import load_runs
from tests.bench.studies.synthetic_runs import SyntheticLauncher, fake_train

MULTS = "0.5,1,3"


def run_map(tmp: Path, *extra: str) -> tuple[dict, SyntheticLauncher, Path]:
    launcher = SyntheticLauncher()
    out = tmp / "out"
    cli.main(["map", "--multipliers", MULTS, "--seeds", "3", "--default-seeds", "4", "--builds", "2",
              "--max-steps", "80", "--runs-dir", str(tmp / "runs"), "--out", str(out), "--workers", "1", *extra],
             launcher=launcher)
    return json.loads((out / "regime_map.json").read_text()), launcher, out


def overrides(job) -> dict[str, str]:
    return dict(o.split("=", 1) for o in job.overrides)


def test_grid_cells_seeds_builds_horizons(tmp_path):
    jobs = regime_map.grid(tmp_path, ["flip", "scratch"], [0.25, 1, 10], seeds=3, default_seeds=5, n_builds=3,
                           selection_seeds=2, max_steps=300)
    assert len(jobs) == 2 * 3 * (3 + 5 + 3)  # worlds x methods (OPD, EffOPD, WindowLR) x seeds
    j = overrides(jobs[("flip", 0.25, "OPD", 2)])
    assert j["world"] == "flip" and float(j["trainer.lr"]) == pytest.approx(5e-6)
    assert j["trainer.total_steps"] == "200" and j["world.build"] == "2" and j["data.selection_prompts"] == "0"
    assert jobs[("flip", 0.25, "OPD", 2)].run_dir == tmp_path / "flip" / "lr5e-6" / "OPD" / "seed2"
    sel = overrides(jobs[("flip", 1, "OPD", 1)])
    assert "data.selection_prompts" not in sel and sel["trainer.total_steps"] == "50" and sel["world.build"] == "1"
    assert "world.build" not in overrides(jobs[("flip", 1, "EffOPD", 3)])  # seed 3 -> build 0
    assert overrides(jobs[("flip", 1, "EffOPD", 0)])["data.selection_prompts"] == "0"  # only OPD selects
    assert overrides(jobs[("flip", 10, "OPD", 0)])["trainer.total_steps"] == "50"  # above x1: the base horizon
    assert overrides(jobs[("scratch", 0.25, "OPD", 0)])["trainer.total_steps"] == "300"  # 400 capped
    assert {s for (w, m, meth, s) in jobs if (w, m, meth) == ("scratch", 1, "EffOPD")} == set(range(5))
    assert map_grid.horizon(map_grid.WorldSpec(2e-5, 50), 0.3, 1000) == 168  # 166.7 -> next eval step


@pytest.mark.parametrize("key,value,needle", [
    ("worlds", "flip,moon", "--worlds"), ("multipliers", "1,-2", "--multipliers"), ("seeds", 0, "--seeds"),
    ("builds", 0, "--builds"), ("selection_seeds", 4, "--selection-seeds"), ("max_steps", 1, "--max-steps")])
def test_bad_options_fail_naming_the_key(key, value, needle):
    args = Namespace(worlds="flip", multipliers="1,3", seeds=3, default_seeds=5, builds=3, selection_seeds=2,
                     max_steps=200)
    setattr(args, key, value)
    with pytest.raises(ValueError, match=needle):
        regime_map.parse_options(args)


def test_map_end_to_end_on_synthetic_runs(tmp_path, no_builds):
    result, launcher, out = run_map(tmp_path, "--worlds", "flip,style")
    assert no_builds == [("flip", 2), ("style", 2)]
    assert len(launcher.launched) == 2 * 3 * (3 + 4 + 3)  # worlds x methods x seeds over the cells
    assert set(result["worlds"]) == {"flip", "style"}
    for name, w in result["worlds"].items():
        # Target selection: the best mean validation score up to the base horizon over OPD seeds 0, 1.
        runs_dir = tmp_path / "runs" / name
        scores = {}
        for m in (0.5, 1, 3):
            runs = [r for r in load_runs(runs_dir / f"lr{map_grid.lr_tag(2e-5 * m)}" / "OPD") if r.seed < 2]
            scores[m] = np.mean([selection_score(type(r)(**{**r.__dict__, "evals": [e for e in r.evals
                                                                                    if e["step"] <= 50]}))
                                 for r in runs])
        best = max(scores, key=scores.get)
        assert w["selected_multiplier"] == best
        tuned = load_runs(runs_dir / f"lr{map_grid.lr_tag(2e-5 * best)}" / "OPD")
        finals: dict[int, list] = {}  # per build: a target each (builds differ in how far OPD gets)
        for r in tuned:
            finals.setdefault(r.build, []).append(np.mean([e["test/greedy"] for e in r.evals][-3:]))
        per_build = {str(b): 0.95 * np.mean(v) for b, v in sorted(finals.items())}
        assert w["target"]["per_build"] == pytest.approx(per_build) and len(per_build) == 2
        assert w["target"]["value"] == pytest.approx(np.mean(list(per_build.values())))
        for c in w["cells"]:
            assert c["target_per_build"] == w["target"]["per_build"]  # the same targets for every LR of the world
            assert c["seeds"] == list(range(4 if c["lr_multiplier"] == 1 else 3))
            assert c["builds"] == {str(s): b for s, b in builds_for(c["seeds"], 2).items()}
            assert c["total_steps"] == {0.5: 80, 1: 50, 3: 50}[c["lr_multiplier"]]  # 100 capped at 80
            check_cell(c, runs_dir / f"lr{map_grid.lr_tag(c['lr'])}")
            check_vs_tuned(c, w, tuned)
    corr = result["straightness_correlation"]
    for key, v in corr["measures"].items():
        who, measure = key.split(":")
        cells = [c for w in result["worlds"].values() for c in w["cells"]]
        x = [c[who]["straightness"][measure]["mean"] for c in cells]
        y = [c["EffOPD"]["speedup_steps_vs_same_lr"]["mean"] for c in cells]
        x, y = zip(*[(a, b) for a, b in zip(x, y) if a is not None and b is not None])
        assert v["n_cells"] == len(x) >= 3
        if measure == "final_norm":
            assert v["pearson"] is None  # constant in the synthetic runs: no correlation to report
        else:
            assert v["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    best_key = max((abs(v["spearman"]), k) for k, v in corr["measures"].items()
                   if k.split(":")[0] == "OPD" and k.split(":")[1] in regime_map.PREDICTORS)[1]
    assert corr["best_predictor"] == best_key
    md = (out / "regime_map.md").read_text()
    assert result["headline"] in md and "## flip" in md and "## style" in md and best_key in md
    for fig in ("regime_map.png", "regime_map_straightness.png"):
        data = (out / "figures" / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # Resumable: a second pass trains nothing and writes the same JSON (apart from nothing: the clock is frozen).
    again, launcher2, _ = run_map(tmp_path, "--worlds", "flip,style")
    assert launcher2.launched == [] and again["worlds"] == result["worlds"]


def check_cell(c: dict, cell_dir: Path) -> None:
    """The cell's numbers recomputed from its run folders: steps to target, reached n/N, the paired speedups."""
    target = {int(b): t for b, t in c["target_per_build"].items()}  # each run against its build's target
    steps = {}
    for method in map_grid.METHODS:
        runs = {r.seed: r for r in load_runs(cell_dir / method)}
        steps[method] = {s: next((e["step"] for e in r.evals if e["test/greedy"] >= target[r.build]), None)
                         for s, r in runs.items()}
        hit = [v for v in steps[method].values() if v is not None]
        assert c[method]["reached"] == f"{len(hit)}/{len(runs)}"
        assert c[method]["steps_to_target"]["n"] == len(hit)
        if len(set(c["builds"].values())) == 1 or len(hit) < 2:
            continue
        # Several builds: the mean is the mean of the per-build means.
        per_build = {}
        for s, v in steps[method].items():
            if v is not None:
                per_build.setdefault(c["builds"][str(s)], []).append(v)
        assert c[method]["steps_to_target"]["mean"] == pytest.approx(np.mean([np.mean(v) for v in per_build.values()]))
        assert c[method]["validation_seconds"]["n"] == len(runs)
    for method in map_grid.EXTRAPOLATED:
        pairs = [steps["OPD"][s] / steps[method][s] for s in steps["OPD"] if steps["OPD"][s] and steps[method][s]]
        sp = c[method]["speedup_steps_vs_same_lr"]
        assert sp["pairs_excluded"] == len(steps[method]) - len(pairs)
        if pairs:
            assert sp["method"] == "per (build, seed) pair" and sp["n"] == len(pairs)
            if len({c["builds"][str(s)] for s in steps["OPD"] if steps["OPD"][s] and steps[method][s]}) == 1:
                assert sp["mean"] == pytest.approx(np.mean(pairs))
        else:  # no seed where both reach: the ratio of the means, no CI
            opd, eff = ([v for v in steps[m].values() if v] for m in ("OPD", method))
            assert sp["method"] == "ratio of means" and sp["ci95"] is None
            assert sp["mean"] == (pytest.approx(np.mean(opd) / np.mean(eff)) if opd and eff else None)
        assert c[method]["validation_seconds"]["mean"] > 0
        assert all(0 <= t["accepted_frac"] <= 1 and t["n"] == len(steps[method]) for t in c[method]["triggers"])
    assert c["OPD"]["validation_seconds"]["mean"] == 0
    assert [t["step"] for t in c["EffOPD"]["triggers"]] == [2 ** i for i in range(c["total_steps"].bit_length())
                                                            if 2 ** i <= c["total_steps"]]
    trig = c["WindowLR"]["triggers"]  # every 4 steps, with the LR scale it steered to
    assert [t["step"] for t in trig] == list(range(4, c["total_steps"] + 1, 4))
    assert all(t["lr_scale"]["mean"] > 0 for t in trig) and "lr_scale" not in c["EffOPD"]["triggers"][0]
    assert c["OPD"]["straightness"]["n_runs"] == len(steps["OPD"])
    assert c["OPD"]["straightness"]["chord_arc"]["mean"] is not None


def check_vs_tuned(c: dict, w: dict, tuned: list) -> None:
    """Speedups over the tuned-LR OPD pair each run with the tuned run of the same (build, seed)."""
    target = {int(b): t for b, t in c["target_per_build"].items()}
    tuned_steps = {r.seed: next((e["step"] for e in r.evals if e["test/greedy"] >= target[r.build]), None)
                   for r in tuned}
    for method in map_grid.METHODS:
        mine = {p["seed"]: p["steps_to_target"] for p in c[method]["per_seed"]}
        pairs = {s: tuned_steps[s] / v for s, v in mine.items() if v and tuned_steps.get(s)}
        assert c[method]["pairs_excluded_vs_tuned"] == len(mine) - len(pairs)
        assert c[method]["speedup_steps_vs_tuned"]["n"] == len(pairs)
        if c["lr_multiplier"] == w["selected_multiplier"] and method == "OPD":
            assert c[method]["speedup_steps_vs_tuned"]["mean"] == pytest.approx(1.0)  # the tuned cell itself


def test_worlds_flip_runs_one_world_only(tmp_path, no_builds):
    result, launcher, _ = run_map(tmp_path, "--worlds", "flip")
    assert list(result["worlds"]) == ["flip"] and no_builds == [("flip", 2)]
    assert all("/flip/" in str(p) for p in launcher.launched) and len(launcher.launched) == 3 * (3 + 4 + 3)
    assert not (tmp_path / "runs" / "style").exists()


def cell(world, m, same, same_ci, tuned=1.0, window=(1.0, 1.0, 1.0)):
    """A cell as headline() reads it: EffOPD's speedups, and WindowLR's (wall vs same LR, steps vs tuned)."""
    stat = {"mean": same, "ci95": same_ci, "n": 3}
    w_wall, e_wall, w_tuned = window
    return {"world": world, "lr_multiplier": m, "lr": 2e-5 * m,
            "EffOPD": {"speedup_steps_vs_same_lr": stat, "speedup_steps_vs_tuned": {"mean": tuned, "ci95": None},
                       "speedup_wall_vs_tuned": {"mean": tuned * 0.9, "ci95": None},
                       "speedup_wall_vs_same_lr": {"mean": e_wall, "ci95": None}},
            "WindowLR": {"speedup_wall_vs_same_lr": {"mean": w_wall, "ci95": None},
                         "speedup_steps_vs_tuned": {"mean": w_tuned, "ci95": None}}}


def test_headline_names_the_cells_that_pay_or_says_nowhere():
    worlds = {"flip": {"selected_multiplier": 3, "cells": [cell("flip", 0.25, 4.0, [2.5, 5.5], 1.2),
                                                           cell("flip", 1, 3.2, [1.5, 4.9])]},
              "style": {"selected_multiplier": 3, "cells": [cell("style", 1, 1.2, [0.9, 1.5], 0.8)]}}
    text = regime_map.headline(worlds)
    assert "flip at 5e-06 (x0.25): 4.00x [2.50, 5.50]" in text and "x1)" not in text.split("Against")[0]
    assert "flip: 1.20x in steps" in text and "style: 0.80x in steps" in text
    worlds["flip"]["cells"][0]["EffOPD"]["speedup_steps_vs_same_lr"]["ci95"] = [1.9, 6.0]
    text = regime_map.headline(worlds)
    assert "nowhere on the map" in text and "its best cell: flip at 5e-06 (x0.25)" in text


def test_a_world_whose_targets_sit_in_the_start_noise_leaves_the_headline():
    """scratch-like: OPD barely moves the student, so a target within two standard errors of the start is
    'reached' by noise; its cells must not be the headline's best cell."""
    worlds = {"flip": {"selected_multiplier": 3, "cells": [cell("flip", 1, 1.5, [1.1, 1.9], 1.1)],
                       "targets_within_start_noise": []},
              "scratch": {"selected_multiplier": 1, "cells": [cell("scratch", 0.5, 9.0, [2.5, 15.5], 3.0)],
                          "targets_within_start_noise": ["0", "2"]}}
    text = regime_map.headline(worlds)
    assert "scratch at" not in text and "nowhere on the map (its best cell: flip at 2e-05 (x1)" in text
    assert "On scratch the targets lie within two standard errors of where the runs start" in text
    line = regime_map.start_line({"start_by_build": {"0": {"accuracy": 0.09, "noise": 0.04}},
                                  "targets_within_start_noise": ["0"]})
    assert "build 0 0.090 (± 0.040" in line and "**Caution:** on build(s) 0" in line


def test_start_and_its_noise_band_per_build(tmp_path):
    runs = []
    for b, acc in ((0, 0.09), (1, 0.5)):
        folder = tmp_path / f"b{b}"
        fake_train(folder, ["experiment=opd", "trainer.lr=2e-05", "trainer.seed=0", "method=OPD",
                            f"world.build={b}"])
        evals = [json.loads(x) for x in (folder / "evals.jsonl").read_text().splitlines()]
        evals[0]["test/greedy"] = acc
        (folder / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
        runs += load_runs(folder)
    start = start_by_build(runs)  # 200 test prompts (the default; these runs have no config.yaml)
    assert start["0"] == {"accuracy": 0.09, "noise": pytest.approx(2 * (0.09 * 0.91 / 200) ** 0.5)}
    assert start["1"]["noise"] == pytest.approx(2 * (0.25 / 200) ** 0.5)
    assert targets_within_start_noise({"per_build": {"0": 0.12, "1": 0.7}}, start) == ["0"]  # 0.12 < 0.09 + 0.040
    assert targets_within_start_noise({"per_build": {"0": 0.14, "1": 0.7}}, start) == []
    assert targets_within_start_noise({"value": 0.55}, start) == ["1"]  # one pooled target, every build


def test_window_lr_headline_checks_both_goals():
    worlds = {"style": {"cells": [cell("style", 1, 1.2, None, window=(1.8, 1.1, 0.95)),
                                  cell("style", 3, 1.0, None, window=(1.0, 1.0, 0.85))]},
              "flip": {"cells": [cell("flip", 1, 1.0, None, window=(1.0, 1.0, None))]}}
    text = regime_map.window_lr_headline(worlds)
    assert "WindowLR's net wall-clock speedup over OPD is 1.80x against EffOPD's 1.10x" in text
    assert "style: WindowLR within 10% of the tuned-LR OPD's steps (or better) at 1/2 LRs (x1 0.95x, x3 0.85x)" in text
    assert "flip: WindowLR within 10% of the tuned-LR OPD's steps (or better) at 0/1 LRs (x1 not reached)" in text


def test_fake_train_defaults_are_unchanged(tmp_path):
    """The additions to fake_train leave a run without the new overrides as it was (30 steps, no build)."""
    fake_train(tmp_path / "r", ["experiment=opd", "trainer.lr=2e-05", "trainer.seed=0", "method=OPD"])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["total_steps"] == 30 and "world_build" not in summary
    assert [json.loads(x)["step"] for x in (tmp_path / "r" / "effopd.jsonl").read_text().splitlines()] == [1, 2, 4, 8,
                                                                                                          16]
