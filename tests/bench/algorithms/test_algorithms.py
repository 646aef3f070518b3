"""Tests for bench.algorithms: the OPD advantage, the PPO clipped loss and the registries."""

from __future__ import annotations

import math

import pytest
import torch

from bench.algorithms import (
    LossInputs,
    LossTotals,
    ScoredBatch,
    get_advantage,
    get_policy_loss,
    register_advantage,
    register_policy_loss,
    registry,
)
from bench.algorithms.opd import opd_advantage
from bench.algorithms.policy_loss import aggregate, ppo_clip_loss
from bench.config import AlgorithmConfig
from core.rollout import RolloutBatch

torch.set_num_threads(1)

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def make_rollout(mask=MASK):
    b, r = mask.shape
    return RolloutBatch(
        prompt_ids=torch.tensor([[0, 5, 6], [7, 8, 9]]),
        prompt_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]),
        response_ids=torch.tensor([[10, 11, 1], [12, 1, 0]]),
        response_mask=mask,
        logprobs=torch.zeros(b, r),
        truncated=torch.tensor([False, False]),
        texts=["ab", "c"],
        prompt_index=torch.tensor([0, 1]),
    )


# --------------------------------------------------------------------------------------------------------
# OPD advantage
# --------------------------------------------------------------------------------------------------------
def test_opd_advantage_is_teacher_minus_student_masked():
    # Binary-exact numbers so the expected advantages are exact.
    teacher = torch.tensor([[-1.0, -2.0, -0.5], [-0.25, -0.75, -4.0]])
    student = torch.tensor([[-1.5, -1.0, -0.5], [-0.25, -2.0, -9.0]], requires_grad=True)
    scored = ScoredBatch(rollout=make_rollout(), teacher_logp=teacher)
    adv = get_advantage("opd")(scored, student)
    assert torch.equal(adv, torch.tensor([[0.5, -1.0, 0.0], [0.0, 1.25, 0.0]]))  # last token masked out
    assert not adv.requires_grad  # the student's log-probs enter as a constant
    # Summed over a response it is minus the single-sample reverse-KL estimate sum(log p_s - log p_t).
    assert adv.sum(dim=1).tolist() == [-0.5, 1.25]


def test_opd_advantage_needs_teacher_logp():
    scored = ScoredBatch(rollout=make_rollout(), teacher_logp=None)
    with pytest.raises(ValueError, match="OPD needs teacher log-probs"):
        opd_advantage(scored, torch.zeros(2, 3))


def test_scored_batch_select_rows():
    teacher = torch.tensor([[-1.0, -2.0, -0.5], [-0.25, -0.75, -4.0]])
    scored = ScoredBatch(rollout=make_rollout(), teacher_logp=teacher, rewards=torch.tensor([1.0, 0.0]))
    sub = scored.select(slice(1, 2))
    assert sub.rollout.texts == ["c"]
    assert torch.equal(sub.teacher_logp, teacher[1:2])
    assert torch.equal(sub.rewards, torch.tensor([0.0]))
    assert sub.rollout.num_tokens == 2
    idx = scored.select(torch.tensor([1, 0]))
    assert idx.rollout.texts == ["c", "ab"]
    assert torch.equal(idx.rollout.response_mask, MASK[[1, 0]])


# --------------------------------------------------------------------------------------------------------
# PPO clipped loss
# --------------------------------------------------------------------------------------------------------
# Clip range [1 - 0.2, 1 + 0.28] = [0.8, 1.28]. Tokens (row-major), ratio r and advantage A:
#   t1: r=1.1 (inside),  A=+2 -> -A*r = -2.2
#   t2: r=1.5 (above),   A=+1 -> max(-1.5, -1.28) = -1.28 (clip binds)
#   t3: r=1.5 (above),   A=-1 -> max( 1.5,  1.28) =  1.5  (clip does not bind)
#   t4: r=0.5 (below),   A=+1 -> max(-0.5, -0.8)  = -0.5  (clip does not bind)
#   t5: r=0.5 (below),   A=-2 -> max( 1.0,  1.6)  =  1.6  (clip binds)
#   t6: masked (r=3, A=5) -> excluded
# Sum over the mask: -2.2 - 1.28 + 1.5 - 0.5 + 1.6 = -0.88.
RATIOS = torch.tensor([[1.1, 1.5, 1.5], [0.5, 0.5, 3.0]], dtype=torch.float64)
ADV = torch.tensor([[2.0, 1.0, -1.0], [1.0, -2.0, 5.0]], dtype=torch.float64)
CFG = AlgorithmConfig(clip_ratio_low=0.2, clip_ratio_high=0.28)


def _inputs():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -1.3, -0.1]], dtype=torch.float64)
    logp = (old + RATIOS.log()).requires_grad_(True)
    return logp, old


def totals(tokens, sequences=2, norm_len=3):
    return LossTotals(tokens=tokens, sequences=sequences, norm_len=norm_len)


def ppo(logp, old, adv, mask, cfg, total_tokens):
    return ppo_clip_loss(LossInputs(logp=logp, old_logp=old, advantages=adv, mask=mask, totals=totals(total_tokens)),
                         cfg)


