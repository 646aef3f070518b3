"""Paper-scale worlds on CPU: local HF folders stand in for hub models, registry benchmarks for prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.world.hub import split_training_rows
from evals.datasets.loader import DEFAULT_DATA_DIR

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns sandboxes: not in make test-fast

needs_shared = pytest.mark.skipif(not (DEFAULT_DATA_DIR / "math" / "deepmath_10k.jsonl").exists(),
                                  reason=f"shared benchmark data not present at {DEFAULT_DATA_DIR}")


def micro_model(micro_cache) -> Path:
    from bench.config import compose_config
    from bench.world.tiny.build import model_key
    from tests.conftest import MICRO_WORLD

    world = compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}"]).world
    return Path(micro_cache) / model_key(world, "student")


def hub_overrides(micro_cache, *extra):
    path = micro_model(micro_cache)
    return ["world.kind=hub", f"world.student_path={path}", f"world.teacher_path={path}",
            "data.min_difficulty=9.0", "data.grader_workers=1", "rollout.max_new_tokens=12", *extra]


def test_split_holds_out_validation_and_selection():
    rows = list(range(100))
    train, val, sel = split_training_rows(rows, 10, 5, 0)
    assert len(val) == 10 and len(sel) == 5 and len(train) == 85
    assert not (set(train) & set(val)) and not (set(train) & set(sel)) and not (set(val) & set(sel))
    assert split_training_rows(rows, 10, 5, 0) == (train, val, sel)  # fixed, not seeded by the run
    assert len(split_training_rows(rows, 10, 5, 20)[0]) == 20
    with pytest.raises(ValueError, match="cannot hold out"):
        split_training_rows(rows[:10], 8, 2, 0)


@needs_shared
def test_hub_world_loads_prompts_and_grades_with_math_verify(micro_cfg, micro_cache):
    from bench.world import load_world

    world = load_world(micro_cfg(hub_overrides(micro_cache)))
    assert len(world.train) == 64  # data.train_prompts caps the 232 - 8 - 8 rows of difficulty >= 9 left
    assert len(world.test) == 8 and len(world.effopd_val) == 8 and len(world.selection) == 8
    p = world.test[0]
    assert p.prompt.endswith("put your final answer within \\boxed{}.") and p.answer == "204"
    scores = world.score([p, p, p], ["\\boxed{204}", "\\boxed{205}", "so \\boxed{204"], [False, False, True])
    assert scores == [1.0, 0.0, 0.0]


@needs_shared
def test_hub_world_trains_and_runs_effopd_end_to_end(micro_cfg, micro_cache, tmp_path):
    from bench.train import train

    cfg = micro_cfg([*hub_overrides(micro_cache), "experiment=effopd", "trainer.total_steps=2",
                     "trainer.eval_every=2"], out=tmp_path / "hub")
    train(cfg)
    steps = [json.loads(line) for line in (tmp_path / "hub" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and all(s["reward_mean"] == 0.0 for s in steps)
    evals = [json.loads(line) for line in (tmp_path / "hub" / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2] and "test/greedy" in evals[0]
    assert (tmp_path / "hub" / "effopd.jsonl").exists()


def test_missing_model_paths_are_a_clear_error(micro_cfg):
    from bench.world import load_world

    with pytest.raises(ValueError, match="world.student_path is empty"):
        load_world(micro_cfg(["world.kind=hub"]))
    with pytest.raises(ValueError, match="cannot load the tokenizer of 'no-such-owner/no-such-model'"):
        load_world(micro_cfg(["world.kind=hub", "world.student_path=no-such-owner/no-such-model",
                              "world.teacher_path=x/y"]))
