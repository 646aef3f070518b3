"""Tests for core.config_diff: which keys differ, which are let through, and what the refusal says."""

from __future__ import annotations

import pytest

from core.config_diff import ConfigChanged, check_unchanged, config_diff, flatten

OLD = {"trainer": {"lr": 2e-5, "seed": 0, "total_steps": 50, "betas": [0.9, 0.999]}, "logging": {"wandb": "offline"}}


def test_flatten_keeps_lists_as_leaves():
    assert flatten(OLD) == {"trainer.lr": 2e-5, "trainer.seed": 0, "trainer.total_steps": 50,
                            "trainer.betas": [0.9, 0.999], "logging.wandb": "offline"}


def test_diff_lists_changed_added_and_removed_keys():
    new = {"trainer": {"lr": 6e-5, "seed": 0, "betas": [0.9, 0.95], "extra": 1}, "logging": {"wandb": "offline"}}
    assert config_diff(OLD, new) == {"trainer.betas": ([0.9, 0.999], [0.9, 0.95]), "trainer.extra": ("<absent>", 1),
                                     "trainer.lr": (2e-5, 6e-5), "trainer.total_steps": (50, "<absent>")}
    assert config_diff(OLD, OLD) == {}


def test_refuses_listing_every_unnamed_key_and_the_option_that_allows_it():
    new = {**OLD, "trainer": {**OLD["trainer"], "lr": 6e-5, "seed": 3}}
    with pytest.raises(ConfigChanged) as err:
        check_unchanged(OLD, new, what="run/config.yaml", how_to_allow="trainer.resume_may_change")
    msg = str(err.value)
    assert msg.startswith("the new config differs from run/config.yaml in 2 key(s): trainer.lr: 2e-05 -> 6e-05; "
                          "trainer.seed: 0 -> 3.")
    assert msg.endswith("trainer.resume_may_change=[trainer.lr,trainer.seed]")


def test_named_keys_and_their_parents_let_changes_through_and_are_returned():
    new = {**OLD, "trainer": {**OLD["trainer"], "total_steps": 100}, "logging": {"wandb": "disabled"}}
    allowed = check_unchanged(OLD, new, what="x", allowed=["trainer.total_steps"], ignored=["logging"],
                              how_to_allow="opt")
    assert allowed == {"trainer.total_steps": (50, 100)}  # ignored keys are neither refused nor reported
    assert check_unchanged(OLD, new, what="x", allowed=["trainer", "logging"], how_to_allow="opt") == {
        "logging.wandb": ("offline", "disabled"), "trainer.total_steps": (50, 100)}
    with pytest.raises(ConfigChanged, match="trainer.total_steps"):  # a prefix of a key's name is not its parent
        check_unchanged(OLD, new, what="x", allowed=["trainer.total"], ignored=["logging"], how_to_allow="opt")
