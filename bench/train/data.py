"""Prompt batches in a reproducible order: a fixed pool, reshuffled every epoch by its own generator."""

from __future__ import annotations

import torch


class PromptStream:
    """Yields batches from ``pool``; the order depends only on ``seed`` (the same for every method, so runs
    of different methods with equal seeds see the same prompts). ``state_dict`` makes resume exact."""

    def __init__(self, pool: list, seed: int):
        if not pool:
            raise ValueError("PromptStream needs a non-empty prompt pool")
        self.pool = pool
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.pool), generator=g).tolist()

    def next(self, k: int) -> list:
        out = []
        while len(out) < k:
            if self.position == len(self.pool):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(k - len(out), len(self.pool) - self.position)
            out += [self.pool[i] for i in self._order[self.position : self.position + take]]
            self.position += take
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "size": len(self.pool)}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != len(self.pool) or state["seed"] != self.seed:
            raise ValueError(f"checkpoint data state {state} does not match this run's prompt pool "
                             f"(size {len(self.pool)}, seed {self.seed}); resume with the same data config")
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation(self.epoch)
