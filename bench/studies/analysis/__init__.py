"""Parameter-dynamics analysis of OPD vs RL updates (issue 6): ``python -m bench.analysis --help``."""
