"""Data-parallel training on CPU: two torchrun processes (gloo, FSDP2) against one process on the same global
batch, and a two-process DCP checkpoint resumed on one process.

``trainer.dist_rollouts=replicate`` makes both runs sample the same rollouts (every rank samples the whole
batch with the shared RNG and keeps its slice), so any difference comes from sharding, the gradient sum over
ranks and the global loss normalisation: it must stay below 1e-5.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench import distributed
from bench.config import compose_config
from bench.train import train
from core.io import read_jsonl
from core.paths import REPO_ROOT as REPO
from tests.conftest import MICRO_RUN, MICRO_WORLD

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns processes: not in make test-fast

TOL = 1e-5
SAME_BATCH = ["trainer.dist_rollouts=replicate", "trainer.save_every=2", "trainer.eval_every=100"]
RUNS = {
    "opd": ["experiment=opd"],
    # Every validation score on the micro world is 0: with `ge` each trigger accepts both candidates, so the
    # extrapolation really moves the sharded parameters (with the default `gt` it would roll back at once).
    "effopd": ["experiment=effopd", "effopd.accept=ge", "effopd.max_tries=2"],
}


def torchrun(overrides: list[str], out: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bench.train", *overrides, f"hydra.run.dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr and _complete(out):
        # A rank aborted in C++ teardown after the run had finished and written everything (seen once in ~20
        # runs, only under a loaded full suite; docs/known-limits.md): run it once more from scratch. Any other
        # failure, or the same abort twice, fails the test.
        shutil.rmtree(out)
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


TEARDOWN_ABORT = "terminate called without an active exception"


def _complete(out: Path) -> bool:
    summary = out / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("status") == "complete"


@pytest.fixture(scope="module")
def base(micro_cache) -> list[str]:
    return ["world=style", *MICRO_WORLD, f"world.cache_dir={micro_cache}", *MICRO_RUN, *SAME_BATCH]


@pytest.fixture(scope="module")
def paired(base, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """run name -> (one-process run folder, two-process run folder)."""
    root = tmp_path_factory.mktemp("distributed")
    out = {}
    for name, extra in RUNS.items():
        one, two = root / f"{name}-1proc", root / f"{name}-2proc"
        train(compose_config([*base, *extra, f"trainer.output_dir={one}"]))
        torchrun([*base, *extra], two)
        out[name] = (one, two)
    return out


def max_param_diff(a: Path, b: Path) -> float:
    wa, wb = (load_file(str(p / "final_model" / "model.safetensors")) for p in (a, b))
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_match_one_process(paired, name):
    one, two = paired[name]
    m1, m2 = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
    assert [m["step"] for m in m2] == [1, 2, 3, 4]
    assert [m["generated_tokens"] for m in m1] == [m["generated_tokens"] for m in m2]  # the same samples
    for key in ("loss", "grad_norm", "reverse_kl", "adv_mean", "clip_frac", "reward_mean", "response_length"):
        assert max(abs(a[key] - b[key]) for a, b in zip(m1, m2)) <= TOL, key
    assert max_param_diff(one, two) <= TOL
    e1, e2 = read_jsonl(one / "effopd.jsonl"), read_jsonl(two / "effopd.jsonl")
    assert [e["step"] for e in e2] == [1, 2, 4]
    for a, b in zip(e1, e2):
        assert a.get("accepted_multiplier") == b.get("accepted_multiplier")
        assert a.get("candidates") == b.get("candidates") and a.get("tokens") == b.get("tokens")
        assert a["delta_norm"] == pytest.approx(b["delta_norm"], rel=1e-4)
    if name == "effopd":
        assert [e["accepted_multiplier"] for e in e2] == [4.0, 4.0, 4.0]
    # Rank 0 alone writes the logs: one line per step and per eval.
    assert [e["step"] for e in read_jsonl(two / "evals.jsonl")] == [0, 4]


def test_checkpoint_is_sharded_and_atomic(paired):
    ckpts = paired["effopd"][1] / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_000004"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_000002", "step_000004"]  # no temp folder
    files = {p.name for p in (ckpts / "step_000004").iterdir()}
    assert {".metadata", "__0_0.distcp", "__1_0.distcp", "trainer_state.pt", "rng_rank0.pt", "rng_rank1.pt"} <= files


def test_two_process_checkpoint_resumes_on_one_process(paired, base, tmp_path):
    one, two = paired["effopd"]
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_000004")
    shutil.rmtree(resumed / "final_model")
    (resumed / "checkpoints" / "latest").write_text("step_000002\n")
    train(compose_config([*base, *RUNS["effopd"], "trainer.resume=auto", f"trainer.output_dir={resumed}"]))
    assert max_param_diff(one, resumed) <= TOL
    m1, mr = read_jsonl(one / "metrics.jsonl"), read_jsonl(resumed / "metrics.jsonl")
    assert [m["step"] for m in mr] == [1, 2, 3, 4]
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(m1[2:], mr[2:])) <= TOL
    assert [e["accepted_multiplier"] for e in read_jsonl(resumed / "effopd.jsonl")] == [4.0, 4.0, 4.0]


# --- without torchrun -----------------------------------------------------------------------------------------
def test_single_process_helpers_are_the_identity():
    t = torch.arange(3.0)
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.sum_over_ranks(2, 0.5) == (2, 0.5)
    assert distributed.gather_rows(t) is t and distributed.all_reduce_(t)[0] is t
    assert distributed.broadcast({"a": 1}) == {"a": 1}
    assert distributed.share(10) == slice(0, 10) and distributed.local(t) is t


def test_distributed_config_errors_name_the_key(base):
    cfg = compose_config(base)
    distributed.check_config(cfg, world=2)  # the micro run itself is fine on two ranks
    for overrides, key in ((["trainer.prompts_per_step=7"], "trainer.prompts_per_step"),
                           (["experiment=dapo", "rollout.n=2"], "algorithm.dynamic_sampling"),
                           (["trainer.dist_rollouts=sometimes"], "trainer.dist_rollouts"),
                           (["trainer.dist_param_dtype=fp8"], "trainer.dist_param_dtype")):
        with pytest.raises(ValueError, match=key):
            distributed.check_config(compose_config([*base, *overrides]), world=2)


@pytest.mark.parametrize("keys,ok", [([], False), (["trainer.output_dir"], True), (["hydra.run.dir"], True)])
def test_torchrun_needs_one_named_run_folder(monkeypatch, tmp_path, keys, ok):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from core.paths import EXPERIMENTS_DIR

    overrides = [f"{key}={tmp_path / 'run'}" for key in keys]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with initialize_config_dir(config_dir=str(EXPERIMENTS_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # restored after the test
    HydraConfig.instance().set_config(cfg)
    if ok:
        distributed.check_hydra_launch(cfg)
    else:
        with pytest.raises(ValueError, match="hydra.run.dir"):
            distributed.check_hydra_launch(cfg)
