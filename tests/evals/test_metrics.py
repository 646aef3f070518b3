"""Tests for evals.metrics against hand-computed values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from evals.metrics import avg_at_k, maj_at_k, majority_vote, mean_se, pass_at_k, pass_at_k_mean, pass_ks, summarize


# --------------------------------------------------------------------------------------------------------
# pass@k for one problem
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (4, 2, 1, 0.5),
        (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2) = 5/6
        (4, 2, 3, 1.0),  # n - c < k: every 3-subset holds a correct sample
        (4, 2, 4, 1.0),
        (4, 0, 1, 0.0),
        (4, 0, 4, 0.0),
        (4, 4, 1, 1.0),
        (10, 3, 1, 0.3),
        (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),  # 11/12
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not need it.
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    assert 0.0 < pass_at_k(1000, 1, 1) == pytest.approx(0.001)


@pytest.mark.parametrize("n,c,k", [(4, 2, 5), (4, 2, 0), (4, 5, 1), (4, -1, 1)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_ks():
    assert pass_ks(1) == [1]
    assert pass_ks(8) == [1, 2, 4, 8]
    assert pass_ks(6) == [1, 2, 4, 6]


# --------------------------------------------------------------------------------------------------------
# means over problems and standard errors
# --------------------------------------------------------------------------------------------------------
def test_mean_se():
    m, se = mean_se([1.0, 0.0, 1.0, 0.0])
    assert m == 0.5
    assert se == pytest.approx(math.sqrt(1 / 3) / 2)  # sample sd sqrt(1/3), over sqrt(4)
    assert mean_se([0.7])[0] == 0.7 and math.isnan(mean_se([0.7])[1])
    assert mean_se([1.0, 1.0]) == (1.0, 0.0)


def test_avg_and_pass_over_problems():
    scores = [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
    avg, avg_se = avg_at_k(scores, 4)
    assert avg == pytest.approx(0.5)
    assert avg_se == pytest.approx(0.5 / math.sqrt(3))  # per-problem 0.5, 0, 1: sd 0.5
    p2, _ = pass_at_k_mean(scores, 2)
    assert p2 == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert pass_at_k_mean(scores, 1)[0] == pytest.approx(0.5)  # pass@1 == avg
    with pytest.raises(ValueError, match="problem 1 has 2 samples, fewer than k=4"):
        avg_at_k([[1, 0, 1, 1], [1, 0]], 4)


# --------------------------------------------------------------------------------------------------------
# majority vote
# --------------------------------------------------------------------------------------------------------
def test_majority_vote_basic_and_canonical_grouping():
    assert majority_vote(["3", "4", "3"], [1, 0, 1]) == ("3", 1.0)
    assert majority_vote(["4", "3", "3"], [0, 1, 1]) == ("3", 1.0)
    # \dfrac and \frac group together, and so do "[1, 2)" and "[1,2)"; 0.5 is another group (textual grouping)
    assert majority_vote(["0.5", "\\dfrac{1}{2}", "\\frac{1}{2}"], [1, 1, 1]) == ("\\frac{1}{2}", 1.0)
    assert majority_vote(["[1, 2)", "(1,2)", "[1,2)"], [1, 0, 1]) == ("[1,2)", 1.0)


def test_majority_vote_ties_and_abstentions():
    assert majority_vote(["4", "3", "3", "4"], [0, 1, 1, 0]) == ("4", 0.0)  # 2-2 tie: first seen wins
    assert majority_vote(["3", "4", "4", "3"], [1, 0, 0, 1]) == ("3", 1.0)
    assert majority_vote([None, None, "5", ""], [0, 0, 1, 0]) == ("5", 1.0)  # None / empty abstain
    assert majority_vote([None, None], [0, 0]) == (None, 0.0)


def test_maj_at_k_uses_the_first_k_samples():
    answers = [["1", "2", "2", "1", "1"], ["7", "7", None, "8", "8"]]
    scores = [[1, 0, 0, 1, 1], [0, 0, 0, 1, 1]]
    assert maj_at_k(answers, scores, 3)[0] == pytest.approx(0.0)  # "2" wins 2-1; "7" wins 2-0
    assert maj_at_k(answers, scores, 5)[0] == pytest.approx(0.5)  # "1" wins 3-2; "7" vs "8" 2-2 -> "7"


# --------------------------------------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------------------------------------
@dataclass
class Rec:
    problem_id: str
    sample_index: int
    score: float
    extracted: str | None
    status: str


def _records():
    return [
        # p1: 2 of 4 correct; majority "5" (wrong) 2-2 tie vs "6" broken by first occurrence (sample 0)
        Rec("p1", 0, 0.0, "5", "wrong"), Rec("p1", 1, 1.0, "6", "correct"),
        Rec("p1", 3, 1.0, "6", "correct"), Rec("p1", 2, 0.0, "5", "wrong"),
        # p2: all correct
        *[Rec("p2", i, 1.0, "\\frac{1}{2}", "correct") for i in range(4)],
        # p3: none correct; a truncated sample with a box does not vote, a no_answer neither
        Rec("p3", 0, 0.0, "9", "truncated"), Rec("p3", 1, 0.0, None, "no_answer"),
        Rec("p3", 2, 0.0, "8", "wrong"), Rec("p3", 3, 0.0, "7", "grader_timeout"),
        # p4: defective gold -- flagged and excluded
        *[Rec("p4", i, 0.0, "1", "gold_unparseable") for i in range(4)],
    ]


def test_summarize():
    out = summarize(_records(), k=4)
    assert out["n_problems"] == 3 and out["n_problems_total"] == 4 and out["n_samples"] == 16
    assert out["flagged_problems"] == ["p4"]
    assert out["avg@4"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert out["avg@4_se"] == pytest.approx(0.5 / math.sqrt(3))
    assert out["pass@1"] == pytest.approx(0.5)
    assert out["pass@2"] == pytest.approx((5 / 6 + 1 + 0) / 3)
    assert out["pass@4"] == pytest.approx(2 / 3)
    assert out["pass@4_se"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
    assert out["maj@4"] == pytest.approx(1 / 3)  # p1 -> "5" (tie, first seen), p2 -> right, p3 -> "8" wrong
    assert out["status_counts"] == {"correct": 6, "wrong": 3, "no_answer": 1, "truncated": 1,
                                    "grader_timeout": 1, "grader_error": 0, "gold_unparseable": 4}
    assert set(out) >= {"pass@1_se", "pass@2_se", "maj@4_se"}


def test_summarize_with_flagged_problems_included_and_mappings():
    recs = [vars(r) for r in _records()]  # plain dicts work too
    out = summarize(recs, k=4, exclude_flagged=False)
    assert out["n_problems"] == 4 and out["flagged_problems"] == ["p4"]
    assert out["avg@4"] == pytest.approx(1.5 / 4)


def test_summarize_names_the_short_problem():
    recs = [r for r in _records() if not (r.problem_id == "p2" and r.sample_index == 3)]
    with pytest.raises(ValueError, match="problem 'p2' has 3 samples, fewer than k=4"):
        summarize(recs, k=4)
    assert summarize(recs, k=2)["pass@2"] == pytest.approx((5 / 6 + 1 + 0) / 3)  # more than k samples is fine


def test_summarize_rejects_duplicate_samples():
    with pytest.raises(ValueError, match="duplicate"):
        summarize(_records() + [Rec("p1", 0, 0.0, "5", "wrong")], k=4)


def test_summarize_single_problem_has_no_error_bar():
    out = summarize([Rec("p", i, float(i % 2), str(i % 2), "correct" if i % 2 else "wrong") for i in range(4)], k=4)
    assert out["avg@4"] == 0.5 and out["avg@4_se"] is None and out["pass@4_se"] is None
