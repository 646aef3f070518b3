"""effopd-bench: one shared trainer for OPD, EffOPD and friends, plus the tiny world they are measured on."""

__version__ = "0.1.0"
