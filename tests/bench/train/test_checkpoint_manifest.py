"""Checkpoint manifests (issue 15 point 2): a corrupted, truncated or missing checkpoint file stops a resume with one
error naming the file and both ways on; ``trainer.resume=fallback`` resumes from the newest good checkpoint, and the
result is the uninterrupted run's, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from bench.train import train
from bench.train.checkpoint import MANIFEST, CheckpointError, verify_checkpoint
from core.paths import REPO_ROOT
from tests.bench.train.test_train import launch

SAVE = ["trainer.save_every=1", "trainer.total_steps=3", "trainer.straightness=false"]


@pytest.fixture
def saved(micro_cfg, tmp_path):
    """A 3-step run checkpointed at every step (the last two kept: step_000002 and step_000003)."""
    out = tmp_path / "run"
    train(micro_cfg(SAVE, out=out))
    return out


def shard(ckpt):
    return max(ckpt.glob("*.distcp"), key=lambda p: p.stat().st_size)  # the model and optimizer tensors


def flip_bytes(path, count=64):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + count] = bytes(b ^ 0xFF for b in data[mid:mid + count])
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_every_checkpoint_file_is_in_the_manifest(saved):
    ckpt = saved / "checkpoints" / "step_000003"
    files = json.loads((ckpt / MANIFEST).read_text())["files"]
    assert set(files) == {p.name for p in ckpt.iterdir() if p.name != MANIFEST}
    assert {"trainer_state.pt", "rng_rank0.pt", ".metadata"} <= set(files)
    verify_checkpoint(ckpt)


@pytest.mark.slow
@pytest.mark.parametrize("damage,match", [
    (lambda c: flip_bytes(shard(c)), r"__0_0\.distcp does not match its sha256"),
    (lambda c: (c / "rng_rank0.pt").unlink(), r"rng_rank0\.pt is missing"),
    (lambda c: os.truncate(shard(c), shard(c).stat().st_size // 2), r"__0_0\.distcp has \d+ bytes, its manifest says"),
], ids=["flipped", "deleted_rng", "truncated"])
def test_a_damaged_checkpoint_stops_the_resume_naming_the_file_and_both_ways_on(micro_cfg, saved, damage, match):
    damage(saved / "checkpoints" / "step_000003")
    with pytest.raises(CheckpointError, match=match + r".*Restore the file, or resume from the newest checkpoint "
                                                      r"that passes its check with trainer\.resume=fallback "
                                                      r"\(here: step_000002\)"):
        train(micro_cfg([*SAVE, "trainer.resume=auto"], out=saved))


@pytest.mark.slow
def test_fallback_resumes_from_the_newest_good_checkpoint_bit_exact(micro_cfg, saved, tmp_path, capsys):
    straight = load_file(str(saved / "final_model" / "model.safetensors"))
    flip_bytes(shard(saved / "checkpoints" / "step_000003"))
    capsys.readouterr()
    train(micro_cfg([*SAVE, "trainer.resume=fallback"], out=saved))
    assert "trainer.resume=fallback: skipping step_000003" in capsys.readouterr().err
    again = load_file(str(saved / "final_model" / "model.safetensors"))
    for k in straight:  # steps 3 redone from step 2's checkpoint: the same weights as the first time
        assert torch.equal(straight[k], again[k]), k
    verify_checkpoint(saved / "checkpoints" / "step_000003")  # rewritten, with a fresh manifest


@pytest.mark.slow
def test_the_cli_says_it_in_one_line(micro_cache, saved):
    (saved / "checkpoints" / "step_000003" / "rng_rank0.pt").unlink()
    done = subprocess.run(launch(micro_cache, saved, *SAVE, "trainer.resume=auto"), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rng_rank0.pt is missing" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
