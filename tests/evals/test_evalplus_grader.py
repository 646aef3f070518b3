"""HumanEval+ / MBPP+ grading through evalplus on a 3-task override of each dataset (taken from the shared data).

Skips when evalplus (``pip install --no-deps evalplus==0.3.1`` + the ``code`` extra) or the shared data is absent.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("evalplus.evaluate", reason="evalplus not installed (pip install --no-deps evalplus==0.3.1 "
                                                 "and the 'code' extra)")

from evals.graders.code import evalplus_grader as eg  # noqa: E402

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns sandboxes: not in make test-fast

N_TASKS = 3


def _read(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for _, line in zip(range(N_TASKS), f)]


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """A data dir holding the first 3 tasks of each dataset, and an empty cache dir (both in tmp)."""
    root = tmp_path_factory.mktemp("evalplus")
    (root / "code").mkdir()
    rows = {}
    for ds in eg.DATASETS:
        src = eg.dataset_path(ds)
        if not src.is_file():
            pytest.skip(f"shared data absent: {src} (set EFFOPD_DATA_DIR)")
        rows[ds] = _read(src)
        dst = eg.dataset_path(ds, root)
        opener = gzip.open if dst.suffix == ".gz" else open
        with opener(dst, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows[ds])
    return root, root / "cache", rows


def _samples(rows: list[dict]) -> list[dict]:
    canonical = [{"task_id": r["task_id"], "solution": r["prompt"] + r["canonical_solution"]} for r in rows]
    broken = [{"task_id": r["task_id"], "solution": f"def {r['entry_point']}(*args, **kwargs):\n    return '?'\n"}
              for r in rows]
    syntax = [{"task_id": rows[0]["task_id"], "completion": "    return (\n"}]  # completion form, prompt prepended
    return canonical + broken + syntax


@pytest.mark.parametrize("dataset", sorted(eg.DATASETS))
def test_canonical_pass_and_broken_fail(dataset, subset):
    data_root, cache, rows = subset
    home_cache = Path.home() / ".cache" / "evalplus"
    before = set(home_cache.iterdir()) if home_cache.is_dir() else set()
    res = eg.grade_evalplus(dataset, _samples(rows[dataset]), data_dir=data_root, cache_dir=cache, parallel=2)
    assert [g.task_id for g in res.grades] == [r["task_id"] for r in rows[dataset]] * 2 + [rows[dataset][0]["task_id"]]
    canonical, failing = res.grades[:N_TASKS], res.grades[N_TASKS:]
    assert all(g.passed and g.base_status == g.plus_status == "pass" for g in canonical), canonical
    assert not any(g.passed for g in failing) and all(g.base_status == "fail" for g in failing), failing
    assert [g.base_failed_input for g in failing] == [0, 0, 0, None]  # broken: first input; syntax: never loaded
    assert (res.base_pass, res.plus_pass) == (N_TASKS, N_TASKS)
    # metadata: evalplus's md5 of *our* file, the limits used; ground truth cached in our dir, nothing elsewhere
    meta = res.metadata
    assert meta["dataset_md5"] == hashlib.md5(eg.dataset_path(dataset, data_root).read_bytes()).hexdigest()
    assert (meta["min_time_limit"], meta["gt_time_limit_factor"], meta["n_tasks"]) == (1.0, 4.0, N_TASKS)
    assert (cache / f"{meta['dataset_md5']}.pkl").is_file()
    assert (set(home_cache.iterdir()) if home_cache.is_dir() else set()) == before


def test_base_only_and_evalplus_native_isolation(subset):
    data_root, cache, rows = subset
    all_samples = _samples(rows["humaneval"])
    samples = [all_samples[0], all_samples[N_TASKS]]  # canonical #0 and broken #0
    res = eg.grade_evalplus("humaneval", samples, data_dir=data_root, cache_dir=cache, base_only=True,
                            isolation="evalplus")
    assert [(g.passed, g.base_status, g.plus_status) for g in res.grades] == [(True, "pass", None),
                                                                             (False, "fail", None)]
    assert res.metadata["isolation"] == "evalplus"


def test_unknown_task_and_missing_data(subset, tmp_path):
    data_root, cache, _ = subset
    with pytest.raises(KeyError, match="HumanEval/163"):
        eg.grade_evalplus("humaneval", [{"task_id": "HumanEval/163", "solution": ""}], data_dir=data_root,
                          cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="EFFOPD_DATA_DIR"):
        eg.grade_evalplus("mbpp", [], data_dir=tmp_path, cache_dir=cache)
