"""Start-up checks read what registered functions declare, never algorithm names; batch stages switch on
from the config."""

from __future__ import annotations

import pytest

from bench.algorithms import registry, stages
from bench.algorithms.checks import check_algorithm
from bench.algorithms.registry import register_advantage, register_policy_loss
from bench.algorithms.stages import active_batch_stages, register_batch_stage
from bench.config import compose_config


@pytest.fixture(autouse=True)
def scratch_registries(monkeypatch):
    """Every registration in these tests goes to copies, so nothing stays registered afterwards."""
    monkeypatch.setattr(registry, "ADVANTAGES", dict(registry.ADVANTAGES))
    monkeypatch.setattr(registry, "POLICY_LOSSES", dict(registry.POLICY_LOSSES))
    monkeypatch.setattr(stages, "BATCH_STAGES", dict(stages.BATCH_STAGES))


def cfg(*overrides: str):
    return compose_config(["trainer.output_dir=unused", *overrides])


def test_min_group_size_is_checked_for_a_new_advantage():
    register_advantage("pairwise", min_group_size=2)(lambda scored, logp, cfg: None)
    with pytest.raises(ValueError, match=r"algorithm.name=pairwise with rollout.n=1: .* need >= 2 samples"):
        check_algorithm(cfg("algorithm.name=pairwise", "rollout.n=1"))
    check_algorithm(cfg("algorithm.name=pairwise", "rollout.n=2"))
    register_advantage("triples", min_group_size=3)(lambda scored, logp, cfg: None)
    with pytest.raises(ValueError, match="need >= 3 samples"):
        check_algorithm(cfg("algorithm.name=triples", "rollout.n=2"))
    with pytest.raises(ValueError, match="min_group_size=0"):
        register_advantage("empty", min_group_size=0)


def test_needs_teacher_is_checked_for_a_new_advantage():
    register_advantage("distill2", needs_student_logp=True, needs_teacher=True)(lambda scored, logp, cfg: logp)
    with pytest.raises(ValueError, match="algorithm.name=distill2 scores with the teacher"):
        check_algorithm(cfg("algorithm.name=distill2", "algorithm.needs_teacher=false"))
    check_algorithm(cfg("algorithm.name=distill2"))
    assert registry.ADVANTAGES["opd"].needs_teacher and registry.ADVANTAGES["grpo"].min_group_size == 2


def test_importance_ratio_is_checked_for_a_new_loss():
    register_policy_loss("clip2", importance_ratio=True)(lambda inputs, cfg: None)
    with pytest.raises(ValueError, match="rollout_source=teacher trains on off-policy teacher samples"):
        check_algorithm(cfg("experiment=sft", "algorithm.policy_loss=clip2"))
    check_algorithm(cfg("experiment=grpo", "algorithm.policy_loss=clip2", "rollout.is_correction=tis"))
    register_policy_loss("plain")(lambda inputs, cfg: None)
    with pytest.raises(ValueError, match="is_correction=tis weights"):
        check_algorithm(cfg("algorithm.policy_loss=plain", "rollout.is_correction=tis"))


def test_engine_settings_blocks_are_checked_at_start_up():
    with pytest.raises(ValueError, match="rollout.hf.static_cache='yes'"):
        check_algorithm(cfg("rollout.hf.static_cache=yes"))
    with pytest.raises(ValueError, match="unknown rollout.engine='nope'"):
        check_algorithm(cfg("rollout.engine=nope"))


def test_batch_stages_switch_on_from_the_config():
    names = lambda *o: [s.name for s in active_batch_stages(cfg(*o))]  # noqa: E731
    assert names() == [] and names("experiment=grpo") == []
    assert names("experiment=dapo") == ["dynamic_sampling", "overlong_reward_shaping"]
    assert names("experiment=dapo", "algorithm.overlong_filter=true", "algorithm.overlong_buffer_len=0") == [
        "dynamic_sampling", "overlong_filter"]


def test_a_stage_check_runs_at_start_up_and_collectors_are_exclusive():
    def refuse(c):
        raise ValueError("algorithm.reward_coef: the test stage refuses this run")

    register_batch_stage("picky", applies=lambda c: c.algorithm.reward_coef > 0, check=refuse)(lambda s, c: s)
    check_algorithm(cfg())
    with pytest.raises(ValueError, match="the test stage refuses"):
        check_algorithm(cfg("algorithm.reward_coef=0.5"))
    with pytest.raises(ValueError, match="max_gen_batches >= 1 .got 0."):  # DAPO's own check
        check_algorithm(cfg("experiment=dapo", "algorithm.max_gen_batches=0"))
    register_batch_stage("rounds", applies=lambda c: True, collects=True)(lambda next_round, c, pad_id: None)
    with pytest.raises(ValueError, match=r"\['dynamic_sampling', 'rounds'\] each decide"):
        active_batch_stages(cfg("experiment=dapo"))
    with pytest.raises(ValueError, match="batch stage 'rounds' registered twice"):
        register_batch_stage("rounds", applies=lambda c: True)(lambda s, c: s)
