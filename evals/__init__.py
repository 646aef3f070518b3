"""Evaluators: graders and the eval runner shared by training-time evaluation and standalone scoring."""

import core  # noqa: F401  (pins the CPU numerics before torch is imported: core/numerics.py)
