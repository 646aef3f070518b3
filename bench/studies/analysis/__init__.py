"""Parameter-dynamics analysis of OPD vs RL updates: ``python -m bench.analysis --help``."""
