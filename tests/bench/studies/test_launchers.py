"""A tiny study grid (two 4-step micro runs) trained end to end through the launchers: submitit's local executor
(the same path as SLURM, minus sbatch) and the default local processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.studies import cli
from bench.studies.framework import STUDIES, option, register_study
from bench.studies.jobs import train_job
from bench.studies.speedup import build_speedup_table, load_runs
from tests.conftest import MICRO_RUN, MICRO_WORLD

# train_job and the launchers set these themselves.
OWN = ("trainer.lr=", "logging.wandb=", "trainer.threads=", "logging.progress_bar=")


@pytest.fixture
def micro_study(micro_cache):
    """The study "micro": OPD on the micro tiny world, --seeds seeds, its speedup table as the result."""
    extra = (*MICRO_WORLD, f"world.cache_dir={micro_cache}", *(o for o in MICRO_RUN if not o.startswith(OWN)))

    def reproduce_micro(ctx):
        runs_dir = Path(ctx.args.runs_dir)
        ctx.run([train_job(runs_dir, "OPD", "opd", s, 1e-3, selection=True, extra=extra)
                 for s in range(ctx.args.seeds)])
        return build_speedup_table(load_runs(runs_dir), reference="OPD")

    register_study("micro", options=(option("--seeds", type=int, default=2), option("--runs-dir")))(reproduce_micro)
    yield
    STUDIES.pop("micro")


def assert_complete(runs_dir: Path, seeds: int) -> None:
    for s in range(seeds):
        folder = runs_dir / "OPD" / f"seed{s}"
        assert json.loads((folder / "summary.json").read_text())["status"] == "complete"
        for name in ("fingerprint.json", "train.log", "evals.jsonl", "metrics.jsonl", "config.yaml"):
            assert (folder / name).stat().st_size > 0, folder / name
        assert json.loads((folder / "fingerprint.json").read_text())["config"]["trainer.seed"] == s


@pytest.mark.slow
def test_submitit_local_executor_runs_a_study_grid(micro_study, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    argv = ["micro", "--runs-dir", str(runs_dir), "--launcher", "submitit", "--cluster", "local",
            "--submitit-folder", str(tmp_path / "submitit"), "--workers", "2", "--timeout-min", "10"]
    table = cli.main(argv)
    assert_complete(runs_dir, 2)
    assert table["rows"][0]["n_seeds"] == 2 and table["seeds"] == [0, 1]
    assert list((tmp_path / "submitit").glob("*/*_result.pkl"))  # the jobs went through submitit
    assert "[2/2]" in capsys.readouterr().out
    cli.main(argv)  # finished and fingerprinted: nothing is submitted again
    assert "[1/" not in capsys.readouterr().out


@pytest.mark.slow
def test_local_launcher_runs_a_study_grid(micro_study, tmp_path):
    runs_dir = tmp_path / "runs"
    table = cli.main(["micro", "--runs-dir", str(runs_dir), "--seeds", "1", "--workers", "1"])
    assert_complete(runs_dir, 1)
    assert table["rows"][0]["n_seeds"] == 1
