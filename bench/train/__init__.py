"""The shared trainer: rollout -> score -> loss -> step -> hooks, for every algorithm (``train`` in loop.py)."""

from bench.train.loop import train

__all__ = ["train"]
