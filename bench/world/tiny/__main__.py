"""``python -m bench.tinyworld build [world=style|scratch] [world.student.steps=...]``: build and cache a world.

Prints each model's cache folder and its measured test accuracies (also in ``build_report.json`` there).
"""

from __future__ import annotations

import sys

from bench.world.tiny.build import build_world


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "build":
        print(__doc__.strip())
        return 2
    build_world(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
