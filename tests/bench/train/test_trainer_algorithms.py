"""Every algorithm through the one trainer on the micro world: GRPO (+ EffOPD), DAPO, SFT, GKD."""

from __future__ import annotations

import json

import pytest
import torch

from bench.algorithms import ScoredBatch
from bench.algorithms.logprobs import response_logprobs
from bench.config import compose_config
from bench.train import train
from bench.train.phases import collect_batch
from bench.world import load_model, load_world
from core.io import read_jsonl
from core.rollout import RolloutBatch
from evals.datasets.tinyworld_task import make_problem

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns processes: not in make test-fast


def test_grpo_run_with_effopd_hook(micro_cfg, tmp_path):
    summary = train(micro_cfg(["experiment=grpo_effopd", "trainer.prompts_per_step=4"]))
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["status"] == "complete" and summary["validation_seconds"] > 0
    assert [t["step"] for t in read_jsonl(tmp_path / "run" / "effopd.jsonl")] == [1, 2, 4]
    assert all("reward_mean" in m and "reverse_kl" not in m for m in metrics)  # no teacher in GRPO
    assert metrics[0]["generated_tokens"] > 0


def test_dapo_run_counts_generation_rounds(micro_cfg, tmp_path):
    train(micro_cfg(["experiment=dapo", "trainer.prompts_per_step=4", "algorithm.max_gen_batches=2"]))
    for m in read_jsonl(tmp_path / "run" / "metrics.jsonl"):
        assert 1 <= m["dapo/gen_rounds"] <= 2
        assert m["dapo/kept_groups"] == 4 or m["dapo/gen_rounds"] == 2  # full batch, or the cap was hit
        assert "shaped_reward_mean" in m


class ScriptedSource:
    """Rollouts whose rewards follow a script: each round, ``informative[r]`` groups have mixed rewards."""

    def __init__(self, informative: list[int]):
        self.informative, self.round = informative, 0

    def generate(self, prompts, n, params):
        b = len(prompts) * n
        return RolloutBatch(prompt_ids=torch.ones(b, 1, dtype=torch.long),
                            prompt_mask=torch.ones(b, 1, dtype=torch.long),
                            response_ids=torch.ones(b, 2, dtype=torch.long), response_mask=torch.ones(b, 2),
                            logprobs=None, truncated=torch.zeros(b, dtype=torch.bool), texts=["x"] * b,
                            prompt_index=torch.arange(len(prompts)).repeat_interleave(n))

    def score(self, rollout, problems):
        k = self.informative[self.round]
        self.round += 1
        rewards = torch.zeros(len(rollout.texts))
        for g in range(k):
            rewards[g * 2] = 1.0  # one correct sample in the first k groups
        return ScoredBatch(rollout=rollout, rewards=rewards, task_rewards=rewards)


class Stream:
    def next(self, k):
        return [make_problem(100 + i, 200) for i in range(k)]


def dapo_cfg(cap: int):
    return compose_config(["experiment=dapo", "trainer.prompts_per_step=4", "rollout.n=2",
                           f"algorithm.max_gen_batches={cap}"])


def test_dynamic_sampling_fills_the_batch():
    src = ScriptedSource([1, 2, 3])
    scored, info = collect_batch(dapo_cfg(5), src, Stream(), None, src.score, pad_id=0)
    assert info == {"generated_tokens": 3 * 16, "dapo/gen_rounds": 3, "dapo/kept_groups": 4}
    assert scored.rollout.prompt_index.unique().numel() == 4 and len(scored.rollout.texts) == 8
    assert all(scored.rewards[scored.rollout.prompt_index == g].sum() == 1 for g in scored.rollout.prompt_index)


def test_dynamic_sampling_stops_at_its_cap():
    src = ScriptedSource([1, 0, 1, 4])
    scored, info = collect_batch(dapo_cfg(3), src, Stream(), None, src.score, pad_id=0)
    assert info == {"generated_tokens": 3 * 16, "dapo/gen_rounds": 3, "dapo/kept_groups": 2}
    assert len(scored.rollout.texts) == 4
    src = ScriptedSource([0, 0])
    scored, info = collect_batch(dapo_cfg(2), src, Stream(), None, src.score, pad_id=0)
    assert info["dapo/kept_groups"] == 0 and scored.rewards.sum() == 0  # trains on zero advantages


