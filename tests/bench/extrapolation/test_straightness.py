"""Tests for bench.extrapolation.straightness: a scripted model whose attention/MLP parameters the test moves
along known directions, so every cosine, share and chord-to-arc ratio has a closed-form value; jumps (as an
extrapolation hook makes them) for the optimizer's own path; resume through the trainer's real checkpoint;
the memory cap."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.config import compose_config
from bench.config_ranges import ConfigError
from bench.extrapolation.straightness import (
    StraightnessTracker,
    copies_needed,
    early_step,
    extrapolated_layout,
    trigger_steps,
)
from bench.train.checkpoint import load_checkpoint, save_checkpoint
from bench.train.config_checks import validate_config

torch.set_num_threads(1)

MEASURED = ["layers.0.self_attn.q_proj.weight", "layers.0.mlp.up_proj.weight"]


class Scripted(nn.Module):
    """Two measured parameters (attention, MLP) and an embedding the name rule leaves out."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList([nn.Module()])
        self.layers[0].self_attn = nn.Module()
        self.layers[0].self_attn.q_proj = nn.Linear(4, 4, bias=False)
        self.layers[0].mlp = nn.Module()
        self.layers[0].mlp.up_proj = nn.Linear(5, 3, bias=False)
        self.embed_tokens = nn.Embedding(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))


def directions(model, seed=1):
    """Two orthonormal directions e1, e2 over the measured parameters (dicts name -> tensor)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {n: p.shape for n, p in model.named_parameters() if n in MEASURED}
    a = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
    b = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
    dot = lambda x, y: sum((x[n] * y[n]).sum() for n in x)
    na = dot(a, a).sqrt()
    e1 = {n: t / na for n, t in a.items()}
    proj = dot(b, e1)
    b = {n: b[n] - proj * e1[n] for n in b}
    nb = dot(b, b).sqrt()
    return e1, {n: t / nb for n, t in b.items()}


def move(model, step: dict[str, float], e1, e2, noise_seed=None):
    """theta <- theta + step['e1'] e1 + step['e2'] e2 on the measured parameters; the embedding moves at random
    (it must not count)."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in MEASURED:
                p.add_((step.get("e1", 0.0) * e1[n] + step.get("e2", 0.0) * e2[n]).float())
            elif noise_seed is not None:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(noise_seed)))


def run_path(steps: list[dict], total=None, jumps: dict[int, dict] | None = None, optimizer_path=False,
             schedule="pow2", model=None, tracker=None, start=0):
    """Drive a tracker through optimizer steps ``steps`` (and, at the steps in ``jumps``, a jump after the
    optimizer step, as an extrapolation hook makes it). Returns (tracker, per-step records, model)."""
    model = model if model is not None else Scripted()
    e1, e2 = directions(model)
    total = total or len(steps)
    tracker = tracker or StraightnessTracker(model, total, schedule, optimizer_path=optimizer_path)
    records = []
    for i, step in enumerate(steps[start:], start=start + 1):
        move(model, step, e1, e2, noise_seed=i)
        tracker.after_update(i, model)
        if jumps and i in jumps:
            move(model, jumps[i], e1, e2)
        records.append(tracker.after_step(i, model))
    return tracker, records, model


def approx(x):
    return pytest.approx(x, rel=1e-4, abs=1e-5)


# -- closed-form paths ----------------------------------------------------------------------------------------------
def test_straight_line_scores_one_everywhere():
    # Varying step sizes along one direction: still a straight line.
    sizes = [0.01 * (1 + (i % 3)) for i in range(20)]
    tracker, records, _ = run_path([{"e1": s} for s in sizes])
    out = tracker.summary()["net"]
    assert [w["step"] for w in out["windows"]] == [1, 2, 4, 8, 16]
    assert [w["start"] for w in out["windows"]] == [0, 1, 2, 4, 8]
    assert all(w["cos_final"] == approx(1.0) for w in out["windows"])
    assert out["windows"][0]["cos_prev_window"] is None
    assert all(w["cos_prev_window"] == approx(1.0) for w in out["windows"][1:])
    assert out["chord_arc"] == approx(1.0) and out["early_share"] == approx(1.0)
    assert out["final_norm"] == approx(sum(sizes)) and out["arc_length"] == approx(sum(sizes))
    assert [r["straightness/step_norm"] for r in records] == [approx(s) for s in sizes]
    assert records[-1]["straightness/displacement"] == approx(sum(sizes))
    assert "optimizer" not in tracker.summary()  # no hook moves weights: the net path is the only path


