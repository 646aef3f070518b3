"""Small, pure statistics helpers for the results tables: confidence intervals and target crossings.

``mean_ci`` is the one-level interval over seeds (Student-t or bootstrap). ``hierarchical_mean_ci`` is the
two-stage bootstrap used when a table's runs span several world builds (resample builds, then seeds within
each resampled build), and ``between_build_spread`` the per-build means, their range and sd shown beside it.
"""

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


def _finite_groups(groups: Sequence[Sequence[float | None]]) -> list[np.ndarray]:
    """Each group's values as a float array, None entries dropped, groups left empty dropped."""
    out = [np.asarray([float(v) for v in g if v is not None], dtype=float) for g in groups]
    return [g for g in out if g.size]


def hierarchical_mean_ci(
    groups: Sequence[Sequence[float | None]],
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict:
    """Mean and two-stage (hierarchical) bootstrap interval of values grouped by world build.

    ``groups`` holds one sequence per build (the values of its seeds; None entries, e.g. missed targets, are
    dropped, and a build left without values is dropped). Each of ``n_boot`` resamples draws as many builds as
    there are, with replacement, then within each drawn build as many of its values as it has, with replacement,
    and takes the mean of all values drawn; the interval is the percentile interval of those means (numpy RNG
    seeded with ``seed``). The spread between builds and the spread between seeds both enter it.

    The mean is the plain mean of all values (every run weighs the same, as in ``mean_ci``). Returns
    {"mean", "ci95": [lo, hi], "n", "n_builds"}; ci95 is None when fewer than 2 builds have values (no
    between-build spread can be estimated) or fewer than 2 values in all, and mean is None with no values.
    """
    arrays = _finite_groups(groups)
    n_builds, n = len(arrays), int(sum(g.size for g in arrays))
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0, "n_builds": 0}
    mean = float(np.concatenate(arrays).mean())
    if n_builds < 2 or n < 2:
        return {"mean": mean, "ci95": None, "n": n, "n_builds": n_builds}
    sizes = np.asarray([g.size for g in arrays])
    padded = np.zeros((n_builds, int(sizes.max())))
    for i, g in enumerate(arrays):
        padded[i, : g.size] = g
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, n_builds, size=(n_boot, n_builds))  # stage 1: builds, with replacement
    total, count = np.zeros(n_boot), np.zeros(n_boot)
    for slot in range(n_builds):  # stage 2: within each drawn build, its own number of values, with replacement
        build = picked[:, slot]
        size = sizes[build]
        pos = np.floor(rng.random((n_boot, padded.shape[1])) * size[:, None]).astype(int)
        used = np.arange(padded.shape[1])[None, :] < size[:, None]
        total += np.where(used, padded[build[:, None], pos], 0.0).sum(axis=1)
        count += size
    boot = total / count
    alpha = (1.0 - level) / 2
    lo, hi = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
    return {"mean": mean, "ci95": [lo, hi], "n": n, "n_builds": n_builds}


def cluster_t_mean_ci(groups: Sequence[Sequence[float | None]], level: float = 0.95) -> dict:
    """Mean and Student-t interval over per-build means: the build is the unit of replication.

    Each build's values (its seeds; None entries dropped, builds left empty dropped) are averaged first; the mean
    is the mean of those build means (every build weighs the same) and the interval mean ± t_{0.975,k-1} · sd /
    sqrt(k) over the k build means. Seed noise enters through the build means, so both sources of variance count.
    With 3 builds t has 2 degrees of freedom (4.30): wide, but it covers; a percentile bootstrap over 3 builds
    under-covers (about 75-82% for a nominal 95% in a simulation, docs/studies.md). Returns {"mean", "ci95", "n",
    "n_builds"}; ci95 is None with fewer than 2 builds.
    """
    arrays = _finite_groups(groups)
    n_builds, n = len(arrays), int(sum(g.size for g in arrays))
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0, "n_builds": 0}
    means = np.asarray([g.mean() for g in arrays])
    mean = float(means.mean())
    if n_builds < 2:
        return {"mean": mean, "ci95": None, "n": n, "n_builds": n_builds}
    half = t_critical(n_builds - 1, level) * float(means.std(ddof=1)) / np.sqrt(n_builds)
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n, "n_builds": n_builds}


def between_build_spread(groups: dict[int, Sequence[float | None]]) -> dict:
    """Per-build means of ``groups`` ({build: values}; None entries dropped) and how far apart they are.

    Returns {"per_build": [{"build", "mean", "n"}, ...] (builds ascending, mean None for a build without
    values), "range": [min, max] of the build means (None without any), "sd": their sample sd (ddof=1; None
    with fewer than 2 build means)}.
    """
    per_build = []
    for build in sorted(groups):
        x = np.asarray([float(v) for v in groups[build] if v is not None], dtype=float)
        per_build.append({"build": int(build), "mean": float(x.mean()) if x.size else None, "n": int(x.size)})
    means = np.asarray([p["mean"] for p in per_build if p["mean"] is not None], dtype=float)
    return {
        "per_build": per_build,
        "range": [float(means.min()), float(means.max())] if means.size else None,
        "sd": float(means.std(ddof=1)) if means.size >= 2 else None,
    }


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


def geometric_mean_ci(ratios: Sequence[float], level: float = 0.95) -> dict:
    """Geometric mean of positive ratios with a Student-t interval on their logs, mapped back:
    exp(m ± t_{0.975,k-1} · s / sqrt(k)) where m and s are the mean and sd of log(ratio) over the k values.

    {"mean", "ci95", "n"}; ci95 None when k < 2. A ratio <= 0 has no logarithm and is refused."""
    values = [float(r) for r in ratios]
    bad = [r for r in values if not (r > 0 and math.isfinite(r))]
    if bad:
        raise ValueError(f"geometric_mean_ci needs finite ratios > 0, got {bad}")
    if not values:
        return {"mean": None, "ci95": None, "n": 0}
    logs = np.log(values)
    m = float(logs.mean())
    if len(values) < 2:
        return {"mean": math.exp(m), "ci95": None, "n": len(values)}
    half = t_critical(len(values) - 1, level) * float(logs.std(ddof=1)) / math.sqrt(len(values))
    return {"mean": math.exp(m), "ci95": [math.exp(m - half), math.exp(m + half)], "n": len(values)}


FASTER, NOT_SHOWN, SLOWER = "faster", "not shown", "slower"


def verdict(ci: dict) -> str:
    """faster when the whole interval of a speedup lies above 1, slower when below 1, else not shown (also
    without an interval)."""
    if not ci or ci.get("ci95") is None:
        return NOT_SHOWN
    lo, hi = ci["ci95"]
    return FASTER if lo > 1 else SLOWER if hi < 1 else NOT_SHOWN
