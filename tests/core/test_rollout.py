"""Rollout engines: the Qwen3 fast path reproduces HF generate exactly (greedy, sampled, top-p, padding)."""

from __future__ import annotations

import pytest
import torch

from bench.world import load_model, load_world
from core.rollout import HFRolloutEngine, Qwen3FastEngine, SamplingParams, make_engine
from core.rollout.qwen3_fast import top_p_filter

# Different prompt lengths, so left padding is exercised.
PROMPTS = ["123+456=", "7+89=", "999+1=", "5+5=", "100+900=", "42+317="]


@pytest.fixture
def engines(micro_cfg):
    world = load_world(micro_cfg())
    model = load_model(world.student_path, trainable=True)
    return HFRolloutEngine(model, world.tokenizer), Qwen3FastEngine(model, world.tokenizer)


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 1.0), (0.7, 0.9)])
def test_fast_engine_matches_hf_generate(engines, temperature, top_p):
    hf, fast = engines
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=24, logprobs=True)
    torch.manual_seed(3)
    a = hf.generate(PROMPTS, 3, params)
    torch.manual_seed(3)
    b = fast.generate(PROMPTS, 3, params)
    assert a.texts == b.texts
    for field in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "truncated", "prompt_index"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


def test_fast_engine_consumes_the_rng_like_hf(engines):
    hf, fast = engines
    params = SamplingParams(temperature=1.0, max_new_tokens=16, logprobs=False)
    after = []
    for engine in (hf, fast):
        torch.manual_seed(5)
        engine.generate(PROMPTS, 2, params)
        after.append(torch.rand(4))
    assert torch.equal(after[0], after[1])


def test_top_p_filter_keeps_the_nucleus():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = top_p_filter(scores, 0.8).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    assert top_p_filter(scores, 0.01).isfinite().tolist() == [[True, False, False, False]]  # at least one
    assert torch.equal(top_p_filter(scores, 1.0), scores)


def test_make_engine_names(engines):
    hf, _ = engines
    assert isinstance(make_engine("qwen3_fast", hf.model, hf.tokenizer), Qwen3FastEngine)
    from core.rollout.vllm_engine import vllm_import_error

    if vllm_import_error() is not None:  # in .venv-vllm the engine builds instead (tests/core/test_vllm.py)
        with pytest.raises(ValueError, match="rollout.engine='vllm'"):
            make_engine("vllm", hf.model, hf.tokenizer)
