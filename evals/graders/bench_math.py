"""Throughput of the maths grader: ``python -m evals.graders.bench_math --out results/perf/math_grader.json``.

Builds a synthetic but realistic workload: problems with MATH-500 / AIME-style golds (integers, fractions,
radicals, pi, intervals, tuples, decimals, degrees, multiple choice, scientific notation), several samples
per problem (as in pass@k evaluation, so correct answers repeat), each a 1-2 KB reasoning-like response that
ends in a boxed answer: correct in the gold's or an equivalent form, wrong, missing, or cut off by the token
limit. It grades them through ``GraderPool`` in ``math_verify`` mode and writes samples/s, per-status counts
and machine info as JSON (atomically: a temporary file, then ``os.replace``).

The target is >= 300 samples/s on 2 cores. Pool start-up is timed separately from grading, since a run
starts the pool once and grades many batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version

from evals.graders.math import STATUSES, extract_last_boxed
from evals.graders.pool import GradeItem, GraderPool

TARGET_SAMPLES_PER_S = 300.0

_SENTENCES = [
    "Let $x$ be the unknown quantity; squaring both sides gives $x^2 = {a}x + {b}$.",
    "By the AM-GM inequality, $\\frac{{{a}+{b}}}{{2}} \\ge \\sqrt{{{a}\\cdot {b}}}$, with equality when $a=b$.",
    "We factor the quadratic as $(x-{a})(x+{b}) = 0$, so the roots are $x={a}$ and $x=-{b}$.",
    "Summing the arithmetic series, $\\sum_{{k=1}}^{{{a}}} k = \\frac{{{a}({a}+1)}}{{2}}$.",
    "Wait, let me double-check this step. Substituting back, the left side is ${a}$ and the right side is ${b}$.",
    "Consider the triangle with sides ${a}$, ${b}$ and $c$; by the law of cosines $c^2 = {a}^2 + {b}^2 - 2\\cdot"
    " {a}\\cdot {b}\\cos\\theta$.",
    "Taking the equation modulo ${b}$, we get $n \\equiv {a} \\pmod{{{b}}}$.",
    "Hmm, that does not look right, so let us recount the cases: there are $\\binom{{{a}}}{{2}}$ pairs.",
    "The probability is therefore $\\frac{{{a}}}{{{a}+{b}}}$ before we account for the overlap.",
    "Differentiating, $f'(x) = {a}x^{{{b}}} - {b}$, which vanishes at the critical point.",
]


def _gold(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A gold answer, equivalent forms a model might box, and wrong answers of the same kind."""
    a, b, c = rng.randint(2, 60), rng.randint(2, 97), rng.randint(2, 12)
    d = [1, 2, 5]  # three distinct wrong answers per problem: wrong samples disagree with each other too
    kind = rng.random()
    if kind < 0.40:  # AIME-style integer
        n = rng.randint(0, 999)
        return str(n), [str(n)], [str(n + x) for x in d]
    if kind < 0.55:
        return (f"\\frac{{{a}}}{{{b + a}}}",
                [f"\\frac{{{a}}}{{{b + a}}}", f"{a}/{b + a}", f"\\dfrac{{{a}}}{{{b + a}}}"],
                [f"\\frac{{{a + x}}}{{{b + a}}}" for x in d])
    if kind < 0.70:
        return (f"{c}\\sqrt{{{b}}}", [f"{c}\\sqrt{{{b}}}", f"\\sqrt{{{c * c * b}}}", f"{c} \\sqrt{{{b}}}"],
                [f"{c + x}\\sqrt{{{b}}}" for x in d])
    if kind < 0.78:
        return (f"\\frac{{{a}\\pi}}{{{c}}}", [f"\\frac{{{a}\\pi}}{{{c}}}", f"\\frac{{{a}}}{{{c}}}\\pi"],
                [f"\\frac{{{a}\\pi}}{{{c + x}}}" for x in d])
    if kind < 0.83:
        return f"[{-a}, {b})", [f"[{-a}, {b})", f"[{-a},{b})"], [f"({-a}, {b}]", f"[{-a}, {b}]", f"[{-a - 1}, {b})"]
    if kind < 0.88:
        wrong = [f"({b}, {a})"] + [f"({a}, {b + x})" for x in d[:2]]
        return f"({a}, {b})", [f"({a}, {b})", f"\\left({a},{b}\\right)"], wrong
    if kind < 0.93:
        return f"{a}.{c}5", [f"{a}.{c}5", f"{a}.{c}50"], [f"{a}.{c}{5 + x}" for x in (1, 2, 4)]
    if kind < 0.96:
        return f"{a}^\\circ", [f"{a}^\\circ", f"{a}", f"{a}^{{\\circ}}"], [f"{a + 5 * x}^\\circ" for x in d]
    if kind < 0.98:
        letter = rng.choice("ABCDE")
        return f"\\text{{({letter})}}", [f"\\text{{({letter})}}", letter, f"({letter})"], \
            [f"\\text{{({o})}}" for o in "ABCDE" if o != letter][:3]
    m, e = f"{c}.{a % 10}", b % 40
    return f"{m}e{e}", [f"{m}\\times 10^{{{e}}}", f"{m}e{e}"], [f"{c + x}.{a % 10}\\times 10^{{{e}}}" for x in d]


