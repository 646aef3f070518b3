"""``python -m bench.tinyworld build [world=style|flip|scratch] [world.build=B] [world.student.steps=...]``: build
and cache a world (build B >= 1 trains every role from its recipe's seed + 1000 * B).

Prints each model's cache folder and its measured test accuracies as the world sees them (the full numbers are
in ``build_report.json`` there).

``python -m bench.tinyworld report [world=style,flip,scratch] [--builds 0,1,2] [--build-missing] [--out DIR]
[--record-reference] [overrides...]``: per world and build, the student's greedy and sampled answer accuracy and
new-style share and the teacher's success, from the build reports -> ``results/world_builds.{json,md}``, and
whether this machine's models are the reference world (their digests against ``results/world_digests.json``).
``--record-reference`` makes them the reference (a maintainer does this when committing results made from them).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv and argv[0] == "build":
        from bench.world.tiny.build import build_world

        build_world(argv[1:])
        return 0
    if argv and argv[0] == "report":
        from bench.world.tiny.builds import parse_args, world_builds_report, write_report

        try:
            args = parse_args(argv[1:])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        report = world_builds_report(args["worlds"], args["builds"], args["overrides"], args["build_missing"])
        if args["record_reference"]:
            from bench.world.digest import reference_machine, world_status
            from bench.world.tiny.builds import record_report_reference, report_digests

            record_report_reference(report, reference_machine())
            report["world_status"] = world_status(report_digests(report))
        for path in write_report(report, args["out"]):
            print(path)
        if "world_status" in report:
            print(report["world_status"]["line"])
        return 0
    print(__doc__.strip())
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
