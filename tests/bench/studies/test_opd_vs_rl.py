"""The OPD-vs-RL-per-world study (issue 14, point 7): LR selection per method and world (grid grown at its top
edge), the per-world numbers (target from OPD at its selected LR, paired OPD-over-GRPO speedups over builds) and
the generated sentence, end to end through the study CLI on synthetic run folders."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from bench.studies import cli
from bench.studies.jobs import DEFAULT_LR
from bench.studies.opd_vs_rl import lead_sentence, method_job, parse_floats, ratio_ci
from bench.studies.run_metrics import selection_score
from bench.studies.speedup import load_runs
from tests.bench.studies.synthetic_runs import SyntheticLauncher, fake_train_ext


def test_jobs_and_options(tmp_path):
    job = method_job(tmp_path, "flip", "GRPO", 3 * DEFAULT_LR, 4, 1, selection=False)
    assert job.run_dir == tmp_path / "flip" / "GRPO" / "GRPO-lr6e-5" / "seed4"
    o = job.overrides
    assert o[:3] == ["experiment=grpo", "world=flip", "world.build=1"] and "data.selection_prompts=0" in o
    job = method_job(tmp_path, "scratch", "OPD", DEFAULT_LR, 0, 0, selection=True)
    assert job.run_dir == tmp_path / "scratch" / "OPD" / "OPD" / "seed0"
    assert "experiment=opd" in job.overrides and not any(x.startswith(("world.build", "data.")) for x in job.overrides)
    assert parse_floats("1,3,10", "--lr-multipliers") == [1, 3, 10]
    with pytest.raises(ValueError, match="--lr-multipliers='3,1'.*increasing"):
        parse_floats("3,1", "--lr-multipliers")
    with pytest.raises(ValueError, match="--lr-extensions='x'"):
        parse_floats("x", "--lr-extensions")
    with pytest.raises(ValueError, match="--seeds=2.*at least 3"):
        cli.main(["opd_vs_rl", "--seeds", "2"], launcher=SyntheticLauncher(fake_train_ext))


def test_ratio_ci_pairs_within_builds():
    one = ratio_ci({(0, 0): 2.0, (0, 1): 4.0, (0, 2): None})
    assert one["mean"] == 3.0 and one["n"] == 2 and "n_builds" not in one
    several = ratio_ci({(0, 0): 2.0, (0, 3): 4.0, (1, 1): 1.0, (2, 2): None})
    assert several["mean"] == pytest.approx(2.0) and several["n_builds"] == 2  # build means 3 and 1


def sentence_world(opd_reached, grpo_reached, sp, tok=None):
    stat = {"mean": 5.0, "ci95": [4.0, 6.0], "n": 3}
    return {"target": {"value": 0.8}, "selected_lr": {"OPD": 6e-5, "GRPO": 2e-3}, "horizon": 30,
            "rows": {"OPD": {"reached_target": opd_reached, "steps_to_target": stat, "n_seeds": 3},
                     "GRPO": {"reached_target": grpo_reached, "steps_to_target": stat, "n_seeds": 3}},
            "speedup_steps": sp, "speedup_tokens": tok or sp}


def test_lead_sentence_says_what_the_numbers_say():
    lead = lead_sentence("flip", sentence_world("3/3", "3/3", {"mean": 3.2, "ci95": [2.1, 4.3], "n": 3}))
    assert lead.startswith("flip (target 0.800; OPD at LR 6e-5, GRPO at 2e-3") and "OPD leads, with" in lead
    assert "3.20× [2.10, 4.30] in steps" in lead
    behind = lead_sentence("style", sentence_world("3/3", "3/3", {"mean": 0.5, "ci95": [0.3, 0.7], "n": 3}))
    assert "GRPO leads" in behind and "below 1" in behind
    tie = lead_sentence("style", sentence_world("3/3", "2/3", {"mean": 1.2, "ci95": [0.8, 1.6], "n": 2}))
    assert "no clear lead" in tie and "GRPO misses it in 1 of 3 runs" in tie
    never = lead_sentence("scratch", sentence_world("3/3", "0/3", {"mean": None, "ci95": None, "n": 0}))
    assert "OPD leads: it reaches the target" in never and "GRPO in none of its runs within 30 steps" in never
    few = lead_sentence("flip", sentence_world("3/3", "3/3", {"mean": 2.0, "ci95": None, "n": 1}))
    assert "too few for a CI, so no lead is claimed" in few


def test_a_target_below_the_start_is_called_out():
    w = sentence_world("3/3", "3/3", {"mean": 0.4, "ci95": [0.1, 0.7], "n": 3})
    w["target"] = {"value": 0.18, "per_build": {"0": 0.11, "1": 0.20, "2": 0.22}}
    # two standard errors of a 0.05 start over 200 prompts: 2 * sqrt(0.05 * 0.95 / 200) = 0.031
    w["start_by_build"] = {b: {"accuracy": 0.05, "noise": 0.031} for b in ("0", "1", "2")}
    assert "Caution" not in lead_sentence("scratch", w)  # every target clear of its build's start
    w["start_by_build"]["1"] = {"accuracy": 0.17, "noise": 0.053}  # 0.20 <= 0.17 + 0.053
    w["start_accuracy"] = {"OPD": {"mean": 0.153}, "GRPO": {"mean": 0.153}}
    w["rows"]["OPD"]["final_accuracy"], w["rows"]["GRPO"]["final_accuracy"] = {"mean": 0.187}, {"mean": 0.122}
    caution = lead_sentence("scratch", w)
    assert "on build(s) 1 the target is within two standard errors of the start" in caution
    assert "OPD 0.153 -> 0.187, GRPO 0.153 -> 0.122" in caution


def final(evals, window=3):
    return float(np.mean([e["test/greedy"] for e in evals][-window:]))


def crossing(evals, target):
    return next((e["step"] for e in evals if e["test/greedy"] >= target), None)


def test_study_end_to_end_on_synthetic_runs(tmp_path, frozen):
    runs, out = tmp_path / "runs", tmp_path / "out"
    launcher = SyntheticLauncher(fake_train_ext)
    args = ["opd_vs_rl", "--worlds", "flip,scratch,style", "--seeds", "3", "--sweep-seeds", "2", "--builds", "3",
            "--runs-dir", str(runs), "--out", str(out)]
    cli.main(args, launcher=launcher)
    assert len(launcher.launched) == len(set(launcher.launched))  # nothing trained twice
    got = json.loads((out / "opd_vs_rl.json").read_text())
    md = (out / "opd_vs_rl.md").read_text()
    assert list(got["worlds"]) == ["flip", "scratch", "style"] and got["seed_builds"] == {"0": 0, "1": 1, "2": 2}
    grid = [DEFAULT_LR * m for m in (1, 3, 10)]
    for world, w in got["worlds"].items():
        assert w["sentence"] in md and w["sentence"].startswith(f"{world} (target {w['target']['value']:.3f}")
        for m in ("OPD", "GRPO"):
            sel = w["lr_selection"][m]
            tried = [c["lr"] for c in sel["candidates"]]
            assert tried[:3] == grid and tried == sorted(tried)
            # selection: the best mean selection score over the sweep seeds, recomputed from the run folders
            scores = {lr: np.mean([selection_score(load_runs(method_job(runs, world, m, lr, s, s % 3, True).run_dir)[0])
                                   for s in (0, 1)]) for lr in tried}
            assert sel["selected_lr"] == max(scores, key=scores.get) == w["selected_lr"][m]
            # grown only while the best was the largest tried: every LR past the grid was added for that reason
            assert len(tried) == 3 or scores[tried[-2]] == max(scores[lr] for lr in tried[:-1])
        # the per-world numbers, from the run folders at the selected LRs
        evals = {(m, s): load_runs(method_job(runs, world, m, w["selected_lr"][m], s, s % 3, s < 2).run_dir)[0].evals
                 for m in ("OPD", "GRPO") for s in range(3)}
        # one target per build (seed s in build s % 3, one OPD seed each): 95% of that build's OPD final accuracy
        target = {s: 0.95 * final(evals[("OPD", s)]) for s in range(3)}
        assert w["target"]["per_build"] == {str(s): pytest.approx(t) for s, t in target.items()}
        assert w["target"]["value"] == pytest.approx(np.mean(list(target.values())))
        for b, start in w["start_by_build"].items():  # step 0 of OPD's seed in that build, 200 test prompts
            acc = evals[("OPD", int(b))][0]["test/greedy"]
            assert start == {"accuracy": pytest.approx(acc), "noise": pytest.approx(2 * np.sqrt(acc * (1 - acc) / 200))}
        for m in ("OPD", "GRPO"):  # where each started: step 0's greedy accuracy, so a target below it shows
            assert w["start_accuracy"][m]["mean"] == pytest.approx(np.mean([evals[(m, s)][0]["test/greedy"]
                                                                            for s in range(3)]))
        by_build = defaultdict(list)
        for s in range(3):
            o, g = crossing(evals[("OPD", s)], target[s]), crossing(evals[("GRPO", s)], target[s])
            assert w["pairs"][s]["seed"] == s and w["pairs"][s]["build"] == s % 3
            assert w["pairs"][s]["speedup_steps"] == (pytest.approx(g / o) if o and g else None)
            if o and g:
                by_build[s % 3].append(g / o)
        want = float(np.mean([np.mean(v) for v in by_build.values()])) if by_build else None
        assert w["speedup_steps"]["mean"] == (pytest.approx(want) if want is not None else None)
    # the synthetic GRPO is slowed on flip and scratch only: OPD's lead is largest there
    assert got["worlds"]["flip"]["rows"]["GRPO"]["reached_target"] == "0/3"
    assert "OPD leads" in got["worlds"]["flip"]["sentence"]
    assert "OPD leads" not in got["worlds"]["style"]["sentence"]

    again = SyntheticLauncher(fake_train_ext)
    cli.main(args, launcher=again)
    assert again.launched == []
