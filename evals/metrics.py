"""Evaluation metrics over k samples per problem: pass@k, avg@k, maj@k, with standard errors over problems.

Conventions (they matter when comparing with papers):

- ``pass@k`` is the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)`` for a problem with
  ``n >= k`` samples of which ``c`` are correct, in the numerically stable product form (no huge binomials).
- ``avg@k`` is the mean score over a problem's samples, then the mean over problems. With more than k samples
  per problem we average all of them: the expected score does not depend on k, and more samples only lower
  the variance.
- ``maj@k`` votes over the extracted answers of the *first k* samples (by sample index). Answers are grouped
  by :func:`evals.graders.math.canonical_answer` (so ``\\dfrac{1}{2}`` and ``\\frac{1}{2}`` vote together, but
  ``0.5`` and ``\\frac{1}{2}`` do not: grouping is by string, not by maths). Only graded samples (status
  ``correct`` / ``wrong``) vote: no answer, truncated and grader failures abstain. Ties go to the answer seen
  first. The problem scores the mean score of the winning group's samples (1 or 0 in practice), 0 if nobody
  voted.
- Standard errors are over problems: ``sd / sqrt(n_problems)`` with the sample sd (ddof=1); NaN with fewer
  than 2 problems (None in ``summarize``'s JSON-ready dict). They ignore the sampling noise within a problem, as
  is usual for these benchmarks.
- Problems whose gold is defective (any sample ``gold_unparseable``) are listed in ``flagged_problems`` and,
  by default, left out of the metrics: scoring them 0 would silently penalise every model.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evals.graders.math import CORRECT, GOLD_UNPARSEABLE, STATUSES, WRONG, canonical_answer

_VOTING = (CORRECT, WRONG)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every size-k subset contains a correct sample
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i) == 1 - C(n-c, k)/C(n, k)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean); the error is NaN with fewer than 2 values."""
    if not values:
        raise ValueError("no values")
    m = math.fsum(values) / len(values)
    if len(values) < 2:
        return m, math.nan
    var = math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def avg_at_k(scores: Sequence[Sequence[float]], k: int) -> tuple[float, float]:
    """(avg@k, se) from per-problem score lists, each with at least k scores."""
    _check_k(scores, k)
    return mean_se([math.fsum(s) / len(s) for s in scores])


def pass_at_k_mean(scores: Sequence[Sequence[float]], k: int) -> tuple[float, float]:
    """(pass@k, se) over problems; a sample counts as correct when its score is 1 (>= 0.5 for soft scores)."""
    _check_k(scores, k)
    return mean_se([pass_at_k(len(s), sum(x >= 0.5 for x in s), k) for s in scores])


def majority_vote(answers: Sequence[str | None], scores: Sequence[float]) -> tuple[str | None, float]:
    """(winning canonical answer, its score) for one problem; ``None`` answers abstain. First seen wins ties."""
    groups: dict[str, list[float]] = {}  # insertion order == first occurrence, which breaks ties
    for a, s in zip(answers, scores, strict=True):
        if a is not None and a.strip():
            groups.setdefault(canonical_answer(a), []).append(s)
    if not groups:
        return None, 0.0
    best = max(groups, key=lambda a: len(groups[a]))  # max() keeps the first of equal counts
    return best, math.fsum(groups[best]) / len(groups[best])


def maj_at_k(answers: Sequence[Sequence[str | None]], scores: Sequence[Sequence[float]], k: int) -> tuple[float, float]:
    """(maj@k, se): a majority vote over the first k answers of each problem (None = abstain)."""
    _check_k(answers, k)
    return mean_se([majority_vote(a[:k], s[:k])[1] for a, s in zip(answers, scores, strict=True)])


def _check_k(per_problem: Sequence[Sequence[Any]], k: int, ids: Sequence[Any] | None = None) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    for i, samples in enumerate(per_problem):
        if len(samples) < k:
            name = ids[i] if ids is not None else i
            raise ValueError(f"problem {name!r} has {len(samples)} samples, fewer than k={k}")


def _field(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


def pass_ks(k: int) -> list[int]:
    """1, 2, 4, ... up to k, plus k itself when it is not a power of two."""
    ks = [1 << i for i in range(k.bit_length()) if 1 << i <= k]
    return ks if ks[-1] == k else ks + [k]


def summarize(records: Iterable[Any], k: int, exclude_flagged: bool = True) -> dict[str, Any]:
    """Metrics from per-sample records (mappings or objects with ``problem_id``, ``sample_index``, ``score``,
    ``extracted``, ``status``). Raises ValueError naming the problem when one has fewer than k samples."""
    by_problem: dict[Any, list[Any]] = defaultdict(list)
    status_counts = Counter({s: 0 for s in STATUSES})
    n_samples = 0
    for r in records:
        by_problem[_field(r, "problem_id")].append(r)
        status_counts[_field(r, "status")] += 1
        n_samples += 1
    flagged = [pid for pid, rs in by_problem.items() if any(_field(r, "status") == GOLD_UNPARSEABLE for r in rs)]
    skip = set(flagged) if exclude_flagged else set()
    used = [pid for pid in by_problem if pid not in skip]
    samples = []
    for pid in used:
        rs = sorted(by_problem[pid], key=lambda r: _field(r, "sample_index"))
        idx = [_field(r, "sample_index") for r in rs]
        if len(set(idx)) != len(idx):
            raise ValueError(f"problem {pid!r} has duplicate sample indices")
        samples.append(rs)
    _check_k(samples, k, used)
    out: dict[str, Any] = {"k": k, "n_problems": len(used), "n_problems_total": len(by_problem),
                           "n_samples": n_samples}
    if used:
        scores = [[float(_field(r, "score")) for r in rs] for rs in samples]
        votes = [[_field(r, "extracted") if _field(r, "status") in _VOTING else None for r in rs] for rs in samples]
        out[f"avg@{k}"], out[f"avg@{k}_se"] = avg_at_k(scores, k)
        for j in pass_ks(k):
            out[f"pass@{j}"], out[f"pass@{j}_se"] = pass_at_k_mean(scores, j)
        out[f"maj@{k}"], out[f"maj@{k}_se"] = maj_at_k(votes, scores, k)
        # JSON has no NaN (and NaN != NaN breaks comparisons of summaries): no error bar is None.
        out = {key: None if isinstance(v, float) and math.isnan(v) else v for key, v in out.items()}
    out["status_counts"] = dict(status_counts)
    out["flagged_problems"] = flagged
    out["flagged_excluded"] = exclude_flagged
    return out