@pytest.mark.parametrize("total_tokens,expected", [(5, -0.176), (10, -0.088), (0, -0.88)])
def test_ppo_clip_loss_token_mean(total_tokens, expected):
    logp, old = _inputs()
    loss, stats = get_policy_loss("ppo_clip")(
        LossInputs(logp=logp, old_logp=old, advantages=ADV, mask=MASK.double(), totals=totals(total_tokens)), CFG)
    # token-mean divides by the step's total tokens (max(total, 1)), not by this micro-batch's mask.
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert set(stats) == {"clip_frac"}


def test_ppo_clip_loss_gradient():
    logp, old = _inputs()
    loss, _ = ppo(logp, old, ADV, MASK.double(), CFG, total_tokens=5)
    loss.backward()
    # d/dlogp of -A*r is -A*r; zero where the clipped branch is active or the token is masked.
    expected = torch.tensor([[-2.0 * 1.1, 0.0, 1.5], [-0.5, 0.0, 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(logp.grad, expected, rtol=0, atol=1e-12)


def test_ppo_clip_symmetric_bounds_and_on_policy():
    # On-policy (ratio 1 everywhere): loss = -mean(A) over the mask, nothing clipped.
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -1.3, -0.1]], dtype=torch.float64)
    loss, stats = ppo(old.clone(), old, ADV, MASK.double(), AlgorithmConfig(), total_tokens=5)
    assert loss.item() == pytest.approx(-(2.0 + 1.0 - 1.0 + 1.0 - 2.0) / 5, abs=1e-12)
    assert stats["clip_frac"] == 0.0
    # With symmetric 0.2 bounds, ratio 1.5 with A=+1 is clipped to 1.2 and ratio 0.5 with A=-1 to 0.8.
    mask = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    r = torch.tensor([[1.5, 0.5]], dtype=torch.float64)
    a = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    o = torch.zeros(1, 2, dtype=torch.float64)
    loss, stats = ppo(r.log(), o, a, mask, AlgorithmConfig(), total_tokens=2)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2, abs=1e-12)
    assert stats["clip_frac"] == pytest.approx(1.0)  # both tokens clipped, and the clip binds on both


def test_aggregate_rejects_unknown_mode():
    assert aggregate(torch.ones(2, 3), MASK, "token-mean", totals(4)).item() == pytest.approx(5 / 4)
    with pytest.raises(ValueError, match="unknown algorithm.loss_agg='seq-mean'"):
        aggregate(torch.ones(2, 3), MASK, "seq-mean", totals(4))
    with pytest.raises(ValueError, match="loss_agg"):
        ppo(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), MASK, AlgorithmConfig(loss_agg="sum"), 5)


# --------------------------------------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------------------------------------
def test_builtins_registered():
    assert get_advantage("opd") is opd_advantage
    assert get_policy_loss("ppo_clip") is ppo_clip_loss
    assert AlgorithmConfig().name == "opd" and AlgorithmConfig().policy_loss == "ppo_clip"


def test_unknown_names_list_registered_ones():
    with pytest.raises(ValueError) as e:
        get_advantage("grpo_nope")
    assert str(e.value) == f"unknown algorithm.name='grpo_nope'; registered: {sorted(registry.ADVANTAGES)}"
    assert "'opd'" in str(e.value)
    with pytest.raises(ValueError) as e:
        get_policy_loss("nope")
    assert str(e.value) == f"unknown algorithm.policy_loss='nope'; registered: {sorted(registry.POLICY_LOSSES)}"
    assert "'ppo_clip'" in str(e.value)


def test_double_registration_rejected(monkeypatch):
    # Work on copies so this test never leaves anything registered.
    monkeypatch.setattr(registry, "ADVANTAGES", dict(registry.ADVANTAGES))
    monkeypatch.setattr(registry, "POLICY_LOSSES", dict(registry.POLICY_LOSSES))

    with pytest.raises(ValueError, match="advantage 'opd' registered twice"):
        register_advantage("opd")(lambda scored, logp, cfg: logp)
    assert registry.ADVANTAGES["opd"] is opd_advantage  # the original survives
    with pytest.raises(ValueError, match="policy loss 'ppo_clip' registered twice"):
        register_policy_loss("ppo_clip")(lambda *a: None)
    assert registry.POLICY_LOSSES["ppo_clip"] is ppo_clip_loss

    def mine(scored, logp):
        return logp

    assert register_advantage("test_only_adv")(mine) is mine  # the decorator returns the function
    assert get_advantage("test_only_adv") is mine
    with pytest.raises(ValueError, match="registered twice"):
        register_advantage("test_only_adv")(mine)
    assert "test_only_adv" in str(pytest.raises(ValueError, get_advantage, "x").value)


def test_ratio_values_are_what_the_table_says():
    logp, old = _inputs()
    torch.testing.assert_close(torch.exp(logp - old), RATIOS)
    assert math.isclose(sum([-2.2, -1.28, 1.5, -0.5, 1.6]), -0.88)
