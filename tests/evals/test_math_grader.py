"""Tests for evals.graders.math: box extraction, the strict numeric grader and the math-verify grader."""

from __future__ import annotations

import pytest

from evals.graders.math import GRADERS, extract_last_boxed, grade_math_verify, grade_response, grade_strict


# --------------------------------------------------------------------------------------------------------
# extract_last_boxed
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{28}.", "28"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{{a}{b{c}}}", "{a}{b{c}}"),
        ("\\boxed{1} then \\boxed{2}", "2"),  # last box wins
        ("\\fbox{7}", "7"),
        ("\\fbox{1} \\boxed{2}", "2"),
        ("\\boxed{2} \\fbox{3}", "3"),
        ("\\boxed{}", ""),
        ("\\boxed{12", None),  # unclosed
        ("\\boxed{1} and \\boxed{2", None),  # the last box is unclosed: no fallback to an earlier one
        ("the answer is 28", None),  # no box
        ("", None),
    ],
)
def test_extract_last_boxed(text, expected):
    assert extract_last_boxed(text) == expected


# --------------------------------------------------------------------------------------------------------
# grade_strict
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        ("28", "28", True),
        ("28", 28, True),  # gold may be an int
        ("28.0", "28", True),
        ("28.", "28", True),
        (" 28 ", "28", True),
        ("+28", "28", True),
        ("28+0", "28", False),  # expressions are not evaluated
        ("27", "28", False),
        ("-3", "-3", True),
        ("-3", "3", False),
        ("1,000", "1000", True),
        ("1,000", 1000, True),
        ("1000", "1,000", True),
        ("1,00", "100", False),  # not a thousands grouping
        (".5", "0.5", True),
        ("1e3", "1000", False),
        ("\\frac{1}{2}", "0.5", False),
        ("28 apples", "28", False),
        ("", "28", False),
        (None, "28", False),
    ],
)
def test_grade_strict(pred, gold, expected):
    assert grade_strict(pred, gold) is expected


# --------------------------------------------------------------------------------------------------------
# grade_math_verify
# --------------------------------------------------------------------------------------------------------
def test_grade_math_verify():
    assert grade_math_verify("\\frac{1}{2}", "0.5") is True
    assert grade_math_verify("28", "28") is True
    assert grade_math_verify("27", "28") is False
    assert grade_math_verify(None, "28") is False
    # math-verify *evaluates* the prediction, so "28+0" counts as 28. On an arithmetic task that is a
    # reward-hacking route (box the unevaluated question), which is why the tiny world grades in strict mode.
    assert grade_math_verify("28+0", "28") is True
    assert grade_strict("28+0", "28") is False


# --------------------------------------------------------------------------------------------------------
# grade_response
# --------------------------------------------------------------------------------------------------------
def test_grade_response_modes():
    assert sorted(GRADERS) == ["math_verify", "strict"]
    assert grade_response("so \\boxed{28}", "28") is True  # strict by default
    assert grade_response("so \\boxed{28+0}", "28") is False
    assert grade_response("so \\boxed{28+0}", "28", mode="math_verify") is True
    assert grade_response("no box: 28", "28", mode="math_verify") is False


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match=r"unknown grading mode 'sympy'.*\['math_verify', 'strict'\]"):
        grade_response("\\boxed{1}", "1", mode="sympy")
