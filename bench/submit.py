"""``python -m bench.submit``: the leaderboard's submit command (bench/studies/leaderboard/submit.py)."""

import sys

from bench.studies.leaderboard.submit import main

if __name__ == "__main__":
    sys.exit(main())
