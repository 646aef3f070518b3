"""``python -m bench.leaderboard validate [file ...] [--check-files]``, ``render`` and ``reproduce BUNDLE``.

validate: every file given (default: every bundle in results/leaderboard/submissions/); prints OK or
REJECTED with one line per reason, exits 1 if any is rejected. render: validates the same folder, then writes
results/LEADERBOARD.md and results/leaderboard.html from the accepted bundles (rejected ones are left out,
and the command fails, so `make leaderboard` never publishes a bad board silently); each entry shows its
status. reproduce: re-run one of a bundle's runs at its commit and record the verdict in
results/leaderboard/reproductions/ (bench/studies/leaderboard/reproduce.py); exits 1 when it does not reproduce.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.studies.leaderboard.bundle import SUBMISSIONS_DIR
from bench.studies.leaderboard.render import render
from bench.studies.leaderboard.reproduce import REPRODUCTIONS_DIR, ReproduceError, reproduce
from bench.studies.leaderboard.validate import file_problems, load_json, submission_files, validate_file
from core.paths import RESULTS_DIR


def _validate(files: list[Path], submissions_dir: Path | None, check_files: bool) -> tuple[list[Path], int]:
    ok, bad = [], 0
    for f in files:
        problems = validate_file(f, submissions_dir=submissions_dir, check_files=check_files)
        if problems:
            bad += 1
            print(f"REJECTED {os.path.relpath(f)}:")
            for p in problems:
                print(f"  - {p}")
        else:
            ok.append(f)
            note = ""
            if check_files:
                note = f" ({file_problems(load_json(f))[1]} listed run files found and matched)"
            print(f"OK {os.path.relpath(f)}{note}")
    return ok, bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.leaderboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="validate submission bundles")
    v.add_argument("files", nargs="*", type=Path)
    v.add_argument("--submissions", type=Path, default=SUBMISSIONS_DIR,
                   help="folder of accepted submissions (duplicate check; default: the board's)")
    v.add_argument("--check-files", action="store_true",
                   help="also hash the run files the bundle lists, where they exist locally")
    r = sub.add_parser("render", help="write results/LEADERBOARD.md and results/leaderboard.html")
    r.add_argument("--submissions", type=Path, default=SUBMISSIONS_DIR)
    r.add_argument("--out", type=Path, default=RESULTS_DIR)
    rp = sub.add_parser("reproduce", help="re-run a bundle's run at its commit; record reproduced or failed")
    rp.add_argument("bundle", type=Path)
    rp.add_argument("--method", help="which submitted method to re-run (default: the best by step speedup)")
    rp.add_argument("--seed", type=int, help="which of its seeds (default: the smallest)")
    rp.add_argument("--cache-dir", type=Path, help="world cache for the re-run (default: $EFFOPD_CACHE_DIR or "
                    ".cache/effopd-bench)")
    rp.add_argument("--out", type=Path, default=REPRODUCTIONS_DIR, help="where the verdict is written")
    args = p.parse_args(argv)
    if args.cmd == "reproduce":
        try:
            rec = reproduce(args.bundle, method=args.method, seed=args.seed, cache_dir=args.cache_dir,
                            out_dir=args.out)
        except ReproduceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{rec['verdict']}: {rec['method']} seed {rec['seed']} at {rec['commit'][:10]} ({rec['mode']}): "
              f"claimed {rec['claimed']}, measured {rec['measured']}" + "".join(f"\n  - {m}" for m in rec["misses"]))
        return 0 if rec["verdict"] == "reproduced" else 1
    if args.cmd == "validate":
        files = args.files or submission_files(args.submissions)
        if not files:
            print(f"no submissions under {args.submissions}")
            return 0
        dup_dir = None if not args.files else args.submissions
        ok, bad = _validate(files, dup_dir, args.check_files)
        print(f"{len(ok)} accepted, {bad} rejected")
        return 1 if bad else 0
    ok, bad = _validate(submission_files(args.submissions), None, False)
    paths = render([load_json(f) for f in ok], args.out)
    print(f"wrote {os.path.relpath(paths['md'])} and {os.path.relpath(paths['html'])} ({len(ok)} submissions)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