def test_sft_on_teacher_trajectories_lowers_their_nll(micro_cfg, micro_cache, tmp_path):
    from bench.world.teacher_samples import TeacherTrajectories, cache_key
    from core.rollout import SamplingParams

    def samples_file(cfg, world):
        """This run's teacher-sample cache file (other tests may leave other teacher samples in the cache)."""
        r = cfg.rollout
        params = SamplingParams(r.temperature, r.top_p, r.max_new_tokens, logprobs=False)
        key = cache_key(world.teacher_path, [p.prompt for p in world.train], r.n, params, cfg.trainer.seed)
        return micro_cache / f"{key}.json"

    cfg = micro_cfg(["experiment=sft"])
    train(cfg)
    world = load_world(cfg)
    cache_file = samples_file(cfg, world)
    data = json.loads(cache_file.read_text())
    assert data["n"] == 1 and data["sampling"]["temperature"] == 1.0

    batch = TeacherTrajectories(data["samples"], world.tokenizer).generate(
        [p.prompt for p in world.train[:32]], 1, SamplingParams())
    ids, mask = batch.full_sequences()
    R = batch.response_ids.shape[1]

    def nll(path) -> float:
        with torch.no_grad():
            lp = response_logprobs(load_model(path, trainable=False), ids, mask, R)
        return -(lp * batch.response_mask).sum().item() / batch.response_mask.sum().item()

    assert nll(tmp_path / "run" / "final_model") < nll(world.student_path) - 0.01
    mtime = cache_file.stat().st_mtime
    train(micro_cfg(["experiment=sft", "trainer.total_steps=1"], out=tmp_path / "again"))
    assert cache_file.stat().st_mtime == mtime  # generated once, then reused
    seed1 = micro_cfg(["experiment=sft", "trainer.total_steps=1", "trainer.seed=1"], out=tmp_path / "seed1")
    train(seed1)
    other = samples_file(seed1, world)  # another seed, other teacher samples
    assert other != cache_file and json.loads(other.read_text())["samples"] != data["samples"]


@pytest.mark.parametrize("divergence", ["jsd", "topk_forward_kl"])
def test_gkd_run(micro_cfg, tmp_path, divergence):
    train(micro_cfg(["experiment=opd_gkd", f"algorithm.gkd_divergence={divergence}", "algorithm.gkd_topk=4",
                     "trainer.total_steps=2"]))
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(metrics) == 2 and all(m["divergence"] > 0 and "reverse_kl" in m for m in metrics)


def test_kl_to_reference(micro_cfg, tmp_path):
    # OPD rather than GRPO: the micro student solves nothing, so GRPO's advantages (and steps) are zero.
    train(micro_cfg(["experiment=opd", "algorithm.kl_coef=0.1", "trainer.total_steps=2"]))
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics[0]["kl_ref"] == pytest.approx(0.0, abs=1e-6)  # step 1: the student is the reference
    assert metrics[1]["kl_ref"] > 0


@pytest.mark.parametrize("overrides,match", [
    (["experiment=grpo", "rollout.n=1"], "rollout.n=1"),
    (["experiment=sft", "algorithm.policy_loss=ppo_clip"], "rollout_source=teacher"),
    (["experiment=opd_gkd", "algorithm.needs_teacher=false"], "needs_teacher"),
    (["algorithm.loss_agg=seq-mean"], "loss_agg='seq-mean'"),
    (["algorithm.gkd_divergence=tv"], "gkd_divergence='tv'"),
    (["experiment=dapo", "algorithm.overlong_buffer_len=64"], "overlong_buffer_len=64"),
    (["algorithm.rollout_source=cache"], "rollout_source='cache'"),
])
def test_bad_algorithm_configs_name_the_key(micro_cfg, overrides, match):
    with pytest.raises(ValueError, match=match):
        train(micro_cfg(overrides))
