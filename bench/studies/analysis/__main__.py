"""CLI of the parameter-dynamics analysis.

    python -m bench.analysis reproduce [--seeds 3] [--workers 2] [--prompts 200] [--no-eval] [--no-reuse]
                                       (= python -m bench.reproduce analysis: the registered study, any launcher)
    python -m bench.analysis run RUN_DIR [--prompts 200] [--no-eval]
    python -m bench.analysis compare BASE CKPT [CKPT ...]     (HF folders: Table 1 metrics, no training code)
    python -m bench.analysis perf [--run runs/analysis/OPD/seed0] [--device cuda --shapes qwen3-1.7b]
"""

from __future__ import annotations

import argparse
import json
import sys

from core.paths import RESULTS_DIR


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["reproduce"]:  # the registered study and its options (bench/studies/parameter_dynamics.py)
        from bench.studies.cli import main as reproduce

        reproduce(["analysis", *argv[1:]])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("reproduce", help="the parameter-dynamics study (= python -m bench.reproduce analysis; "
                                     "reproduce --help lists its options)")
    one = sub.add_parser("run")
    one.add_argument("run_dir")
    one.add_argument("--prompts", type=int, default=200)
    one.add_argument("--r", type=int, default=4)
    one.add_argument("--no-eval", dest="eval", action="store_false")
    c = sub.add_parser("compare")
    c.add_argument("base")
    c.add_argument("ckpts", nargs="+")
    c.add_argument("--device", default="cpu")
    f = sub.add_parser("perf")
    f.add_argument("--run", default="runs/analysis/OPD/seed0")
    f.add_argument("--prompts", type=int, default=200)
    f.add_argument("--device", default="cpu")
    f.add_argument("--shapes", default="", choices=["", "qwen3-1.7b", "tiny"])
    f.add_argument("--out", default=str(RESULTS_DIR / "perf" / "analysis_speed.json"))
    f.add_argument("--threads", type=int, default=2, help="torch threads (the budget: one run on 2 cores)")
    args = p.parse_args(argv)
    if args.cmd == "run":
        from bench.studies.analysis.run_analysis import analyse_run

        res = analyse_run(args.run_dir, n_prompts=args.prompts, r=args.r, with_eval=args.eval)
        print(json.dumps({"spectra": res["spectra"]["summary"], "seconds": res["seconds"]}, indent=2))
    elif args.cmd == "compare":
        from bench.studies.analysis.spectra import deltas, spectral_table
        from bench.train.snapshots import load_hf_tensors

        base = load_hf_tensors(args.base)
        for ck in args.ckpts:
            summary = spectral_table(deltas(base, load_hf_tensors(ck)), device=args.device)["summary"]
            print(ck, json.dumps(summary, indent=2))
    else:
        from bench.studies.analysis.perf import main as perf

        perf(args)


if __name__ == "__main__":
    main()
