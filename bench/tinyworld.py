"""``python -m bench.tinyworld build [world=style|flip|scratch] [world.build=B]``: build and cache a tiny world;
``python -m bench.tinyworld report [world=...] [--builds 0,1,2]``: the per-build report
(bench/world/tiny/__main__.py)."""

import sys

from bench.world.tiny.__main__ import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
