"""The base both ``evals`` and ``bench`` build on: atomic file I/O, repository paths, provenance, and the
rollout engines that generate from a model (the trainer's rollouts and the eval runner's samples).

Imports run one way: ``core`` <- ``evals`` <- ``bench`` (tests/test_import_direction.py)."""

from core.numerics import pin_environment

pin_environment()  # before anything imports torch: its kernel choices are read from the environment
