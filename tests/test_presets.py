"""Every Hydra preset composes against the structured configs and passes the start-up checks, paper/* included.

A renamed or mistyped key in any YAML under experiments/ fails here, not at the start of someone's GPU run."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.algorithms.checks import check_algorithm
from bench.config import compose_config
from bench.extrapolation import check_extrapolation
from core.paths import EXPERIMENTS_DIR

GROUPS = ("world", "data", "algorithm", "rollout", "trainer", "effopd", "logging")


def options(group: str) -> list[str]:
    root = EXPERIMENTS_DIR / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def resolved(cfg) -> dict:
    """Every interpolation resolved. ``trainer.output_dir`` is Hydra's own ``${hydra:runtime.output_dir}``, which
    only a running app has: it gets a stand-in first."""
    cfg = cfg.copy()
    cfg.trainer.output_dir = "outputs/preset-check"
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("preset", options("experiment"))
def test_experiment_preset_composes_and_passes_checks(preset):
    cfg = compose_config([f"experiment={preset}"])
    assert cfg.method, f"experiment={preset} sets no method label"
    resolved(cfg)
    check_algorithm(cfg)
    check_extrapolation(cfg)


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    resolved(cfg)
    # An option alone need not be a whole experiment (algorithm=grpo wants the grpo preset's rollout.n), so only
    # the block-local checks run here; the experiment presets above get all of them.
    check_extrapolation(cfg)


def test_every_preset_is_listed():
    """The parametrisations above see the whole tree (a preset in a new subfolder is picked up too)."""
    names = options("experiment")
    assert {"opd", "effopd", "grpo", "dapo", "sft", "paper/opd", "paper/effopd"} <= set(names), names
    assert all((EXPERIMENTS_DIR / "experiment" / f"{n}.yaml").exists() for n in names)
    assert Path(EXPERIMENTS_DIR / "config.yaml").exists()
