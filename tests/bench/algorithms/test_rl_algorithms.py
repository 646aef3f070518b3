"""GRPO, DAPO, SFT, GKD and KL pieces against naive reference implementations and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from bench.algorithms import LossInputs, LossTotals, ScoredBatch, get_advantage, get_policy_loss
from bench.algorithms.dapo import informative_groups, overlong_penalty
from bench.algorithms.gkd import token_divergence
from bench.algorithms.grpo import group_advantages
from bench.algorithms.policy_loss import aggregate, k3_kl
from bench.config import AlgorithmConfig
from core.rollout import RolloutBatch

torch.set_num_threads(1)
GEN = torch.Generator().manual_seed(0)


def rollout(b: int, r: int, groups: list[int], lengths: list[int]) -> RolloutBatch:
    mask = torch.zeros(b, r)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1.0
    return RolloutBatch(prompt_ids=torch.ones(b, 2, dtype=torch.long), prompt_mask=torch.ones(b, 2, dtype=torch.long),
                        response_ids=torch.randint(3, 9, (b, r), generator=GEN), response_mask=mask, logprobs=None,
                        truncated=torch.tensor([n == r for n in lengths]), texts=[str(i) for i in range(b)],
                        prompt_index=torch.tensor(groups))


# ---------------------------------------------------------------------------------------------- GRPO
def naive_grpo(rewards: list[float], groups: list[int], norm: bool) -> list[float]:
    out = []
    for r, g in zip(rewards, groups):
        members = [x for x, h in zip(rewards, groups) if h == g]
        mean = sum(members) / len(members)
        var = sum((x - mean) ** 2 for x in members) / (len(members) - 1)
        out.append((r - mean) / (math.sqrt(var) + 1e-6) if norm else r - mean)
    return out


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_matches_naive_reference(norm):
    rewards = torch.rand(12, generator=GEN).round()
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    adv = group_advantages(rewards, torch.tensor(groups), norm)
    torch.testing.assert_close(adv, torch.tensor(naive_grpo(rewards.tolist(), groups, norm)), atol=1e-6, rtol=0)


def test_grpo_equal_rewards_give_zero_advantage_broadcast_over_tokens():
    batch = rollout(6, 4, [0, 0, 0, 1, 1, 1], [4, 2, 3, 1, 4, 4])
    scored = ScoredBatch(rollout=batch, rewards=torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]))
    adv = get_advantage("grpo")(scored, None, AlgorithmConfig(norm_adv_by_std=False))
    assert torch.equal(adv[:3], torch.zeros(3, 4))  # all-correct group: nothing to learn
    assert adv[3, 0] == pytest.approx(-1 / 3) and adv[4, 3] == pytest.approx(2 / 3)
    assert torch.equal(adv[3, 1:], torch.zeros(3))  # masked tokens carry no advantage
    assert not get_advantage("grpo").needs_student_logp and get_advantage("opd").needs_student_logp


# ------------------------------------------------------------------------------------- aggregation
def naive_agg(loss, mask, mode, norm_len):
    rows = []
    for lr, mr in zip(loss.tolist(), mask.tolist()):
        toks = [x for x, m in zip(lr, mr) if m]
        if toks:
            rows.append(toks)
    if mode == "token-mean":
        return sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    if mode == "seq-mean-token-mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    return sum(sum(r) / norm_len for r in rows) / len(rows)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_aggregation_modes_match_naive_and_split_over_micro_batches(mode):
    loss = torch.randn(6, 5, generator=GEN, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0] * 5, [1, 0, 0, 0, 0], [1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0]], dtype=torch.float64)
    t = LossTotals(tokens=mask.sum().item(), sequences=(mask.sum(1) > 0).sum().item(), norm_len=8.0)
    full = aggregate(loss, mask, mode, t).item()
    assert full == pytest.approx(naive_agg(loss, mask, mode, 8.0), abs=1e-12)
    parts = sum(aggregate(loss[s], mask[s], mode, t).item() for s in (slice(0, 2), slice(2, 5), slice(5, 6)))
    assert parts == pytest.approx(full, abs=1e-12)


# -------------------------------------------------------------------------------------------- DAPO
def test_clip_higher_bounds():
    cfg = AlgorithmConfig(clip_ratio_low=0.2, clip_ratio_high=0.28)
    ratio = torch.tensor([[0.5, 0.9, 1.2, 1.5]], dtype=torch.float64)
    old = torch.zeros(1, 4, dtype=torch.float64)
    logp = ratio.log().requires_grad_(True)
    pos = torch.ones(1, 4, dtype=torch.float64)
    inp = LossInputs(logp=logp, old_logp=old, advantages=pos, mask=torch.ones(1, 4, dtype=torch.float64),
                     totals=LossTotals(4, 1, 4))
    loss, stats = get_policy_loss("ppo_clip")(inp, cfg)
    # A > 0: ratios above 1.28 are clipped (1.5 -> 1.28) while 1.2 is not (it would be with 0.2).
    assert loss.item() == pytest.approx(-(0.5 + 0.9 + 1.2 + 1.28) / 4)
    assert stats["clip_frac"] == pytest.approx(0.25)
    inp.advantages = -pos
    loss, _ = get_policy_loss("ppo_clip")(inp, cfg)
    assert loss.item() == pytest.approx((0.8 + 0.9 + 1.2 + 1.5) / 4)  # A < 0: 0.5 clipped up to 0.8


def test_informative_groups_drop_equal_reward_groups():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.5])
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert informative_groups(rewards, groups).tolist() == [False, False, True, True, False, False, False, False]


def test_overlong_penalty():
    lengths = torch.tensor([10, 52, 55, 58, 64])
    pen = overlong_penalty(lengths, max_len=64, buffer_len=12, factor=1.0)
    torch.testing.assert_close(pen, torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0]))
    assert torch.equal(overlong_penalty(lengths, 64, 0, 1.0), torch.zeros(5))
    with pytest.raises(ValueError, match="overlong_buffer_len=64"):
        overlong_penalty(lengths, 64, 64, 1.0)


# --------------------------------------------------------------------------------------------- SFT
def test_nll_loss_is_token_mean_cross_entropy():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.125, 0.9, 0.9]], dtype=torch.float64))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    scored = ScoredBatch(rollout=rollout(2, 3, [0, 1], [2, 1]))
    adv = get_advantage("sft")(scored, None, AlgorithmConfig())
    loss, _ = get_policy_loss("nll")(LossInputs(logp, logp, adv.double(), mask, LossTotals(3, 2, 3)),
                                     AlgorithmConfig())
    assert loss.item() == pytest.approx((math.log(2) + math.log(4) + math.log(8)) / 3)


# --------------------------------------------------------------------------------------------- GKD
def test_gkd_divergences_hand_computed():
    s = torch.log(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    t = torch.log(torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64))
    kl_st = 0.5 * math.log(2) + 0.25 * math.log(0.5)  # KL(s || t)
    assert token_divergence(s, t, "reverse_kl").item() == pytest.approx(kl_st)
    assert token_divergence(s, t, "forward_kl").item() == pytest.approx(0.25 * math.log(0.5) + 0.5 * math.log(2))
    m = [0.375, 0.375, 0.25]  # beta = 0.5 mixture
    js = 0.5 * sum(p * math.log(p / q) for p, q in zip([0.25, 0.5, 0.25], m)) + \
        0.5 * sum(p * math.log(p / q) for p, q in zip([0.5, 0.25, 0.25], m))
    assert token_divergence(s, t, "jsd", beta=0.5).item() == pytest.approx(js)
    # top-2 of the teacher: tokens 1 and (0 or 2); renormalised teacher [2/3, 1/3] against student log-probs.
    t2 = torch.log(torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64))
    expect = (5 / 8) * math.log((5 / 8) / 0.25) + (3 / 8) * math.log((3 / 8) / 0.5)
    assert token_divergence(s, t2, "topk_forward_kl", topk=2).item() == pytest.approx(expect)
    # k = V: plain forward KL.
    assert token_divergence(s, t, "topk_forward_kl", topk=3).item() == pytest.approx(
        token_divergence(s, t, "forward_kl").item())


@pytest.mark.parametrize("kind", ["reverse_kl", "forward_kl", "jsd", "topk_forward_kl"])
def test_gkd_loss_zero_when_student_is_teacher_and_gradient_flows(kind):
    logits = torch.randn(2, 3, 7, generator=GEN, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    # top-k with k = V: the truncated teacher is the teacher (for k < V it is the renormalised top-k
    # teacher that gives zero loss; see test_gkd_topk_minimum_is_the_truncated_teacher).
    cfg = AlgorithmConfig(policy_loss="gkd", gkd_divergence=kind, gkd_topk=7)
    same = torch.log_softmax(logits.detach(), -1)
    inp = LossInputs(logp=torch.zeros(2, 3), old_logp=torch.zeros(2, 3), advantages=torch.zeros(2, 3), mask=mask,
                     totals=LossTotals(5, 2, 3), student_dist=torch.log_softmax(logits, -1), teacher_dist=same)
    loss, _ = get_policy_loss("gkd")(inp, cfg)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    inp.teacher_dist = torch.log_softmax(torch.randn(2, 3, 7, generator=GEN, dtype=torch.float64), -1)
    loss, stats = get_policy_loss("gkd")(inp, cfg)
    assert loss.item() > 0 and stats["divergence"] > 0
    loss.backward()
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[1, 2].abs().sum() > 0  # masked position: no grad


def test_gkd_topk_minimum_is_the_truncated_teacher():
    t = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    truncated = torch.log(torch.tensor([0.625, 0.375, 1e-30], dtype=torch.float64))
    assert token_divergence(truncated, t, "topk_forward_kl", topk=2).item() == pytest.approx(0.0, abs=1e-12)
    # The teacher itself pays for the mass outside the top-k: -log(0.8).
    assert token_divergence(t, t, "topk_forward_kl", topk=2).item() == pytest.approx(-math.log(0.8))


def test_gkd_rejects_bad_beta():
    s = torch.log_softmax(torch.randn(3, generator=GEN), -1)
    with pytest.raises(ValueError, match="gkd_beta=1.0"):
        token_divergence(s, s, "jsd", beta=1.0)


# ------------------------------------------------------------------------------------ KL, OPD + reward
def test_k3_kl_penalty():
    logp = torch.log(torch.tensor([[0.5, 0.25]], dtype=torch.float64))
    ref = torch.log(torch.tensor([[0.25, 0.25]], dtype=torch.float64))
    kl = k3_kl(logp, ref)
    assert kl[0, 1].item() == 0.0 and kl[0, 0].item() == pytest.approx(0.5 - math.log(0.5) - 1)
    cfg = AlgorithmConfig(kl_coef=0.1)
    inp = LossInputs(logp=logp, old_logp=logp, advantages=torch.zeros(1, 2, dtype=torch.float64),
                     mask=torch.ones(1, 2, dtype=torch.float64), totals=LossTotals(2, 1, 2), ref_logp=ref)
    loss, stats = get_policy_loss("ppo_clip")(inp, cfg)
    assert loss.item() == pytest.approx(0.1 * kl.sum().item() / 2)
    assert stats["kl_ref"] == pytest.approx(kl.mean().item())
    inp.ref_logp = None
    with pytest.raises(ValueError, match="kl_coef"):
        get_policy_loss("ppo_clip")(inp, cfg)


def test_opd_reward_mixing_adds_scaled_reward_per_token():
    batch = rollout(2, 3, [0, 1], [3, 2])
    scored = ScoredBatch(rollout=batch, teacher_logp=torch.full((2, 3), -1.0), rewards=torch.tensor([1.0, 0.0]))
    student = torch.full((2, 3), -1.5)
    adv = get_advantage("opd")(scored, student, AlgorithmConfig(reward_coef=0.25))
    assert torch.equal(adv, torch.tensor([[0.75, 0.75, 0.75], [0.5, 0.5, 0.0]]))


# ----------------------------------------------------------------------------------------- batches
def test_scored_batch_concat_repads_and_offsets_groups():
    a = ScoredBatch(rollout=rollout(2, 3, [0, 0], [3, 1]), rewards=torch.tensor([1.0, 0.0]),
                    task_rewards=torch.tensor([1.0, 0.0]), teacher_logp=torch.ones(2, 3))
    b = ScoredBatch(rollout=rollout(2, 5, [0, 0], [5, 2]), rewards=torch.tensor([0.0, 1.0]),
                    task_rewards=torch.tensor([0.0, 1.0]), teacher_logp=torch.ones(2, 5))
    c = ScoredBatch.concat([a, b], pad_id=0)
    assert c.rollout.response_ids.shape == (4, 5) and c.teacher_logp.shape == (4, 5)
    assert c.rollout.prompt_index.tolist() == [0, 0, 1, 1]  # two distinct groups survive
    assert c.loss_mask.sum(1).tolist() == [3, 1, 5, 2]
    assert torch.equal(c.teacher_logp[0, 3:], torch.zeros(2)) and c.rollout.texts == ["0", "1", "0", "1"]
