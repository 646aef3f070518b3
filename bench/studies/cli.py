"""``python -m bench.reproduce <study> [--workers N] [--launcher local|submitit] [--stale ...] [study options]``.

    python -m bench.reproduce list                       the registered studies
    python -m bench.reproduce table2 [--seeds 5] [--sweep-seeds 2] [--runs-dir runs/table2] [--out results]
    python -m bench.reproduce efficiency [--seeds 5] [--sweep-seeds 2] [--table2-runs-dir runs/table2]
    python -m bench.reproduce regimes [--seeds 3] [--lrs 2e-5,6e-5,2e-4] [--worlds style,scratch]
    python -m bench.reproduce analysis [--seeds 3] [--prompts 200] [--no-eval]
    python -m bench.reproduce all                        every study, each after the ones whose runs it reuses
    python -m bench.reproduce <study> --help             a study's own options

Launchers: ``local`` (default: N processes here, one torch thread each) or ``submitit`` (each job through
submitit: SLURM jobs on a SLURM machine with --partition/--gpus-per-job/--timeout-min..., or local processes
with --cluster local). Finished runs are skipped; a finished run whose fingerprint does not match this code and
config is refused unless ``--stale rerun`` or ``--stale reuse`` (docs/studies.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.studies.framework import load_studies, ordered_studies, run_study
from bench.studies.launcher import LAUNCHERS, STALE_POLICIES, Launcher, LocalLauncher, SubmititLauncher


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("running the jobs")
    g.add_argument("--workers", type=int, default=2,
                   help="runs at a time (local processes; submitit: concurrent jobs / SLURM array tasks)")
    g.add_argument("--launcher", choices=sorted(LAUNCHERS), default="local")
    g.add_argument("--stale", choices=STALE_POLICIES, default="refuse",
                   help="a finished run made by other code or config: refuse (default), rerun it (the old folder "
                        "is moved to <folder>.stale-<hash>), or reuse it as it is (recorded in the study's output)")
    s = p.add_argument_group("--launcher submitit")
    s.add_argument("--cluster", default=None, help="submitit cluster: slurm, local or debug (default: auto-detect)")
    s.add_argument("--submitit-folder", default="runs/submitit", help="submitit's job logs and pickles")
    s.add_argument("--partition", default=None, help="SLURM partition")
    s.add_argument("--gpus-per-job", type=int, default=0)
    s.add_argument("--cpus-per-job", type=int, default=1)
    s.add_argument("--mem-gb", type=float, default=None)
    s.add_argument("--timeout-min", type=int, default=120, help="time limit of each job")
    s.add_argument("--slurm-arg", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch parameter (repeatable), e.g. account=myproj or qos=high")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True, metavar="STUDY")
    common = common_options()
    for study in load_studies().values():
        sp = sub.add_parser(study.name, help=study.help, description=study.help, parents=[common])
        g = sp.add_argument_group(f"{study.name} options")
        for opt in study.options:
            g.add_argument(*opt.flags, **opt.kwargs)
    sub.add_parser("all", help="every registered study (each with its default options)", parents=[common])
    sub.add_parser("list", help="list the registered studies")
    return parser


def make_launcher(args: argparse.Namespace) -> Launcher:
    if args.launcher == "submitit":
        return SubmititLauncher(folder=Path(args.submitit_folder), cluster=args.cluster, workers=args.workers,
                                partition=args.partition, gpus_per_job=args.gpus_per_job,
                                cpus_per_job=args.cpus_per_job, timeout_min=args.timeout_min, mem_gb=args.mem_gb,
                                slurm_args=dict(args.slurm_arg))
    return LocalLauncher(workers=args.workers)


def main(argv: list[str] | None = None, launcher: Launcher | None = None):
    """Parse ``argv`` and run the study (``launcher`` replaces the one the options name: tests, notebooks)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.study == "list":
        for study in ordered_studies():
            print(f"{study.name:12s} {study.help}  ({study.module})")
        return None
    if args.study == "all":
        common = argv[argv.index("all") + 1:]
        results = {}
        for study in ordered_studies():
            print(f"==> python -m bench.reproduce {study.name} {' '.join(common)}", flush=True)
            results[study.name] = main([study.name, *common], launcher=launcher)
        return results
    return run_study(args.study, args, launcher=launcher or make_launcher(args), stale=args.stale)
