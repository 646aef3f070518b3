"""The parameter-dynamics study (``make reproduce-analysis``): Table 1 and 3, figures, ANALYSIS.md.

    python -m bench.reproduce analysis [--seeds 3] [--workers 2] [--prompts 200] [--no-eval] [--no-reuse]
    python -m bench.analysis reproduce ...          (the same)

Grid: OPD and GRPO at the efficiency table's LR on the style world, ``--seeds`` seeds, parameter snapshots on
(bench/studies/analysis/runs.py). Then each run is analysed (spectra, alignment, early checkpoints,
reconstructions, embedding shift; bench/studies/analysis/run_analysis.py) and the tables and figures are
written (bench/studies/analysis/report.py): results/table1.*, table3.*, figures/, ANALYSIS.md.
"""

from __future__ import annotations

from pathlib import Path

from bench.studies.analysis.runs import analysis_jobs, run_dirs
from bench.studies.framework import StudyContext, option, register_study
from core.paths import RESULTS_DIR


@register_study("analysis", after=("efficiency",),
                help="parameter dynamics, OPD vs GRPO with snapshots -> results/table1.*, table3.*, ANALYSIS.md",
                options=(
    option("--seeds", type=int, default=3),
    option("--prompts", type=int, default=200),
    option("--r", type=int, default=4, help="subspace rank for the alignment analysis"),
    option("--runs-dir", default="runs/analysis"),
    option("--out", default=str(RESULTS_DIR)),
    option("--no-eval", dest="eval", action="store_false", help="static analyses only (1, 2, 5, 8)"),
    option("--no-reuse", dest="reuse", action="store_false", help="recompute per-run analysis.json"),
))
def reproduce_analysis(ctx: StudyContext) -> dict:
    from bench.studies.analysis.report import reproduce

    runs_dir, seeds = Path(ctx.args.runs_dir), list(range(ctx.args.seeds))
    ctx.run(analysis_jobs(runs_dir, seeds))
    return reproduce(ctx.args, run_dirs(runs_dir, seeds), t0=ctx.t0)
