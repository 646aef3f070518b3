"""The validation-axis study (issue 14, point 5): its grid (cells, overrides per variant, seeds over builds) and
its per-world, per-variant numbers, run end to end through the study CLI on synthetic run folders."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from bench.studies import cli
from bench.studies.jobs import DEFAULT_LR
from bench.studies.validation_ablation import VARIANTS, grid, parse_list
from tests.bench.studies.synthetic_runs import SyntheticLauncher, fake_train_ext, variant_factors


def test_grid_cells_overrides_and_builds(tmp_path):
    jobs = grid(tmp_path, ["style", "flip"], list(range(5)), 3, list(VARIANTS))
    assert len(jobs) == 2 * 5 * (1 + 6)
    assert set(VARIANTS) == {"EffOPD", "EffOPD-val200", "EffOPD-val50x4", "EffOPD-greedy200",
                             "EffOPD-teacher_loglik", "EffOPD-reverse_kl"}
    want_extra = {"EffOPD": [], "EffOPD-val200": ["effopd.val_prompts=200"], "EffOPD-val50x4": ["effopd.val_samples=4"],
                  "EffOPD-greedy200": ["effopd.val_prompts=200", "effopd.val_temperature=0"],
                  "EffOPD-teacher_loglik": ["effopd=teacher_loglik"], "EffOPD-reverse_kl": ["effopd=reverse_kl"]}
    for (world, label, seed), job in jobs.items():
        o = job.overrides
        assert job.run_dir == tmp_path / world / label / f"seed{seed}"
        assert f"world={world}" in o and f"trainer.lr={DEFAULT_LR}" in o and f"trainer.seed={seed}" in o
        assert f"method={label}" in o and "data.selection_prompts=0" in o
        assert ("world.build=" + str(seed % 3) in o) == (seed % 3 != 0)  # builds 0,1,2,0,1; build 0 unnamed
        if label == "OPD":
            assert o[0] == "experiment=opd" and not any(x.startswith("effopd") for x in o)
        else:
            assert o[0] == "experiment=effopd"
            assert [x for x in o if x.startswith("effopd")] == want_extra[label]
            if want_extra[label]:
                assert o[-len(want_extra[label]):] == want_extra[label]  # the variant's overrides go last


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match=r"--variants.*unknown \['EffOPD-val999'\]"):
        parse_list("EffOPD,EffOPD-val999", "--variants", tuple(VARIANTS))
    with pytest.raises(ValueError, match="--worlds"):
        parse_list("style,style", "--worlds")
    with pytest.raises(ValueError, match="--seeds=1"):
        cli.main(["validation", "--seeds", "1"], launcher=SyntheticLauncher(fake_train_ext))


def final(evals, window=3):
    return float(np.mean([e["test/greedy"] for e in evals][-window:]))


def crossing(evals, target):
    return next((e["step"] for e in evals if e["test/greedy"] >= target), None)


def read_run(folder: Path) -> tuple[list[dict], dict]:
    evals = [json.loads(x) for x in (folder / "evals.jsonl").read_text().splitlines()]
    return evals, json.loads((folder / "summary.json").read_text())


def build_mean(values: dict[int, list[float]]) -> float:
    return float(np.mean([np.mean(v) for v in values.values() if v]))


def test_study_end_to_end_on_synthetic_runs(tmp_path, frozen):
    runs, out = tmp_path / "runs", tmp_path / "out"
    launcher = SyntheticLauncher(fake_train_ext)
    args = ["validation", "--seeds", "5", "--builds", "3", "--runs-dir", str(runs), "--out", str(out)]
    result = cli.main(args, launcher=launcher)
    assert len(launcher.launched) == 2 * 5 * 7
    got = json.loads((out / "validation_ablation.json").read_text())
    assert got["seed_builds"] == {"0": 0, "1": 1, "2": 2, "3": 0, "4": 1} and got["builds"] == [0, 1, 2]
    md = (out / "validation_ablation.md").read_text()
    assert "## style" in md and "## flip" in md and all(f"| {v} |" in md for v in VARIANTS)

    for world in ("style", "flip"):
        w = got["worlds"][world]
        assert w["builds"] == [0, 1, 2] and "world builds" in w["ci_method"]
        folders = {(label, s): runs / world / label / f"seed{s}" for label in ("OPD", *VARIANTS) for s in range(5)}
        data = {k: read_run(f) for k, f in folders.items()}
        # One target per build: 95% of the mean final accuracy of OPD's seeds on that build (seed s in build s % 3).
        target = {b: 0.95 * np.mean([final(data[("OPD", s)][0]) for s in range(5) if s % 3 == b]) for b in range(3)}
        assert w["target"]["per_build"] == {str(b): pytest.approx(t) for b, t in target.items()}
        assert w["target"]["value"] == pytest.approx(np.mean(list(target.values())))
        opd_steps = {s: crossing(data[("OPD", s)][0], target[s % 3]) for s in range(5)}
        for label in VARIANTS:
            v = w["variants"][label]
            steps, speed, val = defaultdict(list), defaultdict(list), defaultdict(list)
            for s in range(5):
                b = s % 3
                st = crossing(data[(label, s)][0], target[b])
                if st is not None:
                    steps[b].append(st)
                if st and opd_steps[s]:
                    speed[b].append(opd_steps[s] / st)
                val[b].append(data[(label, s)][1]["validation_seconds"])
            assert v["steps_to_target"]["mean"] == pytest.approx(build_mean(steps))
            assert v["speedup_steps"]["mean"] == pytest.approx(build_mean(speed))
            assert v["validation_seconds"]["mean"] == pytest.approx(build_mean(val))
            assert v["speedup_wall_net"]["mean"] is not None and v["speedup_wall_net"]["ci95"] is not None
            assert [t["step"] for t in v["triggers"]] == [1, 2, 4, 8, 16]
            assert all(t["n"] == 5 and 0 <= t["accepted_frac"] <= 1 for t in v["triggers"])
            # The synthetic variants share the official run's randomness: only the validation differs, so
            # validation seconds scale by exactly the variant's cost (prompts x samples, signal).
            _, cost = variant_factors(["experiment=effopd", *VARIANTS[label][1]])
            for s in range(5):
                official = data[("EffOPD", s)][1]["validation_seconds"]
                assert data[(label, s)][1]["validation_seconds"] == pytest.approx(official * cost, abs=1e-3)
        # a faster-moving variant (less noisy validation in the synthetic world) needs no more steps than official
        for s in range(5):
            off = crossing(data[("EffOPD", s)][0], target[s % 3])
            fast = crossing(data[("EffOPD-teacher_loglik", s)][0], target[s % 3])
            assert off is None or (fast is not None and fast <= off)
    assert result["worlds"].keys() == got["worlds"].keys()

    again = SyntheticLauncher(fake_train_ext)
    cli.main(args, launcher=again)
    assert again.launched == []  # every run reused


def test_each_variant_composes_to_its_validation_setting(tmp_path):
    """The trainer's config for each variant's job: the official EffOPD settings but for the validation."""
    from bench.config import compose_config

    want = {"EffOPD": ("accuracy", 50, 1, 1.0), "EffOPD-val200": ("accuracy", 200, 1, 1.0),
            "EffOPD-val50x4": ("accuracy", 50, 4, 1.0), "EffOPD-greedy200": ("accuracy", 200, 1, 0.0),
            "EffOPD-teacher_loglik": ("teacher_loglik", 50, 1, 1.0), "EffOPD-reverse_kl": ("reverse_kl", 50, 1, 1.0)}
    jobs = grid(tmp_path, ["flip"], [1], 3, list(VARIANTS))
    official = None
    for (_, label, _), job in jobs.items():
        cfg = compose_config(job.overrides)
        assert (cfg.world.name, cfg.world.build, cfg.trainer.lr, cfg.method) == ("flip", 1, DEFAULT_LR, label)
        if label == "OPD":
            assert not cfg.effopd.enabled
            continue
        e = cfg.effopd
        assert e.enabled and (e.val_signal, e.val_prompts, e.val_samples, e.val_temperature) == want[label]
        rest = {k: v for k, v in e.items() if k not in ("val_signal", "val_prompts", "val_samples", "val_temperature")}
        official = official or rest
        assert rest == official  # schedule, multipliers, acceptance: the official ones in every variant
