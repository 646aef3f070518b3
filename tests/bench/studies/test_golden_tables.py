"""Table 2, efficiency and regimes, run end to end through the study CLI on synthetic runs, give byte-identical
tables to the ones the pre-framework study code wrote from the same runs (golden/studies/, made at commit
cb69a54 with tests/bench/studies/synthetic_runs.py standing in for training).

The one deliberate difference: the efficiency table's LR-selection criterion names where ``selection_score``
lives now (bench.studies.run_metrics, formerly bench.studies.table2).
"""

from __future__ import annotations

from pathlib import Path

from bench.studies import cli
from bench.studies.launcher import Launcher
from tests.bench.studies.synthetic_runs import SyntheticLauncher

GOLDEN = Path(__file__).parent / "golden" / "studies"
RENAMED = ("bench.studies.table2.selection_score", "bench.studies.run_metrics.selection_score")


def run_all(tmp: Path, launcher: Launcher) -> dict[str, Path]:
    runs, outs = tmp / "runs", {s: tmp / "out" / s for s in ("table2", "efficiency", "regimes")}
    common = ["--workers", "2", "--table2-runs-dir", str(runs / "table2")]
    # --builds 1: one world build, the setting the golden tables were made in (before builds existed).
    cli.main(["table2", "--seeds", "3", "--sweep-seeds", "2", "--builds", "1", "--runs-dir", str(runs / "table2"),
              "--out", str(outs["table2"]), "--workers", "2"], launcher=launcher)
    cli.main(["efficiency", "--seeds", "3", "--sweep-seeds", "2", "--builds", "1",
              "--runs-dir", str(runs / "efficiency"), "--out", str(outs["efficiency"]), *common], launcher=launcher)
    cli.main(["regimes", "--seeds", "2", "--lrs", "2e-05,6e-05,0.0002", "--worlds", "style,scratch",
              "--runs-dir", str(runs / "regimes"), "--out", str(outs["regimes"]), *common], launcher=launcher)
    return outs


def test_tables_match_the_pre_framework_outputs(tmp_path, frozen):
    launcher = SyntheticLauncher()
    outs = run_all(tmp_path, launcher)
    assert len(launcher.launched) == len(set(launcher.launched)) == 65  # table2 runs trained once, then reused
    compared = 0
    for study, stems in {"table2": ["table2"], "efficiency": ["efficiency"], "regimes": ["table2_regimes"]}.items():
        for stem in stems:
            for ext in ("json", "md", "csv"):
                want_path = GOLDEN / f"{stem}.{ext}"
                if not want_path.exists():
                    continue
                want = want_path.read_text().replace(*RENAMED)
                got = (outs[study] / f"{stem}.{ext}").read_text()
                assert got == want, f"{stem}.{ext} differs from {want_path}"
                compared += 1
    assert compared == 8

    # A second pass reuses every run (fingerprints match) and writes the same tables again.
    again = SyntheticLauncher()
    outs2 = run_all(tmp_path, again)
    assert again.launched == []
    assert (outs2["table2"] / "table2.json").read_text() == (GOLDEN / "table2.json").read_text()
