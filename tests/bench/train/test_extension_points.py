"""The trainer's extension points, used from outside: an engine registered with its settings dataclass runs the
trainer from its config block, and a registered batch stage is applied by the loop (no loop edits)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from bench.algorithms import ScoredBatch, register_batch_stage, stages
from bench.config import compose_config
from bench.train import train
from bench.train.phases import collect_batch
from bench.train.setup import build_engine
from core.io import read_jsonl
from core.rollout import Qwen3FastEngine, RolloutBatch, register_engine, registry, vllm_engine

SHORT = ["trainer.total_steps=2", "trainer.eval_every=100", "effopd.probe_when_disabled=false"]


@pytest.fixture
def scratch_registries(monkeypatch):
    monkeypatch.setattr(registry, "ENGINES", dict(registry.ENGINES))
    monkeypatch.setattr(stages, "BATCH_STAGES", dict(stages.BATCH_STAGES))


def losses(out) -> list[float]:
    return [m["loss"] for m in read_jsonl(out / "metrics.jsonl")]


@dataclass
class EchoSettings:
    tag: str = ""  # recorded by the builder


@pytest.mark.slow
def test_a_registered_engine_runs_the_trainer_from_its_config_block(micro_cfg, tmp_path, scratch_registries):
    builds = []

    @register_engine("echo", EchoSettings)
    def build_echo(model, tokenizer, settings: EchoSettings, seed: int = 0):
        builds.append((settings, seed))
        return Qwen3FastEngine(model, tokenizer)  # the tiny preset's engine underneath

    train(micro_cfg(SHORT, out=tmp_path / "fast"))
    # An engine defined outside bench/config.py has no field in RolloutConfig: give it its block on a plain config.
    cfg = OmegaConf.create(OmegaConf.to_container(micro_cfg([*SHORT, "trainer.seed=0"], out=tmp_path / "echo"),
                                                  resolve=True))
    cfg.rollout.engine, cfg.rollout.echo = "echo", {"tag": "from-config"}
    train(cfg)
    assert builds == [(EchoSettings(tag="from-config"), 0)]
    assert losses(tmp_path / "echo") == losses(tmp_path / "fast")


def test_the_vllm_block_reaches_the_engine_with_the_seed(monkeypatch):
    """What the trainer hands VLLMEngine (vLLM is not installed here: a stand-in records the call)."""
    calls = []

    class Recorder:
        def __init__(self, model, tokenizer, **kwargs):
            calls.append(kwargs)

    monkeypatch.setattr(vllm_engine, "vllm_import_error", lambda: None)
    monkeypatch.setattr(vllm_engine, "VLLMEngine", Recorder)
    cfg = compose_config(["rollout.engine=vllm", "rollout.vllm.dtype=bfloat16", "rollout.vllm.enforce_eager=on",
                          "rollout.vllm.kv_cache_memory_bytes=1024", "rollout.vllm.weight_sync=ipc",
                          "trainer.seed=3", "trainer.output_dir=unused"])
    assert isinstance(build_engine(cfg, None, None, None), Recorder)
    assert calls == [dict(kv_cache_memory_bytes=1024, gpu_memory_utilization=None, tensor_parallel_size=1,
                          dtype="bfloat16", max_model_len=None, max_num_seqs=256, logprobs_mode="processed_logprobs",
                          enforce_eager=True, enable_sleep_mode=False, sleep_level=1, weight_sync="ipc", seed=3)]


@pytest.mark.slow
def test_a_registered_batch_stage_is_applied_by_the_loop(micro_cfg, tmp_path, scratch_registries):
    seen = []

    @register_batch_stage("mask_all", applies=lambda cfg: cfg.algorithm.reward_coef == 0.25,
                          row_metrics=lambda scored: {"test/masked": (scored.loss_mask.sum(1) == 0).float()})
    def mask_all(scored: ScoredBatch, cfg) -> ScoredBatch:
        seen.append(len(scored.rollout.texts))
        return replace(scored, loss_mask=torch.zeros_like(scored.loss_mask))

    train(micro_cfg([*SHORT, "algorithm.reward_coef=0.25"]))
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert seen == [8, 8]  # every step's batch: trainer.prompts_per_step=8 x rollout.n=1
    assert all(m["test/masked"] == 1.0 and m["loss"] == 0.0 and m["grad_norm"] == 0.0 for m in metrics)


class CountingSource:
    def __init__(self):
        self.calls = 0

    def generate(self, prompts, n, params):
        self.calls += 1
        b = len(prompts) * n
        return RolloutBatch(prompt_ids=torch.ones(b, 1, dtype=torch.long),
                            prompt_mask=torch.ones(b, 1, dtype=torch.long),
                            response_ids=torch.ones(b, 3, dtype=torch.long), response_mask=torch.ones(b, 3),
                            logprobs=None, truncated=torch.zeros(b, dtype=torch.bool), texts=["x"] * b,
                            prompt_index=torch.arange(len(prompts)).repeat_interleave(n))


class Stream:
    def next(self, k):
        return [SimpleNamespace(prompt="1+1=")] * k


def test_a_registered_collecting_stage_decides_the_rounds(scratch_registries):
    @register_batch_stage("two_rounds", applies=lambda cfg: cfg.algorithm.reward_coef == 0.25, collects=True)
    def two_rounds(next_round, cfg, pad_id: int):
        parts = [next_round(), next_round()]
        return ScoredBatch.concat(parts, pad_id), {"generated_tokens": sum(p.rollout.num_tokens for p in parts)}

    cfg = compose_config(["trainer.prompts_per_step=4", "algorithm.reward_coef=0.25", "trainer.output_dir=unused"])
    src = CountingSource()
    score = lambda rollout, problems: ScoredBatch(rollout=rollout, rewards=torch.zeros(len(rollout.texts)))  # noqa: E731
    scored, info = collect_batch(cfg, src, Stream(), None, score, pad_id=0)
    assert src.calls == 2 and info == {"generated_tokens": 2 * 4 * 3} and len(scored.rollout.texts) == 8
    assert scored.rollout.prompt_index.unique().numel() == 8  # the rounds' prompts stay distinct
