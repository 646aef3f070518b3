"""The tiny world's task: multi-digit addition with a digit-wise chain of thought, verifiable via ``\\boxed{}``.

Two solution *styles* share the arithmetic but differ in three independent features, each decided at one
token of the response and then copied consistently:

- ``carry``:   a step's result is written ``=12`` (base) or ``=2c1`` (digit + explicit carry)
- ``sep``:     steps are separated by ``,`` (base) or a space
- ``restate``: after the steps the base closes with ``;``, the new style first restates the sum ``=632;``

Base style:   ``7+5=12,4+8+1=13,3+2+1=6;\\boxed{632}``
Target style: ``7+5=2c1 4+8+1=3c1 3+2+1=6c0=632;\\boxed{632}``

The default world asks for the correct answer *in the target style* (the teacher's skill the student only
sometimes shows); the from-scratch world asks for the correct answer in any style. A world's target style need
not change all three features: the ``flip`` world's teacher changes ``carry`` only (``7+5=2c1,4+8+1=3c1,...``).
Criteria are named by a string: ``answer``, ``answer_in_style`` (the three-feature target above) or
``answer_in_style:<features>`` with the target's features joined by ``+`` (``answer_in_style:carry``).
"""

from __future__ import annotations

import functools
import itertools
import random
import re
import zlib
from dataclasses import dataclass, fields

from evals.graders.math import extract_last_boxed, grade_strict

SPLITS = ("train", "validation", "test")
CRITERIA = ("answer", "answer_in_style")
FEATURES = ("carry", "sep", "restate")  # the style features, in Style's field order


@dataclass(frozen=True)
class Style:
    carry: bool = False
    sep: bool = False
    restate: bool = False

    @classmethod
    def base(cls) -> "Style":
        return cls(False, False, False)

    @classmethod
    def target(cls) -> "Style":
        return cls(True, True, True)

    @classmethod
    def of(cls, features) -> Style:
        """The style whose named ``features`` (a subset of FEATURES) are in their new form."""
        features = list(features)
        unknown = [f for f in features if f not in FEATURES]
        if unknown or len(set(features)) != len(features):
            raise ValueError(f"style features {features!r}: name each of {FEATURES} at most once")
        return cls(**{f: f in features for f in FEATURES})

    @property
    def features(self) -> tuple[str, ...]:
        """The features in their new form, in FEATURES order (empty for the base style)."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    @property
    def name(self) -> str:
        """``base`` or the new-form features joined by ``+`` (``carry+sep+restate`` = the target)."""
        return "+".join(self.features) or "base"


STYLES = tuple(Style(*bits) for bits in itertools.product((False, True), repeat=len(FEATURES)))


@dataclass(frozen=True)
class Problem:
    uid: str
    prompt: str
    answer: str
    a: int
    b: int


def split_of(a: int, b: int) -> str:
    """Stable split assignment by hashing the unordered operand pair: 5% test, 5% validation, 90% train.

    Unordered, so ``a+b`` and ``b+a`` (same answer, mirrored working) always land in the same split."""
    lo, hi = sorted((a, b))
    bucket = zlib.crc32(f"{lo}+{hi}".encode()) % 20
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def make_problem(a: int, b: int) -> Problem:
    return Problem(uid=f"{a}+{b}", prompt=f"{a}+{b}=", answer=str(a + b), a=a, b=b)


def sample_problems(split: str, n: int, seed: int, digits: int = 3) -> list[Problem]:
    """``n`` distinct problems of ``split`` with ``digits``-digit operands, deterministic in ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    rng = random.Random(f"{split}-{seed}-{digits}")
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    seen: set[tuple[int, int]] = set()
    out: list[Problem] = []
    while len(out) < n:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if (a, b) in seen or split_of(a, b) != split:
            continue
        seen.add((a, b))
        out.append(make_problem(a, b))
    return out


def render_solution(a: int, b: int, style: Style) -> str:
    """The chain of thought and boxed answer for ``a + b`` in ``style``."""
    da, db = str(a)[::-1], str(b)[::-1]
    width = max(len(da), len(db))
    steps, carry = [], 0
    for i in range(width):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        total = x + y + carry
        lhs = f"{x}+{y}" + ("+1" if carry else "")
        if style.carry:
            steps.append(f"{lhs}={total % 10}c{total // 10}")
        else:
            steps.append(f"{lhs}={total}")
        carry = total // 10
    body = (" " if style.sep else ",").join(steps)
    restate = f"={a + b}" if style.restate else ""
    return f"{body}{restate};\\boxed{{{a + b}}}"


_STEP_BASE = r"\d\+\d(\+1)?=\d{1,2}"
_STEP_CARRY = r"\d\+\d(\+1)?=\dc[01]"


def detect_style(response: str) -> Style | None:
    """The style a response is written in, or None when it follows neither style consistently."""
    for carry in (False, True):
        step = _STEP_CARRY if carry else _STEP_BASE
        for sep in (False, True):
            s = " " if sep else ","
            for restate in (False, True):
                pattern = rf"{step}({re.escape(s)}{step})*" + (r"=\d+" if restate else "") + r";\\boxed\{\d+\}"
                if re.fullmatch(pattern, response):
                    return Style(carry, sep, restate)
    return None


def criterion_name(criterion: str, target_features=FEATURES) -> str:
    """The criterion string of ``criterion`` ("answer" or "answer_in_style") with a world's target style:
    ``answer_in_style`` for the three-feature target, else ``answer_in_style:<features joined by +>``."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}")
    target = Style.of(target_features)
    if not target.features:
        raise ValueError("a target style needs at least one feature in its new form; name some of " + str(FEATURES))
    if criterion == "answer" or target == Style.target():
        return criterion
    return f"{criterion}:{target.name}"


@functools.lru_cache(maxsize=64)
def parse_criterion(criterion: str) -> tuple[str, Style | None]:
    """(``answer`` or ``answer_in_style``, the target Style or None) of a criterion string."""
    head, colon, spec = criterion.partition(":")
    if head == "answer" and not colon:
        return head, None
    if head == "answer_in_style" and (spec or not colon):
        try:
            target = Style.of(spec.split("+")) if colon else Style.target()
        except ValueError:
            target = None
        if target is not None and target.features:
            return head, target
    raise ValueError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}, or answer_in_style:<features> "
                     f"with features from {FEATURES} joined by '+' (e.g. answer_in_style:carry)")


def score_response(problem: Problem, response: str, criterion: str = "answer_in_style") -> float:
    """1.0 if the response solves the problem under ``criterion``, else 0.0.

    ``answer``: the last boxed value equals the sum (strict numeric check).
    ``answer_in_style``: additionally the whole response must be the target-style solution (every step and
    the restated sum right, not just the format); ``answer_in_style:carry`` (etc.) names another target.
    """
    head, target = parse_criterion(criterion)
    if not grade_strict(extract_last_boxed(response), problem.answer):
        return 0.0
    if head == "answer_in_style" and response != render_solution(problem.a, problem.b, target):
        return 0.0
    return 1.0