def test_a_bend_gives_the_expected_values():
    # 12 steps along e1, then 4 along e2 (a = 0.01): Delta W = a (12 e1 + 4 e2), |Delta W| = a sqrt(160).
    a = 0.01
    tracker, _, _ = run_path([{"e1": a}] * 12 + [{"e2": a}] * 4)
    s = tracker.summary()
    out = s["net"]
    assert s["early_step"] == 2 and s["steps"] == 16
    assert out["final_norm"] == approx(a * math.sqrt(160))
    assert out["chord_arc"] == approx(math.sqrt(160) / 16)
    assert out["early_share"] == approx(144 / 160)  # u = e1
    w = {x["step"]: x for x in out["windows"]}
    for step in (1, 2, 4, 8):  # windows inside the e1 stretch
        assert w[step]["cos_final"] == approx(12 / math.sqrt(160))
    # Window 16 covers steps 9..16: 4 a e1 + 4 a e2.
    assert w[16]["norm"] == approx(a * math.sqrt(32))
    assert w[16]["cos_final"] == approx(64 / math.sqrt(32 * 160))
    assert w[16]["cos_prev_window"] == approx(1 / math.sqrt(2))
    assert out["cos_final_mean"] == approx((4 * 12 / math.sqrt(160) + 64 / math.sqrt(32 * 160)) / 5)
    assert out["cos_prev_window_mean"] == approx((3 + 1 / math.sqrt(2)) / 4)


def test_reversal_has_negative_cosines_and_a_short_chord():
    # Out along e1 for 6 steps, back for 2: Delta W = 4 a e1, arc 8 a.
    a = 0.01
    tracker, _, _ = run_path([{"e1": a}] * 6 + [{"e1": -a}] * 2)
    out = tracker.summary()["net"]
    assert out["chord_arc"] == approx(0.5)
    w = {x["step"]: x for x in out["windows"]}
    assert w[8]["norm"] < 1e-6  # steps 5..8: +2a - 2a = 0
    assert w[4]["cos_final"] == approx(1.0) and w[4]["cos_prev_window"] == approx(1.0)
    assert out["final_norm"] == approx(4 * a) and out["early_share"] == approx(1.0)


def test_jumps_are_cut_out_of_the_optimizer_path():
    # The optimizer walks along e1 (a per step); at step 4 the hook jumps 3a along e2.
    a = 0.01
    tracker, records, _ = run_path([{"e1": a}] * 8, jumps={4: {"e2": 3 * a}}, optimizer_path=True)
    s = tracker.summary()
    net, opt = s["net"], s["optimizer"]
    # Net path: Delta W = a (8 e1 + 3 e2); step 4 moved a e1 + 3a e2 in one.
    assert net["final_norm"] == approx(a * math.sqrt(73))
    assert net["arc_length"] == approx(a * (7 + math.sqrt(10)))
    assert net["chord_arc"] == approx(math.sqrt(73) / (7 + math.sqrt(10)))
    assert net["early_share"] == approx(64 / 73)  # early step 1: u = e1
    wn = {x["step"]: x for x in net["windows"]}
    assert wn[4]["cos_final"] == approx((2 * 8 + 3 * 3) / (math.sqrt(13) * math.sqrt(73)))  # 2a e1 + 3a e2
    assert wn[8]["cos_final"] == approx(8 / math.sqrt(73))
    # The optimizer's own path is a straight line of 8 a.
    assert opt["final_norm"] == approx(8 * a) and opt["arc_length"] == approx(8 * a)
    assert opt["chord_arc"] == approx(1.0) and opt["early_share"] == approx(1.0)
    assert all(w["cos_final"] == approx(1.0) for w in opt["windows"])
    assert [r["straightness/jump_norm"] for r in records] == [approx(3 * a if i == 4 else 0.0) for i in range(1, 9)]
    assert [r["straightness/optimizer_step_norm"] for r in records] == [approx(a)] * 8
    assert records[-1]["straightness/optimizer_displacement"] == approx(8 * a)
    assert records[-1]["straightness/displacement"] == approx(a * math.sqrt(73))


