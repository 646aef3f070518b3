"""Tests for bench.extrapolation.effopd: the name rule, the trigger schedule, the extrapolation search and the
direction probe.

The validation scorer is scripted: it returns pre-set scores in order and records the model's parameters at
every call, so each test knows exactly which candidate point theta + m * Delta was evaluated.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from bench.config import EffOPDConfig
from bench.extrapolation.effopd import (
    EXTRAPOLATED_KEYWORDS,
    DirectionProbe,
    EffOPD,
    ValidationScore,
    is_extrapolated,
    is_trigger_step,
    multiplier,
)

torch.set_num_threads(1)

INCLUDED = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.q_norm.weight",
    "model.layers.0.mlp.gate_proj.weight",
    "model.layers.0.post_attention_layernorm.weight",
]
EXCLUDED = [
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.norm.weight",
    "lm_head.weight",
]


# --------------------------------------------------------------------------------------------------------
# A tiny decoder-shaped model whose parameter names mimic a Hugging Face Llama/Qwen3 checkpoint.
# --------------------------------------------------------------------------------------------------------
class Attn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.q_proj = nn.Linear(d, d, bias=False)
        self.q_norm = nn.LayerNorm(d, elementwise_affine=True, bias=False)


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gate_proj = nn.Linear(d, d, bias=False)


class Layer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(d, bias=False)
        self.self_attn = Attn(d)
        self.post_attention_layernorm = nn.LayerNorm(d, bias=False)
        self.mlp = MLP(d)

    def forward(self, x):
        h = self.input_layernorm(x)
        x = x + self.self_attn.q_norm(self.self_attn.q_proj(h))
        return x + self.mlp.gate_proj(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, vocab, d):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([Layer(d)])
        self.norm = nn.LayerNorm(d, bias=False)


class TinyLM(nn.Module):
    def __init__(self, vocab=7, d=4):
        super().__init__()
        self.model = Inner(vocab, d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(self.model.norm(x))


def make_model(seed=0):
    torch.manual_seed(seed)
    model = TinyLM()
    with torch.no_grad():  # make the norms' weights non-trivial so every parameter is distinct
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    return model


def snapshot(model, names=None):
    return {n: p.detach().clone() for n, p in model.named_parameters() if names is None or n in names}


class ScriptedScorer:
    """Returns ValidationScore(scores[i], tokens[i]) on the i-th call and records the parameters then."""

    def __init__(self, model, scores, tokens=None):
        self.model = model
        self.scores = list(scores)
        self.tokens = list(tokens) if tokens is not None else [10] * len(scores)
        self.seen: list[dict[str, torch.Tensor]] = []
        self.seeds: list[int] = []

    def __call__(self, seed):
        i = len(self.seen)
        assert i < len(self.scores), "scorer called more often than scripted"
        self.seen.append(snapshot(self.model))
        self.seeds.append(seed)
        return ValidationScore(self.scores[i], self.tokens[i])


def cfg(**kw):
    return EffOPDConfig(enabled=True, **kw)


def move(model, delta):
    """Simulate optimizer steps: theta <- theta + delta on the named parameters."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in delta:
                p.add_(delta[n])


