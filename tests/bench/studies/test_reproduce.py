"""The reproduce / regimes orchestration: LR selection on validation data, target sensitivity, run reuse."""

from __future__ import annotations

import pytest

from bench.studies.jobs import DEFAULT_LR, Job, train_job
from bench.studies.regimes import regime_job, table2_label
from bench.studies.run_metrics import selection_score
from bench.studies.speedup import load_runs
from bench.studies.table2 import target_sensitivity
from tests.bench.studies.synthetic_runs import fake_train
from tests.bench.studies.test_table2 import CURVES, write_run


def test_selection_score_is_mean_validation_accuracy(tmp_path):
    (run,) = load_runs(write_run(tmp_path, "OPD", 0, CURVES[("OPD", 0)]))
    assert selection_score(run) == pytest.approx(sum(CURVES[("OPD", 0)]) / 6)


def test_target_sensitivity_lower_targets_are_reached_earlier(tmp_path):
    for (method, seed), accs in CURVES.items():
        write_run(tmp_path, method, seed, accs)
    rows = target_sensitivity(load_runs(tmp_path), fractions=(0.5, 0.95))
    assert [r["fraction"] for r in rows] == [0.5, 0.95]
    opd = {r["fraction"]: next(x for x in r["rows"] if x["method"] == "OPD") for r in rows}
    assert opd[0.5]["steps_to_target"]["mean"] == 10.0  # both OPD seeds reach 0.48 at step 10
    assert opd[0.95]["steps_to_target"]["mean"] == 25.0  # steps 20 and 30
    eff = next(x for x in rows[1]["rows"] if x["method"] == "EffOPD")
    assert eff["speedup_steps"]["mean"] == pytest.approx(2.5)


def test_regimes_reuse_identical_table2_runs(tmp_path):
    table2 = tmp_path / "table2"
    done = table2 / "OPD-lr6e-5" / "seed1"
    fake_train(done, train_job(table2, "OPD-lr6e-5", "opd", 1, 3 * DEFAULT_LR, selection=True).overrides)
    assert table2_label("OPD", DEFAULT_LR) == "OPD" and table2_label("EffOPD", 6e-5) is None
    reused = regime_job(tmp_path / "regimes", "style", 6e-5, "OPD", 1, table2)
    assert reused.run_dir == done and reused.done
    # Rebuilt as table 2 made it (its LR 3 x 2e-5 = 6.000000000000001e-05, selection on): the same fingerprint.
    assert reused.overrides == train_job(table2, "OPD-lr6e-5", "opd", 1, 3 * DEFAULT_LR, selection=True).overrides
    fresh = regime_job(tmp_path / "regimes", "scratch", 6e-5, "OPD", 1, table2)
    assert fresh.run_dir == tmp_path / "regimes" / "scratch" / "6e-5" / "OPD" / "seed1"
    assert "world=scratch" in fresh.overrides and "trainer.lr=6e-05" in fresh.overrides
    assert isinstance(fresh, Job) and not fresh.done


def test_only_runs_in_the_lr_selection_score_the_selection_prompts(tmp_path):
    assert "data.selection_prompts=0" not in train_job(tmp_path, "OPD", "opd", 0, DEFAULT_LR, selection=True).overrides
    assert "data.selection_prompts=0" in train_job(tmp_path, "EffOPD", "effopd", 0, DEFAULT_LR).overrides


