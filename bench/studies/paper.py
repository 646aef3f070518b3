"""What the paper (arXiv 2605.11739) reports, as the tables print it beside our numbers."""

PAPER_SPEEDUP = {  # Table 2 and the regimes table: EffOPD vs OPD
    "speedup_steps": 3.0,
    "by_method": {"OPD": "1× (30-40 steps)", "EffOPD": "~3× (~10 steps; single runs, validation not counted)"},
    "summary": ("EffOPD reaches OPD's accuracy in ~3x fewer steps (\"~10 vs 30-40 steps\"), on Qwen students "
                "of 1.5B-32B at LR 1e-6/1e-5; single runs per setting; validation cost not counted."),
}
