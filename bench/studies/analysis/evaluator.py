"""Greedy test accuracy of edited weights, with the trainer's own evaluation (bench.world.evaluation.evaluate).

The evaluator loads the run's world and base student once, then for each query writes the given analysed
tensors into the model (W_0 + some Delta W) and scores a fixed subset of the test split greedily with the
``qwen3_fast`` engine. Parameters not given (RMSNorm gains; the embedding unless passed) stay at the base
student's values.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench.world import load_model, load_world
from bench.world.evaluation import evaluate
from core.rollout import make_engine


class Evaluator:
    def __init__(self, run_dir: str | Path, n_prompts: int = 200, max_new_tokens: int | None = None):
        cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
        cfg.data.selection_prompts = 0
        self.world = load_world(cfg)
        self.problems = self.world.test[:n_prompts]
        self.max_new = max_new_tokens or int(cfg.rollout.max_new_tokens)
        self.model = load_model(self.world.student_path, trainable=False)
        self.params = dict(self.model.named_parameters())
        self.base = {n: p.detach().clone() for n, p in self.params.items()}
        self.engine = make_engine("qwen3_fast", self.model, self.world.tokenizer)
        self.calls = 0

    @torch.no_grad()
    def set_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        for n, p in self.params.items():
            p.copy_(tensors[n] if n in tensors else self.base[n])
        self.engine.sync_weights()

    @torch.no_grad()
    def accuracy(self, tensors: dict[str, torch.Tensor]) -> float:
        self.set_weights(tensors)
        self.calls += 1
        return evaluate(self.engine, self.problems, self.world.score, max_new_tokens=self.max_new).accuracy

    @torch.no_grad()
    def generated_tokens(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token ids the model generates greedily on the eval subset (with multiplicity)."""
        from core.rollout import SamplingParams

        self.set_weights(tensors)
        batch = self.engine.generate([p.prompt for p in self.problems], 1,
                                     SamplingParams(temperature=0.0, max_new_tokens=self.max_new, logprobs=False))
        return batch.response_ids[batch.response_mask.bool()].flatten()
