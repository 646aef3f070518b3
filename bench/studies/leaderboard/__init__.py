"""Leaderboard: result bundles (bundle.py, schema.json), validation (validate.py), tracks (tracks.py) and the
rendered board (render.py). CLI: ``python -m bench.submit`` and ``python -m bench.leaderboard validate|render``."""