def test_table2_and_efficiency_spread_their_seeds_over_world_builds(tmp_path, frozen):
    """--builds 3: seed s trains in build s % 3 in every arm, the target is per build, efficiency reuses table 2's
    runs of the same build and build roles only, and the JSON says which seed ran where."""
    import json

    from bench.studies import cli
    from tests.bench.studies.synthetic_runs import SyntheticLauncher

    runs, out = tmp_path / "runs", tmp_path / "out"
    launcher = SyntheticLauncher()
    cli.main(["table2", "--seeds", "4", "--builds", "3", "--build-roles", "student", "--runs-dir", str(runs / "table2"),
              "--out", str(out)], launcher=launcher)
    for folder in launcher.launched:
        summary = json.loads((folder / "summary.json").read_text())
        assert summary.get("world_build", 0) == int(folder.name[4:]) % 3, folder
    t2 = json.loads((out / "table2.json").read_text())
    assert t2["seed_builds"] == {"0": 0, "1": 1, "2": 2, "3": 0}
    per_build = t2["target"]["per_build"]
    assert sorted(per_build) == ["0", "1", "2"] and len(set(per_build.values())) == 3  # builds end apart
    assert t2["target"]["value"] == pytest.approx(sum(per_build.values()) / 3)
    opd = next(r for r in t2["rows"] if r["method"] == "OPD")
    assert "between_builds" in opd and "world builds" in t2["ci_method"]
    # the headline over builds: one ratio per build, the geometric mean and the verdict, first in the markdown
    head = t2["headline"]["EffOPD"]["steps"]
    assert sorted(head["per_build"]) == ["0", "1", "2"] and head["geomean"]["n"] == 3
    assert head["verdict"] in ("faster", "not shown", "slower")
    md = (out / "table2.md").read_text()
    assert md.index("## Verdict") < md.index("## All methods") and "EffOPD vs OPD: " in md

    eff = SyntheticLauncher()
    cli.main(["efficiency", "--seeds", "4", "--runs-dir", str(runs / "efficiency"), "--out", str(out),
              "--table2-runs-dir", str(runs / "table2")], launcher=eff)
    assert not set(eff.launched) & set(launcher.launched)  # nothing trained twice
    for folder in eff.launched:
        assert json.loads((folder / "summary.json").read_text()).get("world_build", 0) == int(folder.name[4:]) % 3
    e = json.loads((out / "efficiency.json").read_text())
    assert e["seed_builds"] == t2["seed_builds"] and sorted(e["target"]["per_build"]) == ["0", "1", "2"]
    # OPD's and EffOPD's default-LR sweep arms are table 2's runs where the build is the same: build 0 (table 2's
    # builds 1 and 2 re-seed only the student, efficiency's every role by default)
    retrained = [f for f in eff.launched if f.parent.name in ("OPD-lr2e-5", "EffOPD-lr2e-5")]
    assert retrained and all(int(f.name[4:]) % 3 != 0 for f in retrained)
    again = SyntheticLauncher()
    cli.main(["efficiency", "--seeds", "4", "--runs-dir", str(runs / "efficiency2"), "--out", str(out),
              "--table2-runs-dir", str(runs / "table2"), "--build-roles", "student"], launcher=again)
    assert not [f for f in again.launched if f.parent.name in ("OPD-lr2e-5", "EffOPD-lr2e-5")]


def test_table2_runs_the_selection_runs_first_then_the_rest_with_the_top_up(tmp_path, frozen):
    """The LR selection reads the sweep arms' sweep-seed runs only: they are launched first; everything else
    (OPD and EffOPD on the other seeds, EffOPD's sweep seeds, the winner's top-up) goes in one second queue."""
    from bench.studies import cli
    from tests.bench.studies.synthetic_runs import SyntheticLauncher

    launcher = SyntheticLauncher()
    runs = tmp_path / "runs"
    cli.main(["table2", "--runs-dir", str(runs), "--out", str(tmp_path / "out")], launcher=launcher)
    first = {(f.parent.name, f.name) for f in launcher.launched[:6]}
    assert first == {(label, f"seed{s}") for label in ("OPD", "OPD-lr6e-5", "OPD-lr2e-4") for s in (0, 1)}
    later = [(f.parent.name, f.name) for f in launcher.launched[6:]]
    assert len(later) == len(set(later)) == 20  # 6 OPD + 8 EffOPD + the winner's 6 top-up seeds, none twice
    assert sum(name not in ("OPD", "EffOPD") for name, _ in later) == 6
