"""Shared fixtures: a micro tiny world (built once per session into a temp cache) and its config."""

from __future__ import annotations

import os

import pytest
import torch

import core  # noqa: F401  (first: pins the CPU numerics before torch loads, core/numerics.py)
from bench.config import compose_config


def pytest_report_header(config):
    """The CPU and the numerics in force: a pinned value that fails on one machine is read against these."""
    from core.numerics import status
    from core.provenance import cpu_model

    s = status()
    return [f"cpu: {cpu_model()} ({os.cpu_count()} CPUs); numerics: {s['mode']}, profile {s['profile']}, "
            f"ATen {s['aten_capability']}, " + ", ".join(f"{k}={v}" for k, v in s["env"].items())]


MICRO_WORLD = [
    "world.arch.hidden_size=64", "world.arch.intermediate_size=128", "world.arch.num_hidden_layers=2",
    "world.arch.num_attention_heads=2", "world.arch.num_key_value_heads=1", "world.arch.head_dim=32",
    "world.base.steps=40", "world.base.warmup_steps=5", "world.teacher.steps=10", "world.teacher.warmup_steps=2",
    "world.student.steps=10", "world.student.warmup_steps=2",
]
MICRO_RUN = [
    "data.train_prompts=64", "data.test_prompts=8", "data.selection_prompts=8", "effopd.val_prompts=8",
    "trainer.total_steps=4", "trainer.prompts_per_step=8", "trainer.micro_batch_size=4", "trainer.eval_every=2",
    "trainer.eval_avg_k=2", "trainer.eval_avg_k_every=0", "trainer.threads=1", "trainer.lr=1e-3",
    "rollout.max_new_tokens=40", "logging.wandb=disabled", "logging.progress_bar=false",
]


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory):
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("tinyworld-cache")
    from bench.world.tiny.build import ensure_world

    ensure_world(compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={cache}"]).world)
    return cache


@pytest.fixture
def micro_cfg(micro_cache, tmp_path):
    """``micro_cfg(extra_overrides, out=None)`` -> a composed config for a 4-step run in ``tmp_path``."""

    def make(extra: list[str] = (), out=None):
        out = out or tmp_path / "run"
        return compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}", *MICRO_RUN,
                               f"trainer.output_dir={out}", *extra])

    return make
