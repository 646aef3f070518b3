"""Tests for bench.extrapolation.window_lr: which points WindowLR scores, what it accepts, how it moves the
learning rate (through the scheduler, so the next scheduler step keeps it), its bounds, its short windows, its
checks and its state. The scorer is scripted (tests/bench/extrapolation/test_effopd.py)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.config import EffOPDConfig
from bench.extrapolation.window_lr import BACKTRACK, WindowLR, check_window_lr, forward_multipliers
from tests.bench.extrapolation.test_effopd import (
    INCLUDED,
    ScriptedScorer,
    assert_at,
    known_delta,
    make_model,
    move,
    snapshot,
)

LR = 1e-3


def wcfg(**kw):
    base = dict(enabled=True, method="window_lr", val_signal="teacher_loglik", schedule="every:4", max_tries=4)
    return EffOPDConfig(**{**base, **kw})


def setup(scores, **kw):
    """Model, optimizer + constant LambdaLR, WindowLR; then the params moved by a known Delta (the window)."""
    model = make_model()
    scorer = ScriptedScorer(model, scores)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    hook = WindowLR(wcfg(**kw), model, scorer, opt, sched)
    anchor = snapshot(model, INCLUDED)
    move(model, known_delta(model))
    theta = snapshot(model)
    delta = {n: theta[n] - anchor[n] for n in INCLUDED}
    return model, hook, scorer, opt, sched, theta, delta


def lr_of(opt):
    return opt.param_groups[0]["lr"]


def test_forward_candidates_are_powers_of_two():
    assert forward_multipliers(4) == [1.0, 2.0, 4.0, 8.0]
    assert forward_multipliers(1) == [1.0]


def test_accepts_while_improving_and_multiplies_the_lr_by_one_plus_m():
    # base 0.1; m=1 0.2 (better), m=2 0.3 (better), m=4 0.25 (worse: stop, back to m=2)
    model, hook, scorer, opt, sched, theta, delta = setup([0.1, 0.2, 0.3, 0.25])
    rec = hook.after_step(4)
    assert [c["multiplier"] for c in rec["candidates"]] == [1.0, 2.0, 4.0]
    for seen, m in zip(scorer.seen, [0.0, 1.0, 2.0, 4.0], strict=True):
        assert_at(seen, theta, delta, m)
    assert rec["accepted_multiplier"] == 2.0
    assert_at(snapshot(model), theta, delta, 2.0)
    assert rec["lr_factor"] == pytest.approx(3.0) and rec["lr_scale"] == pytest.approx(3.0)
    assert lr_of(opt) == pytest.approx(3 * LR)
    sched.step()  # the scheduler recomputes lr from its base LRs: the change must survive it
    assert lr_of(opt) == pytest.approx(3 * LR)
    assert sched.get_last_lr()[0] == pytest.approx(3 * LR)


def test_first_candidate_failing_tries_half_a_window_back_and_halves_the_lr():
    model, hook, scorer, opt, sched, theta, delta = setup([0.5, 0.4, 0.6])
    rec = hook.after_step(4)
    assert [c["multiplier"] for c in rec["candidates"]] == [1.0, BACKTRACK]
    assert_at(scorer.seen[2], theta, delta, BACKTRACK)
    assert rec["accepted_multiplier"] == BACKTRACK
    assert_at(snapshot(model), theta, delta, BACKTRACK)
    assert lr_of(opt) == pytest.approx(0.5 * LR)


def test_backtrack_factor_one_steps_back_but_keeps_the_lr():
    model, hook, scorer, opt, sched, theta, delta = setup([0.5, 0.4, 0.6], lr_backtrack_factor=1.0)
    rec = hook.after_step(4)
    assert rec["accepted_multiplier"] == BACKTRACK and rec["lr_factor"] == 1.0
    assert_at(snapshot(model), theta, delta, BACKTRACK)
    assert lr_of(opt) == pytest.approx(LR)


def test_early_triggers_of_a_joined_schedule():
    model, hook, scorer, opt, sched, theta, delta = setup([0.1, 0.2, 0.1], schedule="pow2+every:4")
    assert hook.after_step(1)["accepted_multiplier"] == 1.0  # step 1 triggers: the first window is one step
    assert hook.after_step(3) is None


def test_nothing_accepted_keeps_theta_and_the_lr():
    model, hook, scorer, opt, sched, theta, delta = setup([0.5, 0.4, 0.5])  # backtrack ties: not strictly better
    rec = hook.after_step(4)
    assert rec["accepted_multiplier"] == 0.0 and rec["lr_factor"] == 1.0
    assert_at(snapshot(model), theta, delta, 0.0)
    assert lr_of(opt) == pytest.approx(LR)


def test_all_forward_candidates_accepted_stops_after_max_tries():
    model, hook, scorer, opt, sched, theta, delta = setup([0.1, 0.2, 0.3, 0.4, 0.5], lr_max_factor=100.0)
    rec = hook.after_step(4)
    assert rec["accepted_multiplier"] == 8.0 and len(scorer.seen) == 5
    assert_at(snapshot(model), theta, delta, 8.0)
    assert lr_of(opt) == pytest.approx(9 * LR)


def test_lr_stays_within_its_bounds():
    model, hook, scorer, opt, sched, theta, delta = setup([0.1, 0.2, 0.3, 0.4, 0.5], lr_max_factor=4.0)
    rec = hook.after_step(4)
    assert rec["lr_scale"] == pytest.approx(4.0) and rec["lr_factor"] == pytest.approx(4.0)
    assert lr_of(opt) == pytest.approx(4 * LR)
    model, hook, scorer, opt, sched, theta, delta = setup([0.5, 0.4, 0.6], lr_min_factor=0.8)
    hook.after_step(4)
    assert lr_of(opt) == pytest.approx(0.8 * LR) and hook.lr_scale == pytest.approx(0.8)


def test_windows_are_short_the_anchor_moves_to_the_accepted_point():
    model, hook, scorer, opt, sched, theta, delta = setup([0.1, 0.2, 0.1, 0.1, 0.2, 0.1])
    hook.after_step(4)  # accepts m=1
    accepted = snapshot(model)
    assert hook.after_step(5) is None and hook.after_step(6) is None  # not trigger steps: nothing scored
    second = known_delta(model, seed=7)
    move(model, second)
    hook.after_step(8)  # Delta is the last window only (theta_8 - the point accepted at 4): m=1 is seen at
    for n in INCLUDED:  # accepted + second + 1 * second
        torch.testing.assert_close(scorer.seen[4][n], accepted[n] + 2 * second[n], rtol=1e-6, atol=1e-7)


def test_a_failing_scorer_leaves_the_accepted_point():
    model = make_model()
    calls = []

    def scorer(seed):
        calls.append(seed)
        if len(calls) == 3:
            raise RuntimeError("scorer broke")
        from bench.extrapolation.registry import ValidationScore
        return ValidationScore(float(len(calls)), 1)

    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    hook = WindowLR(wcfg(), model, scorer, opt)
    anchor = snapshot(model, INCLUDED)
    move(model, known_delta(model))
    theta = snapshot(model)
    with pytest.raises(RuntimeError, match="scorer broke"):
        hook.after_step(4)
    assert_at(snapshot(model), theta, {n: theta[n] - anchor[n] for n in INCLUDED}, 1.0)  # m=1 was accepted


def test_state_dict_round_trip_keeps_the_lr_scale_and_anchor():
    model, hook, scorer, opt, sched, theta, delta = setup([0.1, 0.2, 0.1])
    hook.after_step(4)
    state = hook.state_dict()
    assert state["lr_scale"] == pytest.approx(2.0)
    model2 = make_model()
    hook2 = WindowLR(wcfg(), model2, ScriptedScorer(model2, []), torch.optim.AdamW(model2.parameters(), lr=LR))
    hook2.load_state_dict(state)
    assert hook2.lr_scale == pytest.approx(2.0)
    for n in INCLUDED:
        assert torch.equal(hook2.anchor[n], hook.anchor[n])


@pytest.mark.parametrize("kw,match", [
    (dict(schedule="pow2"), "every:K"),
    (dict(lr_min_factor=0.0), "lr_min_factor"),
    (dict(lr_max_factor=0.5), "lr_max_factor"),
    (dict(max_tries=0), "max_tries"),
    (dict(lr_backtrack_factor=0.0), "lr_backtrack_factor"),
    (dict(lr_backtrack_factor=1.5), "lr_backtrack_factor"),
])
def test_check_names_the_bad_key(kw, match):
    with pytest.raises(ValueError, match=match):
        check_window_lr(OmegaConf.create({"effopd": wcfg(**kw).__dict__}))


def test_needs_the_optimizer():
    model = make_model()
    with pytest.raises(ValueError, match="optimizer"):
        WindowLR(wcfg(), model, ScriptedScorer(model, []), None)
