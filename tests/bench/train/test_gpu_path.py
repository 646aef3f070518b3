"""GPU-path switches, checked on CPU: each must leave the maths unchanged."""

from __future__ import annotations

import json

import pytest
import torch

from core.rollout import SamplingParams, make_engine

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns processes: not in make test-fast


def test_static_kv_cache_generates_what_the_dynamic_one_does(micro_cache):
    from transformers import AutoTokenizer

    from bench.world import load_model
    from tests.bench.world.test_hubworld import micro_model

    path = micro_model(micro_cache)
    tok = AutoTokenizer.from_pretrained(path)
    model = load_model(path, trainable=False)
    prompts = ["123+456=", "99+1=", "5+5="]  # different lengths: left padding under a static cache
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12, logprobs=False)
    texts = {mode: make_engine("hf", model, tok, {"static_cache": mode}).generate(prompts, 1, greedy).texts
             for mode in ("off", "on")}
    assert texts["on"] == texts["off"]
    with pytest.raises(ValueError, match="hf.static_cache='yes'"):
        make_engine("hf", model, tok, {"static_cache": "yes"})


def test_activation_checkpointing_leaves_training_unchanged(micro_cfg, tmp_path):
    from bench.train import train

    losses = {}
    for on in (False, True):
        out = tmp_path / str(on)
        torch.manual_seed(0)
        train(micro_cfg(["trainer.total_steps=2", f"trainer.activation_checkpointing={on}"], out=out))
        losses[on] = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[True] == pytest.approx(losses[False], abs=1e-6)


def test_gpu_check_script_runs_its_smoke_mode_on_cpu(tmp_path):
    from bench.studies.perf.gpu_check import main

    report = main(["--device", "cpu", "--smoke", "--out", str(tmp_path / "gpu.json")])
    on_disk = json.loads((tmp_path / "gpu.json").read_text())
    assert on_disk["opd_step"]["update_mfu"] == report["opd_step"]["update_mfu"] > 0
    assert set(report["generation"]) == {"dynamic", "static", "static_over_dynamic"}
    assert set(report["goals"]) == {"update_mfu_ge_0.35", "update_peak_le_31_gib", "rollout_ge_3x_dynamic"}