def test_effopd_like_jumps_keep_window_directions():
    # Jumps along the window's own optimizer Delta (EffOPD): net windows = (1 + m) x optimizer windows, so the
    # window cosines agree while the final Delta W and the arc differ.
    a = 0.01
    steps = [{"e1": a, "e2": 0.5 * a * (i % 2)} for i in range(8)]
    jumps = {1: {"e1": 2 * a}, 2: {"e1": 4 * a, "e2": 2 * a}}  # m = 2 along window 1 (a e1), m = 4 along window 2
    tracker, _, _ = run_path(steps, jumps=jumps, optimizer_path=True)
    s = tracker.summary()
    for wn, wo in zip(s["net"]["windows"], s["optimizer"]["windows"]):
        if wo["cos_prev_window"] is not None:
            assert wn["cos_prev_window"] == approx(wo["cos_prev_window"])
    assert s["net"]["windows"][0]["norm"] == approx(3 * s["optimizer"]["windows"][0]["norm"])
    assert s["net"]["windows"][1]["norm"] == approx(5 * s["optimizer"]["windows"][1]["norm"])
    assert s["net"]["final_norm"] > s["optimizer"]["final_norm"]


def test_every_k_windows_and_a_tail_after_the_last_trigger():
    tracker, _, _ = run_path([{"e1": 0.01}] * 10, schedule="every:4")
    out = tracker.summary()["net"]
    assert [(w["start"], w["step"]) for w in out["windows"]] == [(0, 4), (4, 8)]  # steps 9, 10: no window
    assert out["windows"][1]["cos_final"] == approx(1.0)


def test_no_motion_gives_none_not_nan():
    tracker, _, _ = run_path([{}] * 4)
    out = tracker.summary()["net"]
    assert out["chord_arc"] is None and out["early_share"] is None and out["final_norm"] == 0.0
    assert all(w["cos_final"] is None for w in out["windows"])


def test_the_tracker_must_see_every_step():
    model = Scripted()
    tracker = StraightnessTracker(model, 4)
    tracker.after_step(1, model)
    with pytest.raises(ValueError, match="step 3 follows step 1"):
        tracker.after_step(3, model)


# -- resume ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer_path", [False, True])
def test_resume_through_a_checkpoint_gives_the_same_summary(tmp_path, optimizer_path):
    g = torch.Generator().manual_seed(3)
    steps = [{"e1": float(x), "e2": float(y)} for x, y in 0.01 * torch.randn(16, 2, generator=g)]
    jumps = {1: {"e1": 0.02}, 4: {"e2": -0.03}, 8: {"e1": 0.05, "e2": 0.01}} if optimizer_path else None
    straight, rec_straight, _ = run_path(steps, jumps=jumps, optimizer_path=optimizer_path)

    first, rec_first, model = run_path(steps[:8], total=16, jumps=jumps, optimizer_path=optimizer_path)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = save_checkpoint(tmp_path, 8, model, optimizer, {"step": 8, "straightness": first.state_dict()})
    # A fresh process: the model at theta_0, a new tracker, then the checkpoint restores model and measure.
    fresh = Scripted()
    resumed = StraightnessTracker(fresh, 16, optimizer_path=optimizer_path)
    state = load_checkpoint(ckpt, fresh, torch.optim.SGD(fresh.parameters(), lr=0.1), extrapolated_layout(fresh))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    resumed.load_state_dict(state["straightness"], step=state["step"])
    _, rec_second, _ = run_path(steps, jumps=jumps, optimizer_path=optimizer_path, model=fresh, tracker=resumed,
                                start=8)
    assert rec_first + rec_second == rec_straight
    a, b = straight.summary(), resumed.summary()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_resume_from_a_checkpoint_without_the_measure_skips_it_with_a_note():
    model = Scripted()
    tracker = StraightnessTracker(model, 8)
    tracker.load_state_dict(None, step=4)
    assert tracker.after_step(5, model) == {}
    assert "resumed at step 4 from a checkpoint without straightness state" in tracker.summary()["skipped"]


