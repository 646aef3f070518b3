"""``python -m bench.analysis reproduce|perf|...``: the parameter-dynamics study's commands
(bench/studies/analysis/__main__.py)."""

import sys

from bench.studies.analysis.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
