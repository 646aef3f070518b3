"""Tests for evals.graders.pool: order, parent-enforced deadlines, crash recovery, in-process mode.

One pool (two forkserver workers) is shared by the module to keep the file fast; tests that kill workers
check that the pool keeps working afterwards, which is the point.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from evals.graders.math import grade_math
from evals.graders.pool import GradeItem, GraderPool

TIMEOUT_S = 2.0


def item(answer: str, gold: str, mode: str = "math_verify", truncated: bool = False) -> GradeItem:
    return GradeItem(f"Some reasoning first. Then $\\boxed{{{answer}}}$.", gold, mode, truncated)


@pytest.fixture(scope="module")
def pool():
    with GraderPool(workers=2, timeout_s=TIMEOUT_S, batch_size=4) as p:
        yield p


def test_order_preserved_and_matches_in_process(pool):
    items = [item(str(i), str(i % 3)) for i in range(40)] + [
        item("\\frac{1}{2}", "0.5"), item("[1, 2)", "[1,2)"), item("x", "\\frac{sqrt{7} + 1}{2}"),
        GradeItem("no box here", "3"), item("3", "3", truncated=True), item("28+0", "28", "strict"),
    ]
    grades = pool.grade(items)
    assert [g.extracted for g in grades[:40]] == [str(i) for i in range(40)]
    assert grades == [grade_math(it.response, it.gold, it.mode, it.truncated) for it in items]
    assert [g.status for g in grades[40:]] == ["correct", "correct", "gold_unparseable", "no_answer", "truncated",
                                               "wrong"]


@pytest.mark.slow
def test_hang_costs_one_sample_within_the_deadline(pool):
    items = [item(str(i), str(i)) for i in range(12)]
    items[5] = item("5", "5", "_test_hang")  # sleeps an hour: only the parent's SIGKILL ends it
    respawns = pool.respawns
    t0 = time.monotonic()
    grades = pool.grade(items)
    elapsed = time.monotonic() - t0
    assert grades[5].status == "grader_timeout" and grades[5].extracted == "5"
    assert all(g.status == "correct" for i, g in enumerate(grades) if i != 5)  # the rest of its batch too
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 2.0
    assert pool.respawns == respawns + 1
    assert pool.grade([item("1", "1")])[0].status == "correct"  # the replacement worker works


def test_crash_costs_one_sample_and_the_pool_goes_on(pool):
    items = [item(str(i), str(i)) for i in range(10)]
    items[3] = item("3", "3", "_test_crash")  # os._exit(13) in the worker
    grades = pool.grade(items)
    assert grades[3].status == "grader_error" and "exit code 13" in grades[3].detail
    assert all(g.status == "correct" for i, g in enumerate(grades) if i != 3)
    assert [g.status for g in pool.grade([item("2", "2"), item("2", "3")])] == ["correct", "wrong"]


def test_exception_in_grader_is_an_error_not_a_dead_worker(pool):
    respawns = pool.respawns
    grades = pool.grade([item("1", "1"), item("1", "1", "_test_raise"), item("1", "1")])
    assert [g.status for g in grades] == ["correct", "grader_error", "correct"]
    assert "RuntimeError" in grades[1].detail and pool.respawns == respawns


@pytest.mark.slow
def test_huge_exponent_does_not_hang_the_pool(pool):
    # Ended by math-verify's in-worker SIGALRM (mv_timeout = timeout_s // 3 = 1 s here) or by the parent.
    t0 = time.monotonic()
    grades = pool.grade([item("2^{2^{100}}", "4"), item("4", "4")])
    assert grades[0].status == "grader_timeout" and grades[1].status == "correct"
    assert time.monotonic() - t0 < TIMEOUT_S + 2.0


@pytest.mark.slow
def test_two_hangs_on_both_workers(pool):
    items = [item("1", "1", "_test_hang"), item("2", "2"), item("3", "3", "_test_hang"), item("4", "4")]
    grades = pool.grade(items)
    assert [g.status for g in grades] == ["grader_timeout", "correct", "grader_timeout", "correct"]


def test_empty_and_bad_mode(pool):
    assert pool.grade([]) == []
    with pytest.raises(ValueError, match="unknown grading mode 'sympy'"):
        pool.grade([item("1", "1", "sympy")])


def test_in_process_mode_refuses_test_hooks():
    with GraderPool(workers=0) as p:
        assert p.grade([item("1/2", "0.5")])[0].status == "correct"
        with pytest.raises(ValueError, match="_test_hang"):
            p.grade([item("1", "1", "_test_hang")])


def test_fork_is_refused():
    with pytest.raises(ValueError, match="fork"):
        GraderPool(workers=1, start_method="fork")


def test_bench_math_smoke(tmp_path):
    import json

    from evals.graders import bench_math

    out = tmp_path / "perf" / "math_grader.json"
    bench_math.main(["--n", "40", "--workers", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["samples"] == 40 and sum(result["status_counts"].values()) == 40
    assert result["status_counts"]["correct"] > 0 and result["status_counts"]["wrong"] > 0
    assert {"samples_per_s", "target_met", "machine"} <= set(result) and result["machine"]["math_verify"]
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_workers_do_not_reimport_the_parent_main(tmp_path):
    # No `if __name__ == "__main__"` guard on purpose: a worker re-importing this script would build pools
    # recursively (and, for `python -m evals.run`, load torch into every worker).
    script = tmp_path / "no_guard.py"
    mark = tmp_path / "imported"
    script.write_text(
        "import sys\n"
        f"if __name__ != '__main__':\n    open({str(mark)!r}, 'a').write(__name__)\n"
        "from evals.graders.pool import GradeItem, GraderPool\n"
        "with GraderPool(workers=1, timeout_s=5) as p:\n"
        "    print(p.grade([GradeItem('\\\\boxed{1}', '1')])[0].status)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "correct" and not mark.exists()