# -- memory cap and config --------------------------------------------------------------------------------------------
def test_host_memory_cap_skips_with_a_note():
    model = Scripted()
    values = 16 + 15  # the two measured matrices; the embedding does not count
    assert copies_needed(16, "pow2", False) == 3 + 5 and copies_needed(16, "pow2", True) == 2 * (3 + 5)
    tracker = StraightnessTracker(model, 16, optimizer_path=True, max_host_mb=1e-6)
    assert tracker.num_values == values
    assert tracker.host_mb == pytest.approx(16 * values * 4 / 2**20)
    assert tracker.after_step(1, model) == {} and tracker.state_dict()["skipped"]
    note = tracker.summary()["skipped"]
    assert "trainer.straightness_max_host_mb=1e-06" in note and str(values) in note
    assert StraightnessTracker(model, 16, max_host_mb=1.0).active  # under the cap
    assert StraightnessTracker(model, 16, max_host_mb=0.0).active  # 0 = no cap


def test_helpers():
    assert [early_step(t) for t in (1, 4, 10, 11, 100, 101)] == [1, 1, 1, 2, 10, 11]
    assert trigger_steps(10, "pow2") == [1, 2, 4, 8] and trigger_steps(10, "every:3") == [3, 6, 9]


def test_negative_cap_fails_at_start_up_naming_the_key():
    validate_config(compose_config(["trainer.straightness_max_host_mb=0", "trainer.output_dir=unused"]))
    with pytest.raises(ConfigError, match=r"trainer.straightness_max_host_mb=-1.0 is out of range: allowed is a "
                                          r"number >= 0"):
        validate_config(compose_config(["trainer.straightness_max_host_mb=-1", "trainer.output_dir=unused"]))


# -- the studies' reader ---------------------------------------------------------------------------------------------
def test_studies_reader_of_summary_json():
    from bench.studies.run_metrics import straightness
    from bench.studies.speedup import RunRecord

    record = lambda summary: RunRecord(method="m", seed=0, lr=1e-5, world="style", summary=summary, evals=[])
    a = 0.01
    bent, _, _ = run_path([{"e1": a}] * 12 + [{"e2": a}] * 4)  # no hook: net path only
    jumped, _, _ = run_path([{"e1": a}] * 8, jumps={4: {"e2": 3 * a}}, optimizer_path=True)
    s = straightness(record({"straightness": bent.summary()}))
    assert s["chord_arc"] == approx(math.sqrt(160) / 16) and s["early_share"] == approx(0.9)
    assert s["window_steps"] == [1, 2, 4, 8, 16] and s["window_cos_prev"][0] is None
    assert s["window_cos_final"][-1] == approx(64 / math.sqrt(32 * 160)) and s["early_step"] == 2
    assert straightness(record({"straightness": bent.summary()}), "optimizer") == s  # nothing cut out
    j = record({"straightness": jumped.summary()})
    assert straightness(j)["chord_arc"] == approx(math.sqrt(73) / (7 + math.sqrt(10)))
    assert straightness(j, "optimizer")["chord_arc"] == approx(1.0)
    assert straightness(record({})) is None  # a run from before the measure, or trainer.straightness=false
    assert straightness(record({"straightness": {"skipped": "over the cap"}})) is None
    with pytest.raises(ValueError, match="path='opt'"):
        straightness(j, "opt")
