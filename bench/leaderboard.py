"""``python -m bench.leaderboard validate|render``: the leaderboard's commands
(bench/studies/leaderboard/__main__.py)."""

import sys

from bench.studies.leaderboard.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