def known_delta(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {n: 0.01 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters() if is_extrapolated(n)}


def setup(scores, tokens=None, seed=0, **kw):
    """Model + EffOPD with anchor = initial params, then params moved by a known Delta.

    Returns (model, effopd, scorer, theta, delta) with theta the post-move params (= backup at the trigger)
    and delta = theta - anchor exactly as EffOPD computes it."""
    model = make_model()
    scorer = ScriptedScorer(model, scores, tokens)
    calls = []
    eff = EffOPD(cfg(**kw), model, scorer, on_weights_changed=lambda: calls.append(1), seed=seed)
    anchor = snapshot(model, INCLUDED)
    move(model, known_delta(model))
    theta = snapshot(model)
    delta = {n: theta[n] - anchor[n] for n in INCLUDED}
    eff.calls = calls  # test-side bookkeeping
    return model, eff, scorer, theta, delta


def assert_at(params, theta, delta, m):
    """params (all names) == theta + m * delta on the subset and == theta elsewhere."""
    for n in INCLUDED:
        torch.testing.assert_close(params[n], theta[n] + m * delta[n], rtol=1e-6, atol=1e-7)
    for n in EXCLUDED:
        assert torch.equal(params[n], theta[n]), n


# --------------------------------------------------------------------------------------------------------
# Name rule and schedule
# --------------------------------------------------------------------------------------------------------
def test_model_has_exactly_the_expected_parameter_names():
    assert sorted(n for n, _ in make_model().named_parameters()) == sorted(INCLUDED + EXCLUDED)


@pytest.mark.parametrize("name", INCLUDED)
def test_name_rule_includes_attention_mlp_and_their_norms(name):
    assert is_extrapolated(name)


@pytest.mark.parametrize("name", EXCLUDED)
def test_name_rule_excludes_embeddings_head_and_other_norms(name):
    assert not is_extrapolated(name)


def test_effopd_selects_exactly_the_name_rule_subset():
    model = make_model()
    eff = EffOPD(cfg(), model, ScriptedScorer(model, []))
    assert sorted(eff.params) == sorted(INCLUDED)
    assert len(EXTRAPOLATED_KEYWORDS) == 13


@pytest.mark.parametrize("step,expected", [(1, True), (2, True), (4, True), (8, True), (16, True),
                                           (0, False), (3, False), (5, False), (6, False), (12, False),
                                           (-4, False)])
def test_pow2_schedule(step, expected):
    assert is_trigger_step(step, "pow2") is expected


def test_every_k_schedule():
    assert [s for s in range(0, 13) if is_trigger_step(s, "every:3")] == [3, 6, 9, 12]
    assert [s for s in range(0, 5) if is_trigger_step(s, "every:1")] == [1, 2, 3, 4]


def test_joined_schedule_triggers_at_the_union():
    assert [s for s in range(0, 21) if is_trigger_step(s, "pow2+every:4")] == [1, 2, 4, 8, 12, 16, 20]
    assert [s for s in range(0, 13) if is_trigger_step(s, "pow2+every:3")] == [1, 2, 3, 4, 6, 8, 9, 12]


@pytest.mark.parametrize("schedule", ["every:0", "every:", "every:x", "every:-2", "every:1.5", "pow3", "",
                                      "pow2+", "pow2+every:0", "+every:4", "pow2,every:4"])
def test_bad_schedule_raises(schedule):
    with pytest.raises(ValueError, match="effopd.schedule"):
        is_trigger_step(1, schedule)
    model = make_model()
    with pytest.raises(ValueError, match="effopd.schedule"):
        EffOPD(cfg(schedule=schedule), model, ScriptedScorer(model, []))


def test_multiplier_kinds():
    assert [multiplier(k, "linear") for k in range(1, 6)] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert [multiplier(k, "geometric") for k in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 32.0]
    with pytest.raises(ValueError, match="effopd.multipliers"):
        multiplier(1, "cubic")


def test_constructor_validation():
    model = make_model()
    s = ScriptedScorer(model, [])
    with pytest.raises(ValueError, match="effopd.accept"):
        EffOPD(cfg(accept="gte"), model, s)
    with pytest.raises(ValueError, match="effopd.max_tries"):
        EffOPD(cfg(max_tries=0), model, s)
    with pytest.raises(ValueError, match="effopd.multipliers"):
        EffOPD(cfg(multipliers="cubic"), model, s)
    only_excluded = nn.Sequential()
    only_excluded.add_module("embed_tokens", nn.Embedding(3, 2))
    with pytest.raises(ValueError, match="no attention/MLP parameters"):
        EffOPD(cfg(), only_excluded, s)


# --------------------------------------------------------------------------------------------------------
# The extrapolation search
# --------------------------------------------------------------------------------------------------------
def test_trigger_accepts_until_first_failure_and_rolls_back():
    model, eff, scorer, theta, delta = setup([0.1, 0.2, 0.3, 0.25], tokens=[10, 11, 12, 13])
    rec = eff.after_step(1)

    # The scorer saw theta (base), then theta + 2, 4, 6 Delta.
    assert len(scorer.seen) == 4
    for seen, m in zip(scorer.seen, [0, 2, 4, 6]):
        assert_at(seen, theta, delta, m)
    assert torch.equal(scorer.seen[0]["model.layers.0.mlp.gate_proj.weight"],
                       theta["model.layers.0.mlp.gate_proj.weight"])
    # Fresh sampling noise per evaluation (val_common_random_numbers=False): eval_seed + k, eval_seed = 7919.
    assert scorer.seeds == [7919, 7920, 7921, 7922]

    # Final params and the new anchor sit at theta + 4 Delta (the last accepted point).
    final = snapshot(model)
    assert_at(final, theta, delta, 4)
    for n in INCLUDED:
        assert torch.equal(eff.anchor[n], final[n])
        assert eff.anchor[n] is not eff.params[n]  # a copy, not an alias of the live parameter

    assert rec["step"] == 1
    assert rec["base_score"] == 0.1
    assert rec["candidates"] == [{"multiplier": 2.0, "score": 0.2}, {"multiplier": 4.0, "score": 0.3},
                                 {"multiplier": 6.0, "score": 0.25}]
    assert rec["accepted_multiplier"] == 4.0
    assert rec["best_score"] == 0.3
    assert rec["tokens"] == 46
    assert rec["cos_prev_window"] is None  # first window: nothing to compare with
    flat = torch.cat([delta[n].flatten() for n in INCLUDED])
    assert rec["delta_norm"] == pytest.approx(flat.norm().item(), rel=1e-6)
    assert eff.total_tokens == 46 and eff.num_evals == 4
    assert rec["seconds"] >= 0.0 and eff.total_seconds >= 0.0
    # Weights changed at m = 2, 4, 6 and once more for the rollback to 4.
    assert len(eff.calls) == 4


def test_all_five_accepted():
    model, eff, scorer, theta, delta = setup([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    rec = eff.after_step(1)
    assert [c["multiplier"] for c in rec["candidates"]] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert rec["accepted_multiplier"] == 10.0 and rec["best_score"] == 0.5
    for seen, m in zip(scorer.seen, [0, 2, 4, 6, 8, 10]):
        assert_at(seen, theta, delta, m)
    assert_at(snapshot(model), theta, delta, 10)
    assert len(eff.calls) == 5  # no rollback needed: the last candidate is the accepted one
    assert rec["tokens"] == 60


def test_first_candidate_fails_restores_theta_exactly():
    model, eff, scorer, theta, delta = setup([0.5, 0.4])
    rec = eff.after_step(1)
    assert rec["candidates"] == [{"multiplier": 2.0, "score": 0.4}]
    assert rec["accepted_multiplier"] == 0.0 and rec["best_score"] == 0.5
    assert_at(scorer.seen[1], theta, delta, 2)
    final = snapshot(model)
    for n in theta:
        assert torch.equal(final[n], theta[n]), n  # bitwise
    for n in INCLUDED:
        assert torch.equal(eff.anchor[n], theta[n])
    assert len(eff.calls) == 2  # candidate 2, then the restore


def test_ties_rejected_with_gt():
    model, eff, scorer, theta, delta = setup([0.5, 0.5], accept="gt")
    rec = eff.after_step(1)
    assert rec["accepted_multiplier"] == 0.0
    assert len(scorer.seen) == 2
    final = snapshot(model)
    assert all(torch.equal(final[n], theta[n]) for n in theta)


def test_ties_accepted_with_ge():
    model, eff, scorer, theta, delta = setup([0.5, 0.5, 0.5, 0.4], accept="ge")
    rec = eff.after_step(1)
    assert [c["multiplier"] for c in rec["candidates"]] == [2.0, 4.0, 6.0]
    assert rec["accepted_multiplier"] == 4.0 and rec["best_score"] == 0.5
    assert_at(snapshot(model), theta, delta, 4)


def test_geometric_multipliers():
    model, eff, scorer, theta, delta = setup([0.0, 0.1, 0.2, 0.3, 0.4, 0.35], multipliers="geometric")
    rec = eff.after_step(1)
    assert [c["multiplier"] for c in rec["candidates"]] == [2.0, 4.0, 8.0, 16.0, 32.0]
    for seen, m in zip(scorer.seen, [0, 2, 4, 8, 16, 32]):
        assert_at(seen, theta, delta, m)
    assert rec["accepted_multiplier"] == 16.0
    assert_at(snapshot(model), theta, delta, 16)


def test_max_tries_limits_candidates():
    model, eff, scorer, theta, delta = setup([0.0, 0.1, 0.2], max_tries=2)
    rec = eff.after_step(1)
    assert [c["multiplier"] for c in rec["candidates"]] == [2.0, 4.0]
    assert_at(snapshot(model), theta, delta, 4)


def test_common_random_numbers_reuse_one_seed():
    model, eff, scorer, theta, delta = setup([0.1, 0.2, 0.1], seed=3, val_common_random_numbers=True)
    eff.after_step(4)
    assert scorer.seeds == [3 * 1_000_003 + 4 * 7919] * 3


def test_no_trigger_at_non_trigger_steps():
    model, eff, scorer, theta, delta = setup([0.1, 0.2])
    for step in (0, 3, 5, 6, 7, 12):
        assert eff.after_step(step) is None
    assert scorer.seen == []
    assert eff.num_evals == 0 and eff.total_tokens == 0
    final = snapshot(model)
    assert all(torch.equal(final[n], theta[n]) for n in theta)
    assert len(eff.calls) == 0


def test_untouched_params_and_optimizer_state():
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scorer = ScriptedScorer(model, [0.1, 0.2, 0.3, 0.25])
    eff = EffOPD(cfg(), model, scorer)
    ids = torch.tensor([[1, 2, 3, 4]])
    loss = torch.nn.functional.cross_entropy(model(ids)[0, :-1], ids[0, 1:])
    loss.backward()
    opt.step()  # one real step: the AdamW state exists and every parameter moved

    theta = snapshot(model)
    state_before = copy.deepcopy(opt.state_dict())
    param_objs = list(opt.param_groups[0]["params"])
    rec = eff.after_step(1)
    assert rec["accepted_multiplier"] == 4.0

    final = snapshot(model)
    for n in EXCLUDED:
        assert torch.equal(final[n], theta[n]), n
    for n in INCLUDED:
        assert not torch.equal(final[n], theta[n]), n  # these did move (Delta != 0 after the AdamW step)

    state_after = opt.state_dict()
    assert state_after["param_groups"] == state_before["param_groups"]
    assert state_after["state"].keys() == state_before["state"].keys()
    assert len(state_after["state"]) == len(INCLUDED + EXCLUDED)
    for i, st in state_before["state"].items():
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state_after["state"][i][key], st[key]), (i, key)
    # The optimizer still holds the very same parameter objects (extrapolation is in place).
    assert all(a is b for a, b in zip(opt.param_groups[0]["params"], param_objs))


def test_second_trigger_measures_delta_from_the_extrapolated_anchor():
    model, eff, scorer, theta, delta = setup([0.1, 0.2, 0.3, 0.25, 0.0, 0.1, 0.05])
    eff.after_step(1)
    anchor2 = snapshot(model, INCLUDED)  # = theta + 4 Delta
    delta2 = {n: torch.full_like(p, 0.003) for n, p in anchor2.items()}
    move(model, delta2)
    theta2 = snapshot(model)
    d2 = {n: theta2[n] - anchor2[n] for n in INCLUDED}
    rec = eff.after_step(2)
    assert_at(scorer.seen[5], theta2, d2, 2)
    assert rec["accepted_multiplier"] == 2.0
    assert_at(snapshot(model), theta2, d2, 2)
    # log_direction (default True) compares this window with the previous one.
    f1 = torch.cat([delta[n].flatten() for n in INCLUDED])
    f2 = torch.cat([d2[n].flatten() for n in INCLUDED])
    cos = torch.nn.functional.cosine_similarity(f1, f2, dim=0).item()
    assert rec["cos_prev_window"] == pytest.approx(cos, abs=1e-5)
    assert eff.num_evals == 7


def test_log_direction_off_never_reports_cosine():
    model, eff, scorer, theta, delta = setup([0.1, 0.0, 0.1, 0.0], log_direction=False)
    assert eff.after_step(1)["cos_prev_window"] is None
    move(model, delta)
    assert eff.after_step(2)["cos_prev_window"] is None
    assert eff.prev_delta is None


def test_state_dict_round_trip_restores_behaviour():
    scores = [0.1, 0.2, 0.3, 0.25]
    second = [0.3, 0.4, 0.2]

    def run(load_from=None):
        model = make_model()
        scorer = ScriptedScorer(model, scores + second)
        eff = EffOPD(cfg(), model, scorer)
        move(model, known_delta(model, seed=1))
        eff.after_step(1)
        state = copy.deepcopy(eff.state_dict())
        move(model, known_delta(model, seed=2))
        if load_from is not None:  # a fresh instance (as after a restart) that loads the checkpoint
            eff = EffOPD(cfg(), model, scorer)
            eff.load_state_dict(load_from)
        rec = eff.after_step(2)
        return model, scorer, eff, rec, state

    model_a, scorer_a, eff_a, rec_a, state = run()
    model_b, scorer_b, eff_b, rec_b, _ = run(load_from=state)
    for k in ("base_score", "candidates", "accepted_multiplier", "best_score", "tokens", "delta_norm",
              "delta_rel", "cos_prev_window"):
        assert rec_a[k] == rec_b[k], k
    assert rec_a["cos_prev_window"] is not None
    for seen_a, seen_b in zip(scorer_a.seen[4:], scorer_b.seen[4:]):
        assert all(torch.equal(seen_a[n], seen_b[n]) for n in seen_a)
    pa, pb = snapshot(model_a), snapshot(model_b)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert all(torch.equal(eff_a.anchor[n], eff_b.anchor[n]) for n in INCLUDED)
    assert eff_b.num_evals == eff_a.num_evals == 7
    assert eff_b.total_tokens == eff_a.total_tokens == 70

    # Without the checkpoint a fresh instance anchors at the current params: Delta = 0, so every candidate
    # equals theta -- the anchor is what carries the behaviour across a restart.
    model_c = make_model()
    move(model_c, known_delta(model_c, seed=2))
    theta_c = snapshot(model_c)
    scorer_c = ScriptedScorer(model_c, second)
    rec_c = EffOPD(cfg(), model_c, scorer_c).after_step(2)
    assert rec_c["delta_norm"] == 0.0
    assert all(torch.equal(seen[n], theta_c[n]) for seen in scorer_c.seen for n in theta_c)


def test_load_state_dict_rejects_other_parameters():
    model = make_model()
    eff = EffOPD(cfg(), model, ScriptedScorer(model, []))
    state = eff.state_dict()
    state["anchor"] = {k: v for k, v in state["anchor"].items() if "mlp" not in k}
    with pytest.raises(ValueError, match="anchors other parameters"):
        eff.load_state_dict(state)


# --------------------------------------------------------------------------------------------------------
# DirectionProbe
# --------------------------------------------------------------------------------------------------------
def test_direction_probe_cosine_and_relative_size():
    model = make_model()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if is_extrapolated(n):
                p.fill_(2.0)
    probe = DirectionProbe(model, "pow2")
    numel = sum(p.numel() for n, p in model.named_parameters() if is_extrapolated(n))
    d = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters() if is_extrapolated(n)}
    excluded_before = snapshot(model, EXCLUDED)

    move(model, d)
    r1 = probe.after_step(1)
    assert r1["step"] == 1 and r1["probe_only"] is True
    assert r1["cos_prev_window"] is None
    assert r1["delta_norm"] == pytest.approx(0.5 * math.sqrt(numel), rel=1e-6)
    assert r1["delta_rel"] == pytest.approx(0.25, rel=1e-6)  # |0.5| / |2.0| elementwise-constant

    move(model, {n: 2 * t for n, t in d.items()})  # same direction, twice as long
    r2 = probe.after_step(2)
    assert r2["cos_prev_window"] == pytest.approx(1.0, abs=1e-6)
    assert r2["delta_rel"] == pytest.approx(1.0 / 2.5, rel=1e-6)  # |1.0| / |2.5|

    assert probe.after_step(3) is None
    move(model, {n: -t for n, t in d.items()})  # opposite direction
    r4 = probe.after_step(4)
    assert r4["cos_prev_window"] == pytest.approx(-1.0, abs=1e-6)
    assert r4["delta_rel"] == pytest.approx(0.5 / 3.5, rel=1e-6)

    # The probe never changes the model.
    assert all(torch.equal(snapshot(model, EXCLUDED)[n], excluded_before[n]) for n in EXCLUDED)
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for n, p in model.named_parameters() if is_extrapolated(n))


def test_direction_probe_state_round_trip():
    model = make_model()
    probe = DirectionProbe(model, "every:2")
    d = known_delta(model)
    move(model, d)
    assert probe.after_step(1) is None
    probe.after_step(2)
    state = probe.state_dict()
    fresh = DirectionProbe(model, "every:2")
    fresh.load_state_dict(state)
    move(model, d)
    r_fresh = fresh.after_step(4)
    r_orig = probe.after_step(4)
    assert r_fresh == r_orig
    assert r_fresh["cos_prev_window"] == pytest.approx(1.0, abs=1e-6)


def test_direction_probe_bad_schedule():
    with pytest.raises(ValueError):
        DirectionProbe(make_model(), "every:0")
