"""``python -m bench.reproduce <study> [--workers N] [--launcher local|submitit] [study options]``: run a
registered study (bench/studies/cli.py; ``list`` names them, ``all`` runs them all)."""

from bench.studies.cli import main

if __name__ == "__main__":
    main()
