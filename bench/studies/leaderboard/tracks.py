"""Leaderboard tracks: the minimum protocol a submission must meet (experiments/leaderboard/tracks.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.paths import REPO_ROOT

TRACKS_FILE = REPO_ROOT / "experiments" / "leaderboard" / "tracks.yaml"
REQUIRED = ("description", "world_kind", "metric", "reference", "target_fraction", "final_window", "min_seeds",
            "min_eval_problems", "min_samples_per_problem", "min_max_new_tokens", "allow_dirty")


def load_tracks(path: str | Path | None = None) -> dict[str, dict]:
    """{track name: settings}; raises ValueError naming a track that lacks a required key."""
    path = Path(path or TRACKS_FILE)
    tracks = yaml.safe_load(path.read_text()) or {}
    for name, spec in tracks.items():
        missing = [k for k in REQUIRED if k not in (spec or {})]
        if missing:
            raise ValueError(f"{path}: track {name!r} lacks {missing}")
    return tracks
