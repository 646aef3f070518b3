"""``python -m bench.tinyworld build [world=style|scratch]``: build and cache a tiny world
(bench/world/tiny/__main__.py)."""

import sys

from bench.world.tiny.__main__ import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
