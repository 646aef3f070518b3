"""Validation signals (bench/extrapolation/validation.py): scripted models whose log-probs are known exactly, the
real signals on the micro world, and EffOPD scored by a continuous signal end to end."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.config import compose_config
from bench.extrapolation.registry import VAL_SIGNALS, ValidationScore, get_val_signal
from bench.extrapolation.validation import ValidationInputs, response_logprobs
from bench.train import train
from bench.train.phases import EffOPDValidation
from core.io import read_jsonl
from core.rollout.base import RolloutBatch

torch.set_num_threads(1)

V = 5  # vocabulary of the scripted models


class FixedLM(nn.Module):
    """A causal LM whose next-token distribution is softmax(bias) at every position, whatever the input."""

    def __init__(self, bias):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32))

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        return SimpleNamespace(logits=self.bias.expand(*input_ids.shape, V))


def scripted_batch() -> RolloutBatch:
    """Two rows: responses [1, 1, 2] and [3, 0(pad)] (masked at the pad); prompts of two tokens."""
    return RolloutBatch(
        prompt_ids=torch.tensor([[4, 4], [0, 4]]), prompt_mask=torch.tensor([[1, 1], [0, 1]]),
        response_ids=torch.tensor([[1, 1, 2], [3, 0, 0]]),
        response_mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]),
        logprobs=None, truncated=torch.tensor([False, False]), texts=["a", "b"], prompt_index=torch.tensor([0, 1]))


TOKENS = [1, 1, 2, 3]  # the unmasked response tokens of scripted_batch


class ModeEngine:
    """Samples ``model``'s most likely token at every position of scripted_batch()'s response slots (the
    student's own samples at temperature 0, in the scripted world); records what it was asked."""

    def __init__(self, model: FixedLM):
        self.model, self.calls = model, []

    def generate(self, prompts, n, params):
        self.calls.append((list(prompts), n, params.temperature, torch.initial_seed()))
        batch = scripted_batch()
        batch.response_ids = torch.full_like(batch.response_ids, int(self.model.bias.argmax()))
        return batch


def small_cfg(signal: str, **kw):
    overrides = [f"effopd.val_signal={signal}", "trainer.micro_batch_size=1", "trainer.output_dir=unused"]
    return compose_config(overrides + [f"{k}={v}" for k, v in kw.items()])


def scripted_inputs(signal: str, model, teacher=None, engine=None) -> ValidationInputs:
    world = SimpleNamespace(effopd_val=[SimpleNamespace(prompt="p0"), SimpleNamespace(prompt="p1")])
    return ValidationInputs(small_cfg(signal), engine, world, model, teacher=teacher, teacher_batch=scripted_batch())


def mean_logp(bias, tokens=TOKENS) -> float:
    logp = torch.log_softmax(torch.tensor(bias, dtype=torch.float64), -1)
    return sum(logp[t].item() for t in tokens) / len(tokens)


SHARP = [0.0, 3.0, 1.0, 1.0, 0.0]  # most mass on token 1, which the teacher wrote twice
FLAT = [0.0] * V
OTHER = [3.0, 0.0, 0.0, 0.0, 1.0]  # mass on tokens the teacher never wrote


def test_the_builtin_signals_are_registered_with_their_needs():
    assert {"accuracy", "teacher_loglik", "reverse_kl"} <= set(VAL_SIGNALS)
    assert not get_val_signal("accuracy").needs_teacher and not get_val_signal("accuracy").needs_teacher_samples
    assert get_val_signal("teacher_loglik").needs_teacher_samples and not get_val_signal("teacher_loglik").needs_teacher
    assert get_val_signal("reverse_kl").needs_teacher and not get_val_signal("reverse_kl").needs_teacher_samples
    with pytest.raises(ValueError, match="effopd.val_signal='nope'"):
        get_val_signal("nope")


def test_response_logprobs_masks_padding_and_restores_the_mode():
    model = FixedLM(SHARP).train()
    logp = response_logprobs(model, scripted_batch(), small_cfg("teacher_loglik"))
    expected = torch.log_softmax(torch.tensor(SHARP), -1)
    assert logp.shape == (2, 3)
    assert logp[0].tolist() == pytest.approx([expected[1].item(), expected[1].item(), expected[2].item()])
    assert logp[1].tolist() == pytest.approx([expected[3].item(), 0.0, 0.0])
    assert model.training


def test_teacher_loglik_is_the_mean_token_loglik_and_ranks_models():
    score = get_val_signal("teacher_loglik").score
    sharp, flat, other = (score(scripted_inputs("teacher_loglik", FixedLM(b)), seed=0) for b in (SHARP, FLAT, OTHER))
    assert sharp.score == pytest.approx(mean_logp(SHARP), rel=1e-6)
    assert flat.score == pytest.approx(-math.log(V), rel=1e-6)
    assert other.score == pytest.approx(mean_logp(OTHER), rel=1e-6)
    assert sharp.score > flat.score > other.score  # the model closest to the teacher's tokens ranks first
    assert sharp.tokens == flat.tokens == len(TOKENS)  # the scored tokens; nothing generated
    # No sampling: the seed does not matter.
    assert score(scripted_inputs("teacher_loglik", FixedLM(SHARP)), seed=123) == sharp


def test_reverse_kl_is_minus_the_mean_log_ratio_on_the_students_samples():
    teacher = FixedLM(SHARP)
    score = get_val_signal("reverse_kl").score
    calls = []

    def run(bias, seed):
        student = FixedLM(bias)
        engine = ModeEngine(student)
        result = score(scripted_inputs("reverse_kl", student, teacher, engine), seed=seed)
        calls.extend(engine.calls)
        return result

    same, flat, other = run(SHARP, 7), run(FLAT, 7), run(OTHER, 8)
    assert same == ValidationScore(0.0, len(TOKENS))  # the teacher itself: log p_s - log p_t = 0 on every token
    # FLAT and OTHER both write token 0, which the teacher finds unlikely; OTHER is surer of it, hence further away.
    assert flat.score == pytest.approx(-(-math.log(V) - mean_logp(SHARP, [0])), rel=1e-6)
    assert other.score == pytest.approx(-(mean_logp(OTHER, [0]) - mean_logp(SHARP, [0])), rel=1e-6)
    assert same.score > flat.score > other.score
    assert flat.tokens == other.tokens == len(TOKENS)  # the generated (unmasked) tokens
    # The student's own samples of every validation prompt, val_samples each, at val_temperature, seeded.
    assert [c[:3] for c in calls] == [(["p0", "p1"], 1, 1.0)] * 3
    assert [c[3] for c in calls] == [7, 7, 8]


# --------------------------------------------------------------------------------------------------------
# The real signals on the micro world
# --------------------------------------------------------------------------------------------------------
@pytest.fixture
def micro_parts(micro_cfg):
    from bench.train.setup import build_engine
    from bench.world import load_model, load_world

    cfg = micro_cfg(["experiment=effopd"])
    world = load_world(cfg)
    student = load_model(world.student_path, trainable=True)
    teacher = load_model(world.teacher_path, trainable=False)
    return cfg, world, student, teacher, lambda model: build_engine(cfg, model, model, world.tokenizer)


def signal_cfg(cfg, signal: str):
    cfg = cfg.copy()
    cfg.effopd.val_signal = signal
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("signal", ["accuracy", "teacher_loglik", "reverse_kl"])
def test_each_signal_scores_the_micro_world_student(micro_parts, signal):
    cfg, world, student, teacher, engine_for = micro_parts
    scorer = EffOPDValidation(signal_cfg(cfg, signal), engine_for(student), world, model=student, teacher=teacher)
    a, b = scorer(11), scorer(11)
    assert math.isfinite(a.score) and a.tokens > 0
    assert a == b  # the same seed scores the same model the same way
    if signal == "teacher_loglik":
        assert a.score < 0  # a mean log-probability
        n_rows = scorer.inputs.teacher_batch.response_ids.shape[0]
        assert n_rows == cfg.effopd.val_prompts * cfg.effopd.val_samples
        assert a.tokens == int(scorer.inputs.teacher_batch.response_mask.sum().item())


@pytest.mark.slow
def test_the_teacher_scores_better_than_the_untrained_student(micro_parts):
    cfg, world, student, teacher, engine_for = micro_parts
    scores = {}
    for signal in ("teacher_loglik", "reverse_kl"):
        for name, model in (("student", student), ("teacher", teacher)):
            scorer = EffOPDValidation(signal_cfg(cfg, signal), engine_for(model), world, model=model, teacher=teacher)
            scores[signal, name] = scorer(5).score
    assert scores["teacher_loglik", "teacher"] > scores["teacher_loglik", "student"]
    assert scores["reverse_kl", "teacher"] == 0.0  # KL of the teacher to itself, token by token
    assert scores["reverse_kl", "student"] < 0.0


@pytest.mark.slow
def test_a_signal_that_needs_the_teacher_loads_it_when_the_run_lends_none(micro_parts):
    cfg, world, student, teacher, engine_for = micro_parts
    lent = EffOPDValidation(signal_cfg(cfg, "reverse_kl"), engine_for(student), world, model=student, teacher=teacher)
    loaded = EffOPDValidation(signal_cfg(cfg, "reverse_kl"), engine_for(student), world, model=student)
    assert loaded.inputs.teacher is not teacher and not loaded.inputs.teacher.training
    assert loaded(3) == lent(3)


@pytest.mark.slow
def test_effopd_scored_by_teacher_loglik_runs_end_to_end(micro_cfg, micro_cache, tmp_path):
    opd = train(micro_cfg(["experiment=opd", "trainer.total_steps=1"], out=tmp_path / "opd"))
    summary = train(micro_cfg(["experiment=effopd", "effopd=teacher_loglik"]))
    out = tmp_path / "run"
    triggers = read_jsonl(out / "effopd.jsonl")
    assert [t["step"] for t in triggers] == [1, 2, 4]
    per_eval = set()
    for t in triggers:
        assert t["seconds"] > 0 and t["tokens"] > 0
        assert math.isfinite(t["base_score"]) and t["base_score"] < 0  # mean log-likelihoods
        assert all(math.isfinite(c["score"]) for c in t["candidates"])
        assert t["accepted_multiplier"] in {0.0} | {c["multiplier"] for c in t["candidates"]}
        per_eval.add(t["tokens"] / (1 + len(t["candidates"])))
    assert len(per_eval) == 1  # every evaluation scores the same cached teacher tokens
    # Each trigger's seconds and the total are rounded to 1e-4 s apiece, so the sum may differ by that per trigger
    # (0.0282 vs 0.0281 seen): a relative tolerance on a ~0.03 s total was flaky.
    assert summary["validation_seconds"] == pytest.approx(sum(t["seconds"] for t in triggers),
                                                          abs=1e-4 * (len(triggers) + 1))
    assert summary["validation_tokens"] == sum(t["tokens"] for t in triggers)
    assert list(micro_cache.glob("teacher-samples-*.json"))  # generated once, cached beside the world
    # Setting the signal up consumed no training randomness: step 1 is OPD's step 1.
    first, opd_first = read_jsonl(out / "metrics.jsonl")[0], read_jsonl(tmp_path / "opd" / "metrics.jsonl")[0]
    assert (first["generated_tokens"], first["loss"]) == (opd_first["generated_tokens"], opd_first["loss"])
    assert opd["status"] == "complete"


@pytest.mark.slow
def test_reverse_kl_on_grpo_loads_its_own_teacher(micro_cfg, tmp_path):
    """GRPO loads no teacher; the signal brings its own, and the hook runs on the GRPO run."""
    summary = train(micro_cfg(["experiment=grpo_effopd", "effopd=reverse_kl", "trainer.total_steps=2"]))
    triggers = read_jsonl(tmp_path / "run" / "effopd.jsonl")
    assert [t["step"] for t in triggers] == [1, 2]
    assert all(math.isfinite(t["base_score"]) and t["tokens"] > 0 and t["seconds"] > 0 for t in triggers)
    assert summary["algorithm"] == "grpo" and summary["validation_seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["split", "replicate"])
def test_teacher_loglik_on_two_processes_matches_one_process(micro_cache, tmp_path, mode):
    """Two torchrun ranks (FSDP2 student and teacher, full-weight scoring copies) score the same number as one
    process: under ``split`` each rank scores half of the cached teacher samples and the totals are summed over
    ranks. ``trainer.lr=1e-30`` (lr=0 is refused at start-up) is too small to move any fp32 weight, so the weights stay
    the initial student's, whatever the ranks sample for training."""
    from tests.bench.train.test_distributed import torchrun
    from tests.conftest import MICRO_RUN, MICRO_WORLD

    base = ["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}", *MICRO_RUN, "experiment=effopd",
            "effopd=teacher_loglik", "trainer.lr=1e-30", "trainer.total_steps=1", "trainer.eval_every=100",
            f"trainer.dist_rollouts={mode}", "trainer.seed=7"]  # a seed of its own: the ranks generate the samples
    torchrun(base, tmp_path / "two")
    train(compose_config([*base, f"trainer.output_dir={tmp_path / 'one'}"]))
    (one,), (two,) = (read_jsonl(tmp_path / d / "effopd.jsonl") for d in ("one", "two"))
    assert two["base_score"] == pytest.approx(one["base_score"], abs=1e-5)
    assert two["tokens"] == one["tokens"]  # every teacher token scored once, over both ranks
    assert [c["score"] for c in two["candidates"]] == pytest.approx([c["score"] for c in one["candidates"]], abs=1e-5)
