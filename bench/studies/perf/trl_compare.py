"""Our trainer vs TRL 1.16 on the CPU, pair by pair, in one process:

    python -m bench.studies.perf.trl_compare --steps 10 --repeats 3 --pairs opd,grpo,sft --threads 1

For each pair (see ``bench.studies.perf.pairs``) both sides train the same tiny-world student on 32 completions
of <= 64 new tokens per step, fp32, for ``--steps`` steps. The sides run interleaved (``--order abab``:
ours, TRL, ours, TRL, ...; ``abba`` swaps the first side every repeat) because the machine is noisy.
Writes ``<out>/trl_vs_ours.json`` and ``<out>/trl_vs_ours.md``. Needs ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.studies.perf.deps import require_trl
from bench.studies.perf.pairs import DEFAULT_PAIRS, parse_pairs
from core.paths import RESULTS_DIR

SIDES = ("ours", "trl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.studies.perf.trl_compare", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="training steps per run (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per pair (default 3)")
    ap.add_argument("--pairs", default=",".join(DEFAULT_PAIRS),
                    help="comma-separated: opd, grpo, sft, opd_gkd (default opd,grpo,sft)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--order", choices=("abab", "abba"), default="abab",
                    help="abab: ours first in every repeat; abba: the first side alternates")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed 1-step run of each side before a pair's measurements")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "perf", help="output folder (default results/perf)")
    ap.add_argument("--world-override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for both sides (e.g. another world; repeatable)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--steps, --repeats and --threads must be >= 1")
    try:
        args.pair_list = parse_pairs(args.pairs)
    except ValueError as e:
        ap.error(str(e))
    return args


def side_order(repeat: int, order: str) -> tuple[str, str]:
    return SIDES if order == "abab" or repeat % 2 == 0 else SIDES[::-1]


def run_comparison(args: argparse.Namespace, log=print) -> dict:
    """Every pair's interleaved runs, then the report (written to ``args.out``)."""
    trl = require_trl()  # before any work: a missing extra is a one-line error, not a traceback
    import torch

    import bench.train  # noqa: F401  (heavy imports happen here, not inside the first timed run)
    from bench.studies.perf.ours import run_ours
    from bench.studies.perf.prepare import prepare
    from bench.studies.perf.report import build_report, machine_info, render_markdown
    from bench.studies.perf.trl_side import run_trl
    from core.io import atomic_write_json, atomic_write_text

    for pair in args.pair_list:
        getattr(trl, pair.trl_trainer)  # TRL imports its trainer modules lazily, on first access
    torch.set_num_threads(args.threads)
    machine = machine_info(args.threads)
    runners = {"ours": run_ours, "trl": run_trl}
    runs = []
    for pair in args.pair_list:
        with tempfile.TemporaryDirectory(prefix="trl-compare-") as tmp:
            prepare(pair, args.steps, args.threads, Path(tmp) / "prepare", args.world_override)
            for side in SIDES if args.warmup else ():  # the process's and trainer's first-call costs, untimed
                runners[side](pair, 1, args.threads, Path(tmp) / f"warmup-{side}", args.world_override)
        for repeat in range(args.repeats):
            for side in side_order(repeat, args.order):
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                with tempfile.TemporaryDirectory(prefix=f"trl-compare-{pair.name}-{side}-") as tmp:
                    m = runners[side](pair, args.steps, args.threads, Path(tmp) / "run", args.world_override)
                torch.set_num_threads(args.threads)  # whatever a trainer did, the next run starts the same
                m.update(repeat=repeat, position=len(runs), loadavg_1m_before=load)
                runs.append(m)
                log(f"[{pair.name} r{repeat} {side}] {m['steps_per_s']:.3f} steps/s, {m['tokens_per_s']:.0f} tok/s, "
                    f"steps {m['step_seconds_total']:.1f}s, wall {m['wall_seconds']:.1f}s, split {m['time_split']}",
                    flush=True)
    options = {"steps": args.steps, "repeats": args.repeats, "pairs": [p.name for p in args.pair_list],
               "threads": args.threads, "order": args.order, "warmup": args.warmup,
               "world_overrides": args.world_override}
    report = build_report(options, args.pair_list, runs, machine)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "trl_vs_ours.json", report)
    atomic_write_text(args.out / "trl_vs_ours.md", render_markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch is first imported
        os.environ.setdefault(var, str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = run_comparison(args)
    from bench.studies.perf.report import render_markdown

    print(render_markdown(report))
    print(f"wrote {args.out / 'trl_vs_ours.json'} and {args.out / 'trl_vs_ours.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
