"""Small, pure statistics helpers for the results tables: confidence intervals and target crossings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Two-sided 95% Student-t critical values t_{0.975, df} for df = 1..30, used when scipy is absent.
# Beyond df = 30 the normal value 1.96 is close enough for a table of a handful of seeds.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_critical(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value for `df` degrees of freedom at confidence `level`.

    Uses scipy when importable; otherwise a hard-coded table, which only covers level 0.95.
    """
    try:
        from scipy import stats as sps
    except ImportError:
        if not math.isclose(level, 0.95):
            raise ValueError(f"without scipy only level=0.95 is supported, got {level}") from None
        return _T975[df - 1] if df <= len(_T975) else 1.96
    return float(sps.t.ppf(0.5 + level / 2, df))


def mean_ci(
    values: Sequence[float | None],
    method: str = "t",
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict:
    """Mean and confidence interval of `values` (None entries are dropped).

    method "t": Student-t interval mean ± t * sd / sqrt(n).
    method "bootstrap": percentile interval of `n_boot` resampled means, numpy RNG seeded with `seed`.
    Returns {"mean", "ci95": [lo, hi], "n"}; with n == 1 there is no spread to estimate, so ci95 is None
    (n tells the reader why), and with n == 0 mean is None as well.
    """
    if method not in ("t", "bootstrap"):
        raise ValueError(f"unknown CI method {method!r}; use 't' or 'bootstrap'")
    x = np.asarray([float(v) for v in values if v is not None], dtype=float)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "ci95": None, "n": 1}
    if method == "t":
        half = t_critical(n - 1, level) * float(x.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        rng = np.random.default_rng(seed)
        boot = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        alpha = (1.0 - level) / 2
        lo, hi = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
    return {"mean": mean, "ci95": [float(lo), float(hi)], "n": n}


def first_crossing(steps: Sequence[float], values: Sequence[float | None], target: float) -> int | None:
    """Index of the first eval whose value is >= `target` (None values are skipped), or None if never.

    `steps` must be sorted ascending and match `values` in length; it is checked so that an
    unsorted eval log cannot silently yield a "first" crossing that is not the earliest.
    """
    if len(steps) != len(values):
        raise ValueError(f"steps and values differ in length: {len(steps)} vs {len(values)}")
    if any(b < a for a, b in zip(steps, steps[1:])):
        raise ValueError("steps must be sorted ascending")
    for i, v in enumerate(values):
        if v is not None and v >= target:
            return i
    return None
