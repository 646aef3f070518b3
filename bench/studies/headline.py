"""The headline of a speedup table over world builds: one ratio per build, their geometric mean, a verdict.

The world build is the unit of replication: seeds within a build share its base, teacher and student, so they
are not independent draws of the world. Per build b and method M against the reference R:

    ratio_b = mean over b's seeds of R's steps to target / mean over b's seeds of M's steps to target

(and the same for seconds to target, net of validation). The headline is the geometric mean of ratio_b over
builds with a 95% t interval on log(ratio_b) (``stats.geometric_mean_ci``), and the verdict is read off the
interval alone (``stats.verdict``): faster, not shown, slower. A build where a run of either side never reaches
the target has no ratio: it is left out and counted (``builds_excluded``), never filled in.

The rule is fixed before a table is run: nothing here is tuned on a table's outcome.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from bench.studies.stats import geometric_mean_ci, verdict

MEASURES = {"steps": "steps_to_target", "wall": "wall_seconds_to_target"}
MEASURE_WORDS = {"steps": "steps", "wall": "seconds (net of validation)"}


def _build_means(row: dict, field: str) -> dict[int, float | None]:
    """Per build, the mean of ``field`` over its seeds; None when any seed of the build misses the target."""
    groups: dict[int, list] = defaultdict(list)
    for p in row["per_seed"]:
        groups[p.get("build", 0)].append(p[field])
    return {b: None if any(v is None for v in vs) else float(np.mean(vs)) for b, vs in sorted(groups.items())}


def build_headline(table: dict) -> dict:
    """{method: {measure: {"per_build": {build: ratio}, "builds_excluded": [...], "geomean": {...}, "verdict"}}}
    for every method of ``table`` but its reference."""
    rows = {r["method"]: r for r in table["rows"]}
    ref = rows[table["reference"]]
    out = {}
    for method, row in rows.items():
        if method == table["reference"]:
            continue
        out[method] = {}
        for measure, field in MEASURES.items():
            ref_means, means = _build_means(ref, field), _build_means(row, field)
            per_build, excluded = {}, []
            for b in sorted(set(ref_means) | set(means)):
                r, m = ref_means.get(b), means.get(b)
                if r is None or m is None or r <= 0 or m <= 0:
                    excluded.append(b)
                else:
                    per_build[b] = r / m
            gm = geometric_mean_ci(list(per_build.values()))
            out[method][measure] = {"per_build": {str(b): v for b, v in per_build.items()},
                                    "builds_excluded": excluded, "geomean": gm, "verdict": verdict(gm)}
    return out


def verdict_line(method: str, reference: str, entry: dict, measure: str = "steps") -> str:
    """The one sentence a README quotes: "<method> vs <reference>: <verdict>, <gm>x [lo, hi] ..."."""
    e = entry[measure]
    gm = e["geomean"]
    if gm["mean"] is None:
        return f"{method} vs {reference} ({MEASURE_WORDS[measure]}): no build where both reach the target."
    ci = f" [{gm['ci95'][0]:.2f}, {gm['ci95'][1]:.2f}]" if gm["ci95"] else " (no interval: one build)"
    word = {"faster": "faster", "slower": "slower", "not shown": "no difference shown"}[e["verdict"]]
    n_out = len(e["builds_excluded"])
    dropped = f"; {n_out} build(s) left out: a run missed the target" if n_out else ""
    return (f"{method} vs {reference}: {word} — {gm['mean']:.2f}x{ci} in {MEASURE_WORDS[measure]} to target "
            f"(geometric mean over {gm['n']} world builds, 95% t interval{dropped}).")


def verdict_bullets(table: dict) -> list[str]:
    """One markdown bullet per method and measure: what the README quotes of a table, and nothing else."""
    return [f"- {verdict_line(method, table['reference'], entry, measure)}"
            for method, entry in table["headline"].items() for measure in MEASURES]


def headline_markdown(table: dict) -> list[str]:
    """The verdict lines and the per-build ratios, for the top of a study's markdown."""
    head = table["headline"]
    lines = ["## Verdict", "", *verdict_bullets(table)]
    builds = sorted({int(b) for e in head.values() for m in e.values() for b in m["per_build"]}
                    | {b for e in head.values() for m in e.values() for b in m["builds_excluded"]})
    lines += ["", "Per-build ratio of mean steps (seconds) to target, reference over method; — = a run missed:", "",
              "| method | measure | " + " | ".join(f"b{b}" for b in builds) + " |",
              "|---|---|" + "---|" * len(builds)]
    for method, entry in head.items():
        for measure in MEASURES:
            pb = entry[measure]["per_build"]
            cells = [f"{pb[str(b)]:.2f}" if str(b) in pb else "—" for b in builds]
            lines.append(f"| {method} | {measure} | " + " | ".join(cells) + " |")
    return lines
