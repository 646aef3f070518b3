"""The base both ``evals`` and ``bench`` build on: atomic file I/O, repository paths, provenance, and the
rollout engines that generate from a model (the trainer's rollouts and the eval runner's samples).

Imports run one way: ``core`` <- ``evals`` <- ``bench`` (tests/test_import_direction.py)."""
