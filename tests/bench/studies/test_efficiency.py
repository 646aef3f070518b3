"""The efficiency orchestration: run reuse from table2 and the learning-rate sweep that grows at its top edge."""

from __future__ import annotations

import json

import pytest

from bench.studies import efficiency
from bench.studies.efficiency import method_job, reused_table2_dir

SPEC = efficiency.load_sweep()
LR_GRID, LR_EXTENSIONS = tuple(SPEC["grid"]), tuple(SPEC["extensions"])


def fake_run(folder, method, lr, score):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"method": method, "seed": 0, "lr": lr, "status": "complete"}))
    evals = [{"step": s, "test/greedy": score, "val/greedy": score} for s in (0, 2)]
    (folder / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))


def test_reuses_identical_table2_runs_only(tmp_path):
    t2 = tmp_path / "table2"
    fake_run(t2 / "OPD-lr6e-5" / "seed0", "OPD-lr6e-5", 6e-5, 0.5)
    assert reused_table2_dir("OPD", 6e-5, 0, t2) == t2 / "OPD-lr6e-5" / "seed0"
    assert reused_table2_dir("EffOPD", 6e-5, 0, t2) is None  # table2 runs EffOPD at the default LR only
    assert reused_table2_dir("GRPO", 6e-5, 0, t2) is None
    assert method_job(SPEC, tmp_path / "eff", t2, "OPD", 6e-5, 0, selection=True).run_dir == t2 / "OPD-lr6e-5" / "seed0"
    job = method_job(SPEC, tmp_path / "eff", t2, "GRPO", 2e-4, 1, selection=False)
    assert job.run_dir == tmp_path / "eff" / "GRPO" / "GRPO-lr2e-4" / "seed1"
    assert "experiment=grpo" in job.overrides and "data.selection_prompts=0" in job.overrides


def test_sweep_grows_while_the_best_lr_is_the_largest(tmp_path):
    # GRPO's score rises with the LR all the way; SFT peaks inside the grid.
    score = {"GRPO": lambda lr: lr, "SFT": lambda lr: -abs(lr - 6e-5)}
    launched = []

    class FakeContext:  # StudyContext.run without launching: writes the runs directly
        def run(self, jobs):
            for job in jobs:
                if not job.done:
                    launched.append(job.run_dir)
                    method = job.run_dir.parts[-3]
                    lr = float(next(o for o in job.overrides if o.startswith("trainer.lr=")).split("=")[1])
                    fake_run(job.run_dir, method, lr, score[method](lr))

    result = efficiency.sweep(FakeContext(), SPEC, tmp_path / "eff", tmp_path / "t2", ["GRPO", "SFT"], [0, 1])
    assert [c["lr"] for c in result["GRPO"]["candidates"]] == [*LR_GRID, *LR_EXTENSIONS]
    assert result["GRPO"]["selected_lr"] == LR_EXTENSIONS[-1]
    assert [c["lr"] for c in result["SFT"]["candidates"]] == list(LR_GRID) and result["SFT"]["selected_lr"] == 6e-5
    assert len(launched) == 2 * (len(LR_GRID) * 2 + len(LR_EXTENSIONS))  # no run trained twice


def test_sweep_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "sweep.yaml"
    bad.write_text("methods: {OPD: opd}\nreference: GRPO\ngrid: [2.0e-5]\nextensions: []\nseeds: 5\nsweep_seeds: 2\n")
    with pytest.raises(ValueError, match="reference 'GRPO'"):
        efficiency.load_sweep(bad)
    bad.write_text("methods: {OPD: opd}\nreference: OPD\ngrid: [2.0e-4, 2.0e-5]\nextensions: []\nseeds: 5\n"
                   "sweep_seeds: 2\n")
    with pytest.raises(ValueError, match="increasing"):
        efficiency.load_sweep(bad)
    bad.write_text("methods: {OPD: opd}\nreference: OPD\ngrid: 2.0e-5\nextensions: []\nseeds: 5\nsweep_seeds: 2\n")
    with pytest.raises(ValueError, match="'grid' must be a list"):
        efficiency.load_sweep(bad)
    assert efficiency.load_sweep()["reference"] == "OPD"
