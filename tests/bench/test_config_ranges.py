"""Tests for bench.config_ranges: every config field has a range (or a stated reason for none), every bad value the
issue found (issue 15 point 5) is refused before anything loads with one line naming key, value and range, exit
code 2, and every shipped preset passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import TrainConfig, compose_config
from bench.config_ranges import RULES, UNRANGED, ConfigError, config_keys
from bench.train.config_checks import validate_config
from core.paths import EXPERIMENTS_DIR, REPO_ROOT


def compose(*overrides):
    return compose_config([*overrides, "trainer.output_dir=unused"])


def test_every_field_has_a_range_or_a_reason():
    keys = set(config_keys(TrainConfig))
    assert keys - set(RULES) - set(UNRANGED) == set(), "new config fields need a rule in RULES or a reason in UNRANGED"
    assert (set(RULES) | set(UNRANGED)) - keys == set(), "RULES/UNRANGED name fields the dataclasses no longer have"
    assert not set(RULES) & set(UNRANGED)


# (override, what the message must name): the probes, then one per kind of rule.
BAD = [
    ("trainer.lr=-1e-5", "trainer.lr=-1e-05"),
    ("trainer.lr=0", "trainer.lr=0.0"),
    ("trainer.eval_every=0", "trainer.eval_every=0"),
    ("data.test_prompts=0", "data.test_prompts=0"),
    ("trainer.micro_batch_size=0", "trainer.micro_batch_size=0"),
    ("trainer.prompts_per_step=0", "trainer.prompts_per_step=0"),
    ("rollout.max_new_tokens=0", "rollout.max_new_tokens=0"),
    ("trainer.total_steps=0", "trainer.total_steps=0"),
    ("trainer.threads=-1", "trainer.threads=-1"),
    ("trainer.save_every=-1", "trainer.save_every=-1"),
    ("rollout.temperature=-1", "rollout.temperature=-1.0"),
    ("world.student_path=/nonexistent", "world.student_path='/nonexistent'"),
    ("algorithm.name=bogus", "algorithm.name='bogus'"),
    ("rollout.engine=bogus", "bogus"),
    ("effopd.schedule=every:0", "effopd.schedule='every:0'"),
    ("effopd.method=bogus", "bogus"),
    ("trainer.betas=[0.9]", "trainer.betas=[0.9]"),
    ("trainer.betas=[0.9,1.5]", "trainer.betas=[0.9, 1.5]"),
    ("rollout.top_p=0", "rollout.top_p=0.0"),
    ("data.grader=fuzzy", "data.grader='fuzzy'"),
    ("world.target_style=[carry,carry]", "world.target_style"),
    ("world.student.style_mix=[0.5,2.0,0.0]", "world.student.style_mix"),
    ("trainer.snapshot_steps=bogus", "trainer.snapshot_steps='bogus'"),
    ("effopd.lr_backtrack_factor=0", "effopd.lr_backtrack_factor=0.0"),
    ("logging.wandb=maybe", "logging.wandb='maybe'"),
]


@pytest.mark.parametrize("override,named", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_naming_key_and_value(override, named):
    with pytest.raises(ConfigError) as err:
        validate_config(compose(override))
    assert named in str(err.value) and "\n" not in str(err.value)


def test_range_message_says_what_is_allowed():
    with pytest.raises(ConfigError, match=r"trainer\.lr=-1e-05 is out of range: allowed is a number > 0"):
        validate_config(compose("trainer.lr=-1e-5"))


def test_zero_prompts_mean_every_row_only_for_hub_worlds():
    validate_config(compose("experiment=paper/opd", "data.test_prompts=0"))
    with pytest.raises(ConfigError, match="data.test_prompts=0"):
        validate_config(compose("data.test_prompts=0"))


def test_a_hub_world_needs_its_student():
    with pytest.raises(ConfigError, match="world.student_path=''"):
        validate_config(compose("experiment=paper/opd", "world.student_path="))


PRESETS = sorted(p.relative_to(EXPERIMENTS_DIR / "experiment").with_suffix("").as_posix()
                 for p in (EXPERIMENTS_DIR / "experiment").rglob("*.yaml"))
WORLDS = sorted(p.stem for p in (EXPERIMENTS_DIR / "world").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_passes(preset):
    validate_config(compose(f"experiment={preset}"))


@pytest.mark.parametrize("world", [w for w in WORLDS if not w.startswith("paper")])
def test_every_tiny_world_passes(world):
    validate_config(compose(f"world={world}"))


def test_train_refuses_before_anything_loads(tmp_path: Path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "bench.train", "trainer.lr=-1e-5", "logging.wandb=disabled",
                           f"hydra.run.dir={run}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["error: trainer.lr=-1e-05 is out of range: allowed is a number > 0"]
    assert not (run / "config.yaml").exists()  # nothing of the run was written: no world, no model
