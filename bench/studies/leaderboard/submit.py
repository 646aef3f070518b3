"""``python -m bench.submit <run or table> --name ... --contact ...``: package results for the leaderboard.

See bundle.py for what goes into a bundle, and ``python -m bench.leaderboard`` to validate and render.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.studies.leaderboard.bundle import SUBMISSIONS_DIR, SubmitError, build_bundle, write_bundle
from bench.studies.leaderboard.validate import validate_bundle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.submit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a run folder, a tree of runs (e.g. runs/table2), or a table .json")
    p.add_argument("--name", required=True, help="who submits (shown on the board)")
    p.add_argument("--contact", required=True, help="e-mail or URL")
    p.add_argument("--track", default="tiny-cpu")
    p.add_argument("--title", default=None)
    p.add_argument("--runs", default=None, help="for a table .json: its runs folder (default runs/<table stem>)")
    p.add_argument("--reference-runs", default=None, help="runs of the track's reference method (speedups)")
    p.add_argument("--methods", default=None, help="comma-separated methods to include (default: all)")
    p.add_argument("--ci", default="t", choices=["t", "bootstrap"])
    p.add_argument("--out", default=str(SUBMISSIONS_DIR))
    p.add_argument("--eval", action="append", default=[], metavar="DIR",
                   help="attach a python -m evals.run results folder (summary.json + samples.jsonl); repeatable")
    p.add_argument("--revision", action="append", default=[], metavar="ROLE=SHA",
                   help="pin a hub model's revision (commit sha), e.g. --revision student=abc123; repeatable")
    p.add_argument("--no-sidecar", action="store_true")
    p.add_argument("--no-validate", action="store_true")
    args = p.parse_args(argv)
    revisions = dict(r.split("=", 1) for r in args.revision if "=" in r)
    if set(revisions) - {"student", "teacher"} or len(revisions) != len(args.revision):
        print("submit: --revision takes student=<sha> or teacher=<sha>")
        return 2
    try:
        bundle, blob = build_bundle(args.source, name=args.name, contact=args.contact, track=args.track,
                                    title=args.title, runs_dir=args.runs, reference_runs=args.reference_runs,
                                    methods=args.methods.split(",") if args.methods else None, ci_method=args.ci,
                                    sidecar=not args.no_sidecar, evals=args.eval, revisions=revisions)
    except (SubmitError, ValueError) as exc:
        print(f"submit: {exc}")
        return 2
    if not args.no_validate:  # the writer and the validator share the schema and the checks
        problems = validate_bundle(bundle, sidecar_bytes=blob, submissions_dir=Path(args.out))
        if problems:
            print("submit: the bundle would be rejected:\n" + "\n".join(f"  - {x}" for x in problems))
            return 2
    path = write_bundle(bundle, blob, args.out)
    print(f"wrote {os.path.relpath(path)} ({len(bundle['entries'])} entries, track {bundle['track']})")
    return 0
