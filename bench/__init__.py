"""effopd-bench: one shared trainer for OPD, EffOPD and friends, plus the tiny world they are measured on."""

import core  # noqa: F401  (pins the CPU numerics before torch is imported: core/numerics.py)

__version__ = "0.1.0"
