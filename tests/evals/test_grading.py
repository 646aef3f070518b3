"""The runner's grader dispatch: maths through the pool, code through evalplus on sanitized responses."""

from __future__ import annotations

import importlib.util

import pytest

from evals.config import compose_eval_config
from evals.datasets import load_benchmark
from evals.datasets.loader import DEFAULT_DATA_DIR
from evals.generation import GeneratedSample
from evals.grading import Grader

needs_shared = pytest.mark.skipif(not (DEFAULT_DATA_DIR / "MANIFEST.md").exists(),
                                  reason=f"shared benchmark data not present at {DEFAULT_DATA_DIR}")


def sample(pid: str, response: str, finish: str = "stop") -> GeneratedSample:
    return GeneratedSample(pid, 0, response, 10, 20, finish, 0)


@needs_shared
def test_maths_grader_statuses_and_strict_override():
    ex = load_benchmark("aime24").examples[:1]  # gold 204
    cfg = compose_eval_config(["model=x", "benchmark=aime24", "grader_workers=1"])
    responses = ["so \\boxed{204}", "\\boxed{200+4}", "\\boxed{5}", "no box", "ran out \\boxed{204"]
    finishes = ["stop", "stop", "stop", "stop", "length"]
    with Grader(load_benchmark("aime24").benchmark, cfg) as g:
        got = g.grade(ex * 5, [sample(ex[0].id, r, f) for r, f in zip(responses, finishes)])
    assert [x.status for x in got] == ["correct", "correct", "wrong", "no_answer", "truncated"]
    strict = compose_eval_config(["model=x", "benchmark=aime24", "grader=strict", "grader_workers=0"])
    with Grader(load_benchmark("aime24").benchmark, strict) as g:
        assert g.grade(ex, [sample(ex[0].id, "\\boxed{200+4}")])[0].status == "wrong"  # not evaluated


def test_grader_rejects_a_mismatched_override():
    from evals.datasets import get_benchmark

    with pytest.raises(ValueError, match="grader='evalplus' for maths benchmark 'aime24'"):
        Grader(get_benchmark("aime24"), compose_eval_config(["model=x", "grader=evalplus"]))
    with pytest.raises(ValueError, match="does not apply to 'tinyworld'"):
        Grader(get_benchmark("tinyworld"), compose_eval_config(["model=x", "benchmark=tinyworld", "grader=strict"]))


@pytest.mark.slow
@needs_shared
@pytest.mark.skipif(importlib.util.find_spec("evalplus") is None, reason="evalplus not installed (make install-code)")
def test_code_responses_are_sanitized_then_graded(tmp_path):
    import gzip
    import json

    with gzip.open(DEFAULT_DATA_DIR / "code" / "HumanEvalPlus.jsonl.gz", "rt") as fh:
        row = json.loads(fh.readline())  # HumanEval/0
    (tmp_path / "code").mkdir()  # a one-task override keeps evalplus's ground-truth run short
    with gzip.open(tmp_path / "code" / "HumanEvalPlus.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(row) + "\n")
    ex = [e for e in load_benchmark("humanevalplus").examples if e.id == "HumanEval/0"][0]
    good, bad = ex.problem + row["canonical_solution"], ex.problem + "    return False\n"
    responses = [f"Here it is:\n```python\n{good}\n```\nDone.", f"```python\n{bad}\n```", "I cannot do that.",
                 "```python\ndef has_close_elements(numbers threshold):\n    pass\n```",  # a syntax error: graded
                 "```python\ndef has_close_elements(numbers, threshold):\n    for"]
    cfg = compose_eval_config(["model=x", "benchmark=humanevalplus", "grader_workers=2", f"data_dir={tmp_path}",
                               f"code_cache_dir={tmp_path / 'cache'}"])
    with Grader(load_benchmark("humanevalplus").benchmark, cfg) as g:
        finishes = ["stop", "stop", "stop", "stop", "length"]
        got = g.grade([ex] * 5, [sample(ex.id, r, f) for r, f in zip(responses, finishes)])
    assert [x.status for x in got] == ["correct", "wrong", "no_answer", "wrong", "truncated"]
    assert got[0].score == 1.0 and "def has_close_elements" in got[0].extracted
    assert "base=" in got[1].detail
    assert g.code_meta["dataset_md5"] and g.code_meta["min_time_limit"] == 1.0


def test_tiny_grader_uses_the_criterions_target_style():
    """``python -m evals.run benchmark=tinyworld criterion=answer_in_style:carry`` scores the flip world's target."""
    from evals.datasets import get_benchmark
    from evals.datasets.tinyworld_task import Style, render_solution
    from evals.grading import grader_info

    bench = get_benchmark("tinyworld")
    ex = load_benchmark("tinyworld", tiny_n=1).examples[0]
    a, b = ex.meta["a"], ex.meta["b"]
    texts = [render_solution(a, b, s) for s in (Style.of(["carry"]), Style.target(), Style.base())]
    for criterion, statuses, target in (("answer_in_style:carry", ["correct", "wrong", "wrong"], ["carry"]),
                                        ("answer_in_style", ["wrong", "correct", "wrong"],
                                         ["carry", "sep", "restate"]),
                                        ("answer", ["correct"] * 3, None)):
        cfg = compose_eval_config(["model=x", "benchmark=tinyworld", f"criterion={criterion}"])
        with Grader(bench, cfg) as g:
            assert [x.status for x in g.grade([ex] * 3, [sample(ex.id, t) for t in texts])] == statuses
            info = grader_info(g)
        assert info["criterion"] == criterion and info.get("target_style") == target
    with pytest.raises(ValueError, match="criterion='answer_in_style:bold'.*answer_in_style:carry"):
        Grader(bench, compose_eval_config(["model=x", "benchmark=tinyworld", "criterion=answer_in_style:bold"]))
