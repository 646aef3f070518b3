"""The TRL comparison benchmark (bench.studies.perf): paired statistics, settings, report, CLI; a 1-step smoke run
when the benchmark extra (trl) is installed."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass

import pytest

from bench.config import compose_config
from bench.studies.perf import deps
from bench.studies.perf.measure import measurement
from bench.studies.perf.pairs import COMPLETIONS_PER_STEP, MAX_NEW_TOKENS, PAIRS, our_overrides, parse_pairs
from bench.studies.perf.report import build_report, render_markdown
from bench.studies.perf.stats import paired_ratios, summarize_pair
from bench.studies.perf.trl_compare import parse_args, side_order
from bench.studies.perf.trl_settings import describe, trainer_kwargs
from bench.studies.perf.trl_timing import phase_split
from tests.conftest import MICRO_WORLD


def run(side, repeat, step_seconds, tokens=1000, wall=10.0, split=None):
    m = measurement(side, "opd", len(step_seconds), 32, step_seconds, wall, tokens,
                    split or {"generate": sum(step_seconds) / 2, "update": sum(step_seconds) / 2}, threads=1)
    m["repeat"] = repeat
    return m


# Repeat r: ours takes 2, 1, 4 s in total for 2 steps, TRL 4, 4, 2 s -> steps/s ratios 2, 4, 0.5.
RUNS = [run("ours", 0, [1.0, 1.0]), run("trl", 0, [2.0, 2.0]),
        run("ours", 1, [0.5, 0.5]), run("trl", 1, [2.0, 2.0]),
        run("ours", 2, [2.0, 2.0]), run("trl", 2, [1.0, 1.0])]


def test_measurement_rates_use_the_timed_steps_only():
    m = run("ours", 0, [1.0, 3.0], tokens=2000, wall=100.0)
    assert m["steps_per_s"] == pytest.approx(0.5) and m["tokens_per_s"] == pytest.approx(500.0)
    assert m["step_seconds_total"] == 4.0 and m["wall_seconds"] == 100.0
    assert m["steady_steps_per_s"] == pytest.approx(1 / 3.0)  # without the first step


def test_ratios_are_paired_within_a_repeat_then_the_median():
    assert paired_ratios(RUNS, "steps_per_s") == pytest.approx([2.0, 4.0, 0.5])
    s = summarize_pair(RUNS)
    assert s["steps_per_s"]["ratio_ours_over_trl"]["median"] == pytest.approx(2.0)
    assert s["steps_per_s"]["ours_median"] == pytest.approx(1.0) and s["steps_per_s"]["trl_median"] == 0.5
    assert s["step_seconds_total"]["ratio_ours_over_trl"]["median"] == pytest.approx(0.5)
    assert s["step_seconds_total"]["ratio_ours_over_trl"]["ours_faster_if"] == "< 1"
    # seconds per step by phase, median over repeats: ours 0.5, 0.25, 1.0 per phase per step
    assert s["seconds_per_step_split"]["ours"] == {"generate": 0.5, "update": 0.5}


def test_a_repeat_missing_one_side_is_left_out_of_the_ratios():
    assert paired_ratios(RUNS[:3], "steps_per_s") == pytest.approx([2.0])


def test_report_assembly_and_markdown():
    pair = PAIRS["opd"]
    machine = {"platform": "Linux", "cpu": "CPU", "cpus": 2, "torch_threads": 1, "torch_version": "2",
               "transformers_version": "5", "trl_version": "1.16.0", "accelerate_version": "1"}
    options = {"steps": 2, "repeats": 3, "order": "abab", "pairs": ["opd"], "threads": 1}
    runs = [dict(r, trl_class="trl.DistillationTrainer") if r["side"] == "trl" else r for r in RUNS]
    report = build_report(options, [pair], runs, machine)
    json.dumps(report)  # serialisable as is
    p = report["pairs"]["opd"]
    assert p["trl_class"] == "trl.DistillationTrainer" and p["steps_per_s"]["ratio_ours_over_trl"]["median"] == 2.0
    assert len(report["runs"]) == 6 and "Steps/s" in report["method"]
    md = render_markdown(report)
    assert "| opd | DistillationTrainer | 1.000 | 0.500 | 2.00x |" in md
    assert "trl 1.16.0" in md and "Seconds per step by phase" in md


def test_trl_phases_map_to_our_phase_names():
    split = phase_split(10.0, {"transformers.generate": 4.0, "_prepare_inputs": 5.0, "compute_loss": 3.0})
    assert split == {"generate": 4.0, "prepare": 1.0, "update": 5.0, "update.compute_loss": 3.0}
    assert phase_split(2.0, {}) == {"total": 2.0}


def test_settings_record_separates_non_default_values():
    @dataclass
    class Config:
        lr: float = 1e-6
        bf16: bool | None = None
        steps: int = -1

    rec = describe(Config, {"lr": 1e-6, "bf16": False, "steps": 3})
    assert rec["explicit_default"] == {"lr": 1e-6}
    assert rec["non_default"]["steps"] == {"value": 3, "trl_default": -1}
    assert "True" in rec["non_default"]["bf16"]["trl_default"]  # what None resolves to, not just None


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_pair_composes_to_the_same_batch(name, tmp_path):
    pair = PAIRS[name]
    cfg = compose_config(our_overrides(pair, 3, 1, tmp_path))
    assert cfg.trainer.prompts_per_step * cfg.rollout.n == COMPLETIONS_PER_STEP == pair.completions_per_step
    assert cfg.trainer.micro_batch_size == COMPLETIONS_PER_STEP and cfg.rollout.max_new_tokens == MAX_NEW_TOKENS
    assert cfg.trainer.total_steps == 3 and cfg.trainer.threads == 1 and not cfg.trainer.save_final_model
    kw = trainer_kwargs(pair, cfg, 3)
    assert kw["per_device_train_batch_size"] == COMPLETIONS_PER_STEP and kw["max_steps"] == 3
    assert kw["bf16"] is False and kw["activation_checkpointing"] is False and kw["report_to"] == "none"
    assert kw["learning_rate"] == cfg.trainer.lr and kw["lr_scheduler_type"] == "constant"
    if pair.trl_trainer == "GRPOTrainer":
        assert kw["num_generations"] == 4 and kw["beta"] == 0.0 and kw["loss_type"] == "dapo"
    if pair.trl_trainer == "DistillationTrainer":
        assert kw["beta"] == 1.0 and kw["max_completion_length"] == MAX_NEW_TOKENS


def test_cli_options():
    a = parse_args([])
    assert (a.steps, a.repeats, a.threads, a.order, a.warmup) == (10, 3, 1, "abab", True)
    assert parse_args(["--no-warmup"]).warmup is False
    assert [p.name for p in a.pair_list] == ["opd", "grpo", "sft"]
    assert [p.name for p in parse_args(["--pairs", "sft,opd_gkd"]).pair_list] == ["sft", "opd_gkd"]
    with pytest.raises(SystemExit):
        parse_args(["--pairs", "ppo"])
    with pytest.raises(ValueError, match="choose from"):
        parse_pairs("opd,nope")
    assert [side_order(r, "abab") for r in range(2)] == [("ours", "trl")] * 2
    assert [side_order(r, "abba") for r in range(2)] == [("ours", "trl"), ("trl", "ours")]


def test_missing_trl_is_a_one_line_error_naming_the_extra(monkeypatch, tmp_path):
    real = importlib.import_module

    def no_trl(name, *a, **k):
        if name == "trl":
            raise ModuleNotFoundError("No module named 'trl'")
        return real(name, *a, **k)

    monkeypatch.setattr(deps.importlib, "import_module", no_trl)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM"):  # main() sets them if unset
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    from bench.studies.perf import trl_compare

    with pytest.raises(SystemExit) as exc:
        trl_compare.main(["--steps", "1", "--repeats", "1", "--out", str(tmp_path)])
    assert isinstance(exc.value, deps.MissingBenchDependency)
    assert "pip install -e '.[bench]'" in str(exc.value) and "No module named 'trl'" in str(exc.value)
    assert not (tmp_path / "trl_vs_ours.json").exists()


def test_smoke_one_step_of_one_pair(request, tmp_path):
    pytest.importorskip("trl", reason="the benchmark extra is not installed: pip install -e '.[bench]'")
    micro_cache = request.getfixturevalue("micro_cache")  # built only when the test runs
    from bench.studies.perf.trl_compare import run_comparison

    args = parse_args(["--steps", "1", "--repeats", "1", "--pairs", "opd", "--no-warmup", "--out", str(tmp_path),
                       *[f"--world-override={o}" for o in
                         [*MICRO_WORLD, f"world.cache_dir={micro_cache}", "data.train_prompts=64"]]])
    report = run_comparison(args, log=lambda *a, **k: None)
    assert [(r["side"], r["steps"]) for r in report["runs"]] == [("ours", 1), ("trl", 1)]
    trl_run = report["runs"][1]
    assert trl_run["trl_class"] == "trl.DistillationTrainer" and trl_run["completion_tokens"] > 0
    assert trl_run["trl_settings"]["explicit_default"]["beta"] == 1.0
    assert {"generate", "update"} <= set(trl_run["time_split"])
    assert report["pairs"]["opd"]["steps_per_s"]["ratio_ours_over_trl"]["median"] > 0
    assert json.loads((tmp_path / "trl_vs_ours.json").read_text())["machine"]["trl_version"]
    assert "| opd | DistillationTrainer |" in (tmp_path / "trl_vs_ours.md").read_text()


def test_free_generation_ceiling():
    from bench.studies.perf.report import free_generation_ceiling

    s = {"seconds_per_step_split": {"ours": {"generate": 0.3, "score": 0.1, "update": 0.2}},
         "steps_per_s": {"trl_median": 1.0}}
    assert free_generation_ceiling(s) == pytest.approx(1.0 / 0.3)  # TRL 1.0 s/step over our 0.3 s without rollouts
    s["steps_per_s"]["trl_median"] = None
    assert free_generation_ceiling(s) is None
