"""Evaluators: graders and the eval runner shared by training-time evaluation and standalone scoring.

This package imports nothing at load: the code sandbox imports ``evals`` in a jail that holds this package
alone. Its modules that run models import ``core`` (which pins the CPU numerics) before any torch op runs."""
