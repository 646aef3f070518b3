"""``python -m bench.reproduce table2|efficiency|regimes``: run a study (bench/studies/)."""

from bench.studies.table2 import main

if __name__ == "__main__":
    main()
