"""Truncated IS in the trainer: with an engine that samples from the trainer's own weights (fp32), the
weights are 1 and training is unchanged; bad combinations are refused at start-up."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns processes: not in make test-fast


def losses_and_records(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows], rows


def test_tis_with_a_matched_engine_changes_nothing(micro_cfg, tmp_path):
    from bench.train import train

    train(micro_cfg(["trainer.total_steps=2"], out=tmp_path / "plain"))
    train(micro_cfg(["trainer.total_steps=2", "rollout.is_correction=tis"], out=tmp_path / "tis"))
    plain, _ = losses_and_records(tmp_path / "plain")
    tis, rows = losses_and_records(tmp_path / "tis")
    assert tis == pytest.approx(plain, abs=1e-5)
    assert all(r["is/mismatch_abs_mean"] < 1e-4 and r["is/weight_mean"] == pytest.approx(1.0, abs=1e-4)
               for r in rows)


@pytest.mark.parametrize("extra,match", [
    (["rollout.is_correction=tis", "rollout.temperature=0.7"], "at T = 1"),
    (["rollout.is_correction=tis", "experiment=sft"], "ppo_clip loss of on-policy samples"),
    (["rollout.is_correction=yes"], "rollout.is_correction='yes'"),
    (["rollout.vllm.enforce_eager=maybe"], "vllm.enforce_eager='maybe'"),
])
def test_bad_is_settings_are_refused(micro_cfg, extra, match):
    from bench.algorithms.checks import check_algorithm

    with pytest.raises(ValueError, match=match):
        check_algorithm(micro_cfg(extra))
