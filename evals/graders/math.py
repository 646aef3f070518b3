"""Maths answer grading: the last ``\\boxed{...}`` of a response against a gold answer, with a per-sample status.

Two modes:
- ``strict``: the boxed content must be a plain number (optionally signed / decimal) equal to the gold.
  math-verify *evaluates* expressions (``\\boxed{28+0}`` is "correct" for 28), which is a reward-hacking
  route on arithmetic tasks, so the tiny world grades strictly.
- ``math_verify``: ``math_verify.verify(parse(gold), parse(pred))`` with the gold wrapped in ``\\boxed{}``
  and passed first, as the paper's upstream evaluation does. Only the short extracted answer is parsed,
  never the whole response (parsing a 2 KB response is ~10x slower and can pick up stray formulas).

``grade_math`` returns a :class:`MathGrade` whose ``status`` is one of :data:`STATUSES`:

- ``gold_unparseable``: the gold itself is defective (see :func:`check_gold`); score 0 whatever the model
  said, so reports can flag and exclude the problem instead of silently scoring it. Checked first.
- ``truncated``: generation hit the token limit. Score 0 *even when a box is present*: the answer was not
  finished (a box written mid-derivation is not a final answer), but ``extracted`` keeps it for analysis.
- ``no_answer``: no (or an empty) final box.
- ``correct`` / ``wrong``.
- ``grader_timeout``: math-verify's own SIGALRM timeout fired, or (in :mod:`evals.graders.pool`) the parent
  killed the worker at its deadline. ``grader_error``: the pool's worker crashed or raised.

Normalisation applied to gold and prediction in ``math_verify`` mode, because math-verify 0.9.0 gets these
wrong natively (checked by hand and pinned in the tests):

- scientific e-notation: ``4.5e33`` parses as ``4.5*E*33`` (Euler's e!), so it never matches
  ``4.5 \\times 10^{33}``. We rewrite ``<mantissa>e<exp>`` to ``<mantissa>\\times 10^{<exp>}``.
- trailing percent: ``\\boxed{50\\%}`` does not parse at all (only a string fallback), so ``50\\%`` vs ``50``
  would be wrong. We drop a trailing ``\\%`` / ``%``, which is math-verify's own intent (it compares ``9%``
  equal to ``9``); ``50\\%`` vs ``0.5`` is therefore *wrong*.
- trailing-dot decimals (Minerva's ``-1./3``): unparseable as is; we drop the dot.

Shortcuts, because math-verify's LaTeX parser (ANTLR) costs ~5-10 ms per answer and ~50 ms per interval or
tuple; each gives exactly math-verify's verdict (pinned against it in the tests), only faster:

- both sides integers / integer fractions (``28``, ``\\frac{3}{7}``, ``3/7``): exact rational equality, which
  is what math-verify does for two sympy Rationals; likewise two intervals with rational ends and lo < hi.
- the same :func:`canonical_answer` on both sides: equal (math-verify agrees on each of the ~1,600 parseable
  golds of the eight maths datasets in shared/data, against its canonical form).
- a gold that is a plain number or such an interval is known to parse, so :func:`check_gold` skips parsing it.

Parsed answers and verdicts are cached per process (``lru_cache``): the k samples of a problem share a gold
and often an answer.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from functools import lru_cache

_BOX_OPENERS = ("\\boxed{", "\\fbox{")
# Numbers are ASCII: [0-9], never \d, which (like int() and Decimal()) also accepts full-width "１２", Arabic-Indic
# "١٢", mathematical-bold "𝟏𝟐" and every other Unicode digit. Strict mode must not read those as numbers, and
# math-verify does not either (they only ever match as strings), so the exact shortcuts must not.
_PLAIN_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
_GROUPED_NUMBER = re.compile(r"[+-]?[0-9]{1,3}(,[0-9]{3})+")

CORRECT, WRONG, NO_ANSWER, TRUNCATED = "correct", "wrong", "no_answer", "truncated"
GRADER_TIMEOUT, GRADER_ERROR, GOLD_UNPARSEABLE = "grader_timeout", "grader_error", "gold_unparseable"
STATUSES = (CORRECT, WRONG, NO_ANSWER, TRUNCATED, GRADER_TIMEOUT, GRADER_ERROR, GOLD_UNPARSEABLE)


@dataclass(frozen=True)
class MathGrade:
    """One graded sample. ``score`` is 1.0 only for ``correct``; ``extracted`` is the last box (or None)."""

    status: str
    score: float
    extracted: str | None
    detail: str = ""


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


def _as_number(s: str) -> Decimal | None:
    """The exact value of a plain ASCII number (``-12``, ``.5``, ``28.``, ``1,000``), else None.

    A Decimal, not a Fraction: Fraction(str) goes through int(), whose 4,300-digit limit
    (``sys.get_int_max_str_digits``) turned a long boxed integer into a grader_error; Decimal has no such limit
    and its equality is exact.
    """
    s = s.strip()
    if _GROUPED_NUMBER.fullmatch(s):
        s = s.replace(",", "")
    return Decimal(s) if _PLAIN_NUMBER.match(s) else None


def grade_strict(pred: str | None, gold: str) -> bool:
    """True iff ``pred`` is a plain number equal to ``gold`` (no expressions, no units)."""
    if pred is None:
        return False
    p, g = _as_number(pred), _as_number(str(gold))
    return p is not None and g is not None and p == g


# ----------------------------------------------------------------------------------------------------------
# normalisation and gold checks
# ----------------------------------------------------------------------------------------------------------
_SCI = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\w.])")
_LATEX_SPACES = frozenset(("\\,", "\\;", "\\!", "\\ "))
_TRAILING_DOT = re.compile(r"(?<=\d)\.(?=\s*(?:[/,)\]}]|$))")
# A LaTeX command that takes a brace/bracket argument, written without its backslash: ``sqrt{7}`` is read by
# math-verify as the product s*q*r*t*7, silently giving a wrong gold value (HMMT25-Nov problem 20).
_BARE_COMMAND = re.compile(r"(?<![\\A-Za-z])(d?frac|tfrac|sqrt|binom|text|textbf|mathrm|mathbf|boxed)\s*[{\[]")
_RATIONAL = re.compile(r"^([+-]?)(?:([0-9]+)|\\[dt]?frac\{([0-9]+)\}\{([0-9]+)\}|([0-9]+)/([0-9]+))$")
_SIMPLE_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(\\times 10\^\{[+-]?[0-9]+\})?$")
_PAIR = re.compile(r"^([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])$")


def _strip_trailing_percent(s: str) -> str:
    """Drop a trailing ``%`` / ``\\%`` with the spaces and LaTeX spaces (``\\,`` ``\\;`` ``\\!`` ``\\ ``) before it.

    One scan back from the end, so linear. It gives exactly what ``re.sub(r"(?:\\\\[,;! ]|\\s)*\\\\?%\\s*$", "", s)``
    gave, but that regex was retried from every position of a space run and backtracked over the rest of it
    each time: quadratic, minutes for an answer with a 100k-space run.
    """
    t = s.rstrip()
    if not t.endswith("%"):
        return s
    end = len(t) - 1
    if t[end - 1 : end] == "\\":
        end -= 1
    while end:
        # A space after a backslash is the LaTeX space ``\\ ``: taking both keeps the scan going further back
        # (a lone backslash ends it), which is the regex's leftmost match.
        if t[max(end - 2, 0) : end] in _LATEX_SPACES:
            end -= 2
        elif t[end - 1].isspace():  # what the regex's \s matches
            end -= 1
        else:
            break
    return t[:end]


def normalize_latex(s: str) -> str:
    """Rewrite the notations math-verify 0.9.0 mis-parses (see the module docstring); idempotent."""
    s = s.strip()
    if len(s) > 1 and s[0] == s[-1] == "$" and "$" not in s[1:-1]:
        s = s[1:-1].strip()  # OlympiadBench-style ``$...$`` golds
    s = _TRAILING_DOT.sub("", _strip_trailing_percent(s))
    return _SCI.sub(lambda m: f"{m.group(1)}\\times 10^{{{m.group(2)}}}", s)


_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
# Not braces: math-verify reads \text {red} and \text{red} differently (found on a Minerva gold), and the
# shortcut below must never change a result.
_SPACED_OPERATORS = frozenset(",()[]=+-")
_SPACE_RUN = re.compile(r"\s+")


def _drop_spaces_around_operators(s: str) -> str:
    """Delete each whitespace run that touches one of ``,()[]=+-``.

    The same result as ``re.sub(r"\\s*([,()\\[\\]=+\\-])\\s*", r"\\1", s)``, which retried a space run from each
    of its positions (quadratic); ``\\s+`` takes a whole run at its first position and never backtracks.
    """

    def replace(m: re.Match) -> str:
        before, after = s[m.start() - 1 : m.start()], s[m.end() : m.end() + 1]
        return "" if before in _SPACED_OPERATORS or after in _SPACED_OPERATORS else m.group()

    return _SPACE_RUN.sub(replace, s)


def canonical_answer(s: str) -> str:
    """A whitespace/markup-insensitive form of an answer, for exact-match shortcuts and majority voting.

    Only rewrites that change neither the maths nor math-verify's reading of it: ``\\left``/``\\right``,
    ``\\dfrac``/``\\tfrac`` vs ``\\frac``, spaces next to brackets, commas, ``=`` and signs (not between letters,
    where ``\\pi r`` needs its space), plus :func:`normalize_latex`.
    """
    s = normalize_latex(s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _drop_spaces_around_operators(_LEFT_RIGHT.sub("", s)).strip()


def _braces_balanced(s: str) -> bool:
    depth = 0
    for ch in s.replace("\\{", "").replace("\\}", ""):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def _structural_defect(gold: str) -> str | None:
    if not gold.strip():
        return "empty gold"
    if not _braces_balanced(gold):
        return "unbalanced braces"
    m = _BARE_COMMAND.search(gold)
    if m:
        return f"LaTeX command without backslash: {m.group(0)!r} (math-verify reads it as a product of letters)"
    return None


def _mv_timeout(mv_timeout: int | None) -> int | None:
    # math-verify's timeouts use SIGALRM, which only works in the main thread; elsewhere run without them
    # (the caller, e.g. GraderPool, must bound the time itself).
    if mv_timeout and threading.current_thread() is not threading.main_thread():
        return None
    return mv_timeout or None


@lru_cache(maxsize=16384)
def _parse(latex: str, timeout: int | None) -> tuple:
    """math-verify parse of ``\\boxed{latex}``; raises TimeoutException (uncached) when it times out."""
    from math_verify import parse

    return tuple(parse(f"\\boxed{{{latex}}}", parsing_timeout=timeout, raise_on_error=True))


def _has_expr(parsed: tuple) -> bool:
    return any(not isinstance(x, str) for x in parsed)  # parse() appends the raw string as a fallback


@lru_cache(maxsize=4096)
def _gold_defect(gold: str, mode: str, timeout: int | None) -> str | None:
    if mode == "strict":
        return None if _as_number(gold) is not None else "not a plain number (strict mode)"
    defect = _structural_defect(gold)
    if defect:
        return defect
    canonical = canonical_answer(gold)
    if _SIMPLE_NUMBER.match(canonical) or _exact_value(canonical) is not None:
        return None  # numbers, fractions and simple intervals always parse; skip the slow LaTeX parser
    if not _has_expr(_parse(normalize_latex(gold), timeout)):
        return "math-verify cannot parse it"
    return None


def check_gold(gold: str, mode: str = "math_verify", mv_timeout: int | None = 5) -> str | None:
    """Why ``gold`` cannot be graded reliably (a benchmark defect), or None when it is fine.

    Flags unbalanced braces, LaTeX commands missing their backslash (``\\frac{sqrt{7} + 1}{2}``) and golds
    math-verify cannot parse into an expression (Python code such as ``np.arcsin(10/13)``). Meant for dataset
    loaders to flag defects up front; ``grade_math`` applies the same check to every sample.
    """
    from math_verify.errors import TimeoutException

    try:
        return _gold_defect(str(gold), mode, _mv_timeout(mv_timeout))
    except TimeoutException:
        return "math-verify timed out parsing it"


# ----------------------------------------------------------------------------------------------------------
# comparison
# ----------------------------------------------------------------------------------------------------------
# Products of integers are exact in this context (no result reaches MAX_PREC digits).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


@dataclass(frozen=True, eq=False)
class _Ratio:
    """The rational num/den (den > 0) of two Decimal integers, compared exactly by cross-multiplication.

    Not a Fraction: that needs int(), whose string conversion stops at 4,300 digits (a long boxed integer was a
    grader_error) and is quadratic below that; Decimal parses and multiplies without either.
    """

    num: Decimal
    den: Decimal

    def _cross(self, other: _Ratio) -> tuple[Decimal, Decimal]:
        return _EXACT.multiply(self.num, other.den), _EXACT.multiply(other.num, self.den)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Ratio):
            return NotImplemented
        a, b = self._cross(other)
        return a == b

    def __lt__(self, other: _Ratio) -> bool:
        a, b = self._cross(other)
        return a < b


def _as_rational(s: str) -> _Ratio | None:
    m = _RATIONAL.match(s.strip())
    if not m:
        return None
    sign, integer, fn, fd, sn, sd = m.groups()
    num, den = (Decimal(integer), Decimal(1)) if integer is not None else (Decimal(fn or sn), Decimal(fd or sd))
    if not den:
        return None  # x/0 (or x/00) is no number: math-verify decides
    return _Ratio(num.copy_negate() if sign == "-" else num, den)  # copy_negate: unary minus would round


def _exact_value(canonical: str) -> _Ratio | tuple | None:
    """A value to compare exactly, for the forms where that is what math-verify does; else None.

    A :class:`_Ratio` for integers and integer fractions; ``(bracket, lo, hi, bracket)`` for an interval with rational
    ends and lo < hi (math-verify reads ``(2,1)``, ``[2,1]`` and ``(1,1)`` as tuples and ``[1,1)`` as the empty
    set, so those go to math-verify).
    """
    m = _PAIR.match(canonical)
    if m:
        lo, hi = _as_rational(m.group(2)), _as_rational(m.group(3))
        return (m.group(1), lo, hi, m.group(4)) if lo is not None and hi is not None and lo < hi else None
    return _as_rational(canonical)


@lru_cache(maxsize=65536)
def _mv_equal(gold: str, pred: str, timeout: int | None) -> tuple[bool, str]:
    """(equal, detail) for normalised gold/pred; raises TimeoutException when math-verify times out."""
    cg, cp = canonical_answer(gold), canonical_answer(pred)
    g_x, p_x = _exact_value(cg), _exact_value(cp)
    if g_x is not None and p_x is not None and type(g_x) is type(p_x):
        return g_x == p_x, "exact comparison"
    if cg == cp:
        # Same maths, same text: math-verify would parse both to the same object and say equal (checked on
        # every parseable gold of the suite's datasets), so skip its slow LaTeX parser (~60 ms for an interval).
        return True, "same canonical string"
    from math_verify import verify
    from math_verify.errors import TimeoutException

    g, p = _parse(gold, timeout), _parse(pred, timeout)
    detail = "" if _has_expr(p) else "prediction not parseable; string comparison only"
    # verify() over the gold x pred lists, pair by pair, so that one pair's timeout is reported as a timeout
    # (verify(raise_on_error=False) would turn it into a silent False) without losing the other pairs.
    timed_out = False
    for gi in g:
        for pi in p:
            try:
                if verify(gi, pi, timeout_seconds=timeout, raise_on_error=True):
                    return True, detail
            except TimeoutException:
                timed_out = True
            except Exception:  # noqa: BLE001 - math-verify's own default: a failing comparison is "not equal"
                pass
    if timed_out:
        raise TimeoutException("math-verify comparison timed out")
    return False, detail


def grade_math_verify(pred: str | None, gold: str) -> bool:
    """math-verify equivalence, gold first; the gold is wrapped in ``\\boxed{}`` before parsing."""
    if pred is None or not pred.strip():
        return False
    from math_verify.errors import TimeoutException

    try:
        return _mv_equal(normalize_latex(str(gold)), normalize_latex(pred), _mv_timeout(5))[0]
    except TimeoutException:
        return False


# Boolean graders of an extracted answer, by mode (kept for callers that only want correct / not correct).
GRADERS = {"strict": grade_strict, "math_verify": grade_math_verify}


def grade_math(
    response: str, gold: str, mode: str = "math_verify", truncated: bool = False, *, mv_timeout: int | None = 5
) -> MathGrade:
    """Grade one full response against ``gold``; see the module docstring for the statuses and their order.

    ``truncated``: the caller says generation hit the token limit. ``mv_timeout``: math-verify's own per-call
    SIGALRM timeout in whole seconds (None: off); ignored outside the main thread, where signals don't work.
    """
    if mode not in GRADERS:
        raise ValueError(f"unknown grading mode {mode!r}; choose one of {sorted(GRADERS)}")
    from math_verify.errors import TimeoutException

    gold, timeout = str(gold), _mv_timeout(mv_timeout)
    extracted = extract_last_boxed(response)
    try:
        defect = _gold_defect(gold, mode, timeout)
    except TimeoutException:
        return MathGrade(GRADER_TIMEOUT, 0.0, extracted, "math-verify timed out parsing the gold")
    if defect:
        return MathGrade(GOLD_UNPARSEABLE, 0.0, extracted, defect)
    if truncated:
        what = "boxed answer kept but not graded" if extracted is not None else "no final box"
        return MathGrade(TRUNCATED, 0.0, extracted, f"hit the token limit; {what}")
    if extracted is None or not extracted.strip():
        return MathGrade(NO_ANSWER, 0.0, extracted, "no final box" if extracted is None else "empty box")
    if mode == "strict":
        ok, detail = grade_strict(extracted, gold), ""
    else:
        try:
            ok, detail = _mv_equal(normalize_latex(gold), normalize_latex(extracted), timeout)
        except TimeoutException:
            return MathGrade(GRADER_TIMEOUT, 0.0, extracted, "math-verify timed out comparing")
    return MathGrade(CORRECT if ok else WRONG, float(ok), extracted, detail)


def grade_response(response: str, gold: str, mode: str = "strict") -> bool:
    """Thin wrapper of :func:`grade_math`: True iff the response's last box is graded ``correct``."""
    return grade_math(response, gold, mode).status == CORRECT
