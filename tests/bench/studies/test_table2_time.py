"""bench/studies/perf/table2_time.py on a synthetic finished checkout: the stages add up to the total, each run's
phases and the rest add up to its wall-clock, the world builds come from the log, labels sit side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.studies.perf import table2_time

T0 = 1_800_000_000.0


def touch(path: Path, text: str, at: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (at, at))


def run(folder: Path, start: float, end: float, step_s: dict, eval_s: float) -> None:
    touch(folder / "config.yaml", "x: 1\n", start)
    rows = [{"step": s, **{f"time/{k}": v for k, v in step_s.items()}} for s in (1, 2)]
    touch(folder / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows), end)
    touch(folder / "evals.jsonl", "".join(json.dumps({"step": s, "eval_seconds": eval_s}) + "\n" for s in (0, 2)), end)
    touch(folder / "summary.json", "{}", end)


@pytest.fixture
def checkout(tmp_path):
    touch(tmp_path / ".venv" / ".installed-abc", "", T0 + 100)  # install: 100 s
    split = {"generate": 2.0, "score": 1.0, "update": 3.0, "validation": 0.5}
    run(tmp_path / "runs/table2/OPD/seed0", T0 + 400, T0 + 440, split, 1.0)  # world builds: 300 s
    run(tmp_path / "runs/table2/EffOPD/seed0", T0 + 405, T0 + 460, split, 2.0)
    return tmp_path


LOG = ("[build base] model-aaa (build 0): {\"greedy/answer\": 0.9} in 120s\n"
       "noise\n[build student] model-bbb (build 1): {} in 45s\n")


def test_stages_add_up_and_runs_split_into_phases(checkout):
    out = table2_time.split(checkout, T0, T0 + 470, LOG)
    assert out["stages"] == {"install": 100.0, "world_builds": 300.0, "runs": 60.0, "render": 10.0}
    assert sum(out["stages"].values()) == out["total_seconds"] == 470.0
    opd = out["runs"]["per_run"]["OPD/seed0"]
    assert opd["wall"] == 40 and opd["generate"] == 4.0 and opd["eval"] == 2.0
    assert opd["other"] == pytest.approx(40 - (4 + 2 + 6 + 1) - 2)
    assert out["runs"]["summed_seconds"]["wall"] == 95.0 and out["runs"]["steps"] == 4
    assert out["world_builds"]["train_seconds"] == 165
    assert [(b["role"], b["build"]) for b in out["world_builds"]["models"]] == [("base", 0), ("student", 1)]


def test_labels_sit_side_by_side(checkout, tmp_path):
    log, dest = tmp_path / "make.log", tmp_path / "perf" / "table2_time.json"
    log.write_text(LOG)
    args = ["--checkout", str(checkout), "--start", str(T0), "--end", str(T0 + 470), "--log", str(log), "--out",
            str(dest)]
    table2_time.main([*args, "--label", "before"])
    table2_time.main([*args, "--label", "after"])
    saved = json.loads(dest.read_text())
    assert set(saved) == {"before", "after"} and saved["after"]["stages"]["runs"] == 60.0


def test_a_checkout_without_the_install_stamp_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\.venv/\.installed-\* is missing"):
        table2_time.split(tmp_path, T0, T0 + 1, "")
