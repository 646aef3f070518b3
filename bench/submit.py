"""``python -m bench.submit <run or table> --name ... --contact ...``: package results for the leaderboard.

See bench/leaderboard/bundle.py for what goes into a bundle, and ``python -m bench.leaderboard`` to validate
and render.
"""

from __future__ import annotations

import sys

from bench.leaderboard.bundle import main

if __name__ == "__main__":
    sys.exit(main())