def _response(rng: random.Random, boxed: str | None, target_len: int) -> str:
    parts: list[str] = []
    while sum(map(len, parts)) < target_len:
        parts.append(rng.choice(_SENTENCES).format(a=rng.randint(2, 99), b=rng.randint(2, 99)))
    body = " ".join(parts)
    return body if boxed is None else f"{body}\n\nTherefore, the final answer is $\\boxed{{{boxed}}}$."


def build_workload(n: int, samples_per_problem: int = 8, seed: int = 0) -> list[GradeItem]:
    """``n`` items: ~55% correct, ~30% wrong, ~8% without a box, ~5% truncated, the rest unevaluated sums."""
    rng = random.Random(seed)
    items: list[GradeItem] = []
    while len(items) < n:
        gold, forms, wrongs = _gold(rng)
        for _ in range(samples_per_problem):
            r, truncated = rng.random(), False
            if r < 0.55:
                boxed = rng.choice(forms)
            elif r < 0.85:
                boxed = rng.choice(wrongs)
            elif r < 0.93:
                boxed = None
            elif r < 0.98:
                boxed, truncated = (None if rng.random() < 0.7 else rng.choice(forms)), True
            else:
                boxed = f"{gold}+0"  # an unevaluated expression: math-verify evaluates it
            items.append(GradeItem(_response(rng, boxed, rng.randint(1000, 1900)), gold, "math_verify", truncated))
    return items[:n]


def _write_json_atomic(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(n: int, workers: int, timeout_s: float, samples_per_problem: int, seed: int) -> dict:
    items = build_workload(n, samples_per_problem, seed)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with GraderPool(workers=workers, timeout_s=timeout_s) as pool:
        t1, cpu1 = time.perf_counter(), time.process_time()
        grades = pool.grade(items)
        t2, cpu2 = time.perf_counter(), time.process_time()
        respawns = pool.respawns
    counts = Counter(g.status for g in grades)
    rate = n / (t2 - t1)
    return {
        "samples": n,
        "samples_per_problem": samples_per_problem,
        "unique_gold_answer_pairs": len({(it.gold, extract_last_boxed(it.response)) for it in items}),
        "mean_response_chars": round(sum(len(it.response) for it in items) / n),
        "workers": workers,
        "timeout_s": timeout_s,
        "pool_startup_s": round(t1 - t0, 3),
        "grading_s": round(t2 - t1, 3),
        "parent_cpu_s": round(cpu2 - cpu1, 3),  # the parent's own share: dispatch and collection
        "samples_per_s": round(rate, 1),
        "target_samples_per_s": TARGET_SAMPLES_PER_S,
        "target_met": rate >= TARGET_SAMPLES_PER_S,
        "respawns": respawns,
        "status_counts": {s: counts.get(s, 0) for s in STATUSES},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "math_verify": version("math-verify"),
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/perf/math_grader.json")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout-s", type=float, default=10.0)
    p.add_argument("--samples-per-problem", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = run(args.n, args.workers, args.timeout_s, args.samples_per_problem, args.seed)
    _write_json_atomic(args.out, result)
    print(json.dumps({k: result[k] for k in ("samples_per_s", "target_met", "status_counts")}))


if __name__ == "__main__":
    main()
