"""Rollout engines: the Qwen3 fast path reproduces HF generate exactly (greedy, sampled, top-p, padding)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf

from bench.world import load_model, load_world
from core.rollout import (
    HFRolloutEngine,
    HFSettings,
    Qwen3FastEngine,
    SamplingParams,
    VLLMSettings,
    engine_settings,
    make_engine,
    register_engine,
    registry,
)
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


# --- the engine registry -----------------------------------------------------------------------------------
@dataclass
class ToySettings:
    width: int = 1  # a made-up option
    label: str = "toy"

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"rollout.toy.width={self.width}; must be >= 1")


@pytest.fixture
def toy_engine(monkeypatch):
    """Registers ``rollout.engine=toy`` (qwen3_fast underneath) on a copy of the registry; yields its builds."""
    monkeypatch.setattr(registry, "ENGINES", dict(registry.ENGINES))
    builds = []

    @register_engine("toy", ToySettings)
    def build(model, tokenizer, settings: ToySettings, seed: int = 0):
        builds.append((settings, seed))
        return Qwen3FastEngine(model, tokenizer)

    return builds


def test_a_registered_engine_is_built_from_its_settings_block(engines, toy_engine):
    hf, _ = engines
    assert isinstance(make_engine("toy", hf.model, hf.tokenizer, OmegaConf.create({"width": 3}), seed=7),
                      Qwen3FastEngine)
    make_engine("toy", hf.model, hf.tokenizer)  # no block: the defaults
    make_engine("toy", hf.model, hf.tokenizer, ToySettings(label="x"), seed=2)
    assert toy_engine == [(ToySettings(width=3), 7), (ToySettings(), 0), (ToySettings(label="x"), 2)]
    with pytest.raises(ValueError, match=r"rollout.toy has no option\(s\) \['depth'\]"):
        make_engine("toy", hf.model, hf.tokenizer, {"depth": 2})
    with pytest.raises(ValueError, match="rollout.toy.width=0"):  # the settings dataclass validates
        engine_settings("toy", {"width": 0})
    with pytest.raises(ValueError, match="rollout engine 'toy' registered twice"):
        register_engine("toy")(lambda *a, **k: None)
    with pytest.raises(ValueError, match=r"rollout.engine='nope'; available: \('hf', 'qwen3_fast', 'vllm', 'toy'\)"):
        make_engine("nope", hf.model, hf.tokenizer)
    with pytest.raises(ValueError, match="takes no settings"):
        make_engine("qwen3_fast", hf.model, hf.tokenizer, {"width": 2})


def test_builtin_engines_own_their_settings():
    assert engine_settings("hf", {"static_cache": "on"}) == HFSettings(static_cache="on")
    with pytest.raises(ValueError, match="rollout.hf.static_cache='yes'"):
        engine_settings("hf", {"static_cache": "yes"})
    kwargs = engine_settings("vllm", {"enforce_eager": "off", "dtype": "bfloat16"}).engine_kwargs()
    assert kwargs["enforce_eager"] is False and kwargs["dtype"] == "bfloat16"
    assert kwargs["kv_cache_memory_bytes"] is None and kwargs["max_model_len"] is None  # 0 = vLLM's default
    with pytest.raises(ValueError, match="rollout.vllm.enforce_eager='maybe'"):
        VLLMSettings(enforce_eager="maybe")
    assert engine_settings("qwen3_fast") is None
