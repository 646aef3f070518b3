"""Maths answer grading: the last ``\\boxed{...}`` of a response against a gold answer.

Two modes:
- ``strict``: the boxed content must be a plain number (optionally signed / decimal) equal to the gold.
  math-verify *evaluates* expressions (``\\boxed{28+0}`` is "correct" for 28), which is a reward-hacking
  route on arithmetic tasks, so the tiny world grades strictly.
- ``math_verify``: ``math_verify.verify(parse(gold), parse(pred))`` with the gold wrapped in ``\\boxed{}``
  and passed first, as the paper's upstream evaluation does.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def extract_last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` with brace matching; None when absent or unclosed."""
    start = max(text.rfind(opener) for opener in _BOX_OPENERS)
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def _as_number(s: str) -> Fraction | None:
    s = s.strip().replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", s.strip()) else s.strip()
    if not _PLAIN_NUMBER.match(s):
        return None
    return Fraction(s)


def grade_strict(pred: str | None, gold: str) -> bool:
    """True iff ``pred`` is a plain number equal to ``gold`` (no expressions, no units)."""
    if pred is None:
        return False
    p, g = _as_number(pred), _as_number(str(gold))
    return p is not None and g is not None and p == g


def grade_math_verify(pred: str | None, gold: str) -> bool:
    """math-verify equivalence, gold first; the gold is wrapped in ``\\boxed{}`` before parsing."""
    if pred is None:
        return False
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}")
    pred_parsed = parse(f"\\boxed{{{pred}}}")
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed))


GRADERS = {"strict": grade_strict, "math_verify": grade_math_verify}


def grade_response(response: str, gold: str, mode: str = "strict") -> bool:
    """Grade a full response: extract its last box, then compare with ``mode``."""
    if mode not in GRADERS:
        raise ValueError(f"unknown grading mode {mode!r}; choose one of {sorted(GRADERS)}")
    return GRADERS[mode](extract_last_boxed(response), gold)
