"""The report writer every study shares: number formatting, markdown lines, and the provenance footer.

``fmt_stat`` renders a {"mean", "ci95", "n"} statistic as "mean [lo, hi]" (the speedup tables), ``fmt_spread``
the per-build means beside it when a table spans several world builds, ``fmt_ci`` the analysis tables' variant
("n/a" for a missing value, optional percentages); ``machine`` and ``git_commit`` are what a result records about
where it was made, and ``machine_line`` is the "Machine: ...; commit ...; total ... s." footer under every
study's markdown. ``stale_note`` adds the line that says a study used runs whose
fingerprint did not match (``--stale reuse``); it is empty otherwise, so normal outputs do not change.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from core.io import atomic_write_json, atomic_write_text
from core.provenance import (
    cpu_model,
    git_commit,  # noqa: F401  (re-exported: studies record the commit through this module)
)

DASH = "—"


def _num(x: float | None, digits: int) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def fmt_stat(stat: dict | None, digits: int = 3, suffix: str = "") -> str:
    """Render {"mean", "ci95"} as "mean [lo, hi]" (or just mean without a CI, "—" without a mean)."""
    if not stat or stat.get("mean") is None:
        return DASH
    text = _num(stat["mean"], digits) + suffix
    if stat.get("ci95"):
        lo, hi = stat["ci95"]
        text += f" [{_num(lo, digits)}, {_num(hi, digits)}]"
    return text


def fmt_spread(spread: dict | None, digits: int = 3, suffix: str = "") -> str:
    """Render a between-build spread ({"per_build": [{"build", "mean"}], "range", "sd"}) as
    "b0 1.20 · b1 1.50 · b2 — (range 1.20–1.50, sd 0.21)" ("—" for a build without a value, no sd below 2)."""
    if not spread or not spread.get("per_build"):
        return DASH
    text = " · ".join(f"b{p['build']} {_num(p['mean'], digits)}{'' if p['mean'] is None else suffix}"
                      for p in spread["per_build"])
    if spread.get("range"):
        lo, hi = spread["range"]
        sd = f", sd {_num(spread['sd'], digits)}" if spread.get("sd") is not None else ""
        text += f" (range {_num(lo, digits)}–{_num(hi, digits)}{sd})"
    return text


def fmt_ci(stat: dict | None, digits: int = 3, pct: bool = False) -> str:
    """The analysis tables' "mean [lo, hi]": "n/a" without a mean, percentages with one decimal when ``pct``."""
    if stat is None or stat.get("mean") is None:
        return "n/a"
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.{digits}f}")
    ci = stat.get("ci95")
    return f"{f(stat['mean'])} [{f(ci[0])}, {f(ci[1])}]" if ci else f(stat["mean"])


def md_row(cells) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_header(columns) -> list[str]:
    """A markdown table's header row and its separator."""
    columns = list(columns)
    return [md_row(columns), "|" + "---|" * len(columns)]


def machine(parallel_runs: int) -> dict:
    """Where the runs were made: platform, processor, CPUs, torch and python, and how many ran at once."""
    import torch

    from core.numerics import status

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "numerics": status(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "parallel_runs": parallel_runs}


def machine_line(result: dict, torch: bool = False, total: str = "total wall-clock") -> str:
    """The footer: "Machine: <processor>, <n> CPUs, <k> runs in parallel; [torch <v>; ]commit <c>; <total> <s> s."."""
    m = result["machine"]
    torch_part = f"torch {m['torch']}; " if torch else ""
    cpu = m.get("cpu_model", m["processor"])
    return (f"Machine: {cpu}, {m['cpus']} CPUs, {m['parallel_runs']} runs in parallel; {torch_part}"
            f"commit {result['git_commit']}; {total} {result['total_wall_seconds']:.0f} s.")


def world_note(result: dict) -> list[str]:
    """The world-digest line (bench/world/digest.py) of a result whose study built or found its worlds."""
    status = result.get("world_status")
    return ["", status["line"]] if status else []


def stale_note(result: dict) -> list[str]:
    """Lines naming the runs used despite a stale or missing fingerprint (``--stale reuse``); none otherwise."""
    stale = result.get("stale_runs_reused") or []
    if not stale:
        return []
    return ["", f"**{len(stale)} run(s) reused with --stale reuse** (made by other code or config than this "
                "commit's; see stale_runs_reused in the JSON): " + ", ".join(s["run_dir"] for s in stale) + "."]


def append_markdown(md_path: Path, lines: list[str]) -> None:
    """Append ``lines`` (one newline each) to a markdown file, atomically."""
    md_path = Path(md_path)
    atomic_write_text(md_path, md_path.read_text() + "\n".join(lines) + "\n")


def publish(out_dir: str | Path, stem: str, result: dict, markdown: str) -> None:
    """A study's outputs: ``<stem>.json`` and ``<stem>.md`` under ``out_dir``, each written atomically, and the
    markdown printed, so a reader of the log sees the table the study just wrote."""
    out = Path(out_dir)
    atomic_write_json(out / f"{stem}.json", result)
    atomic_write_text(out / f"{stem}.md", markdown)
    print(markdown)
