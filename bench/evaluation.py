"""Scoring a policy on a set of problems: greedy accuracy and temperature-1 avg@k."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.rollout import SamplingParams
from bench.tinyworld.task import Problem, score_response


@dataclass
class EvalResult:
    accuracy: float  # mean score over all samples
    num_samples: int
    num_tokens: int  # generated tokens (cost accounting)
    scores: list[float]


def evaluate(engine, problems: list[Problem], criterion: str, *, n: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 64, seed: int | None = None) -> EvalResult:
    """Generate ``n`` samples per problem and score them. A ``seed`` samples from a forked RNG, leaving the
    caller's random stream untouched (so evaluation never changes what training samples next)."""
    return evaluate_criteria(engine, problems, (criterion,), n=n, temperature=temperature,
                             max_new_tokens=max_new_tokens, seed=seed)[criterion]


def evaluate_criteria(engine, problems: list[Problem], criteria: tuple[str, ...], *, n: int = 1,
                      temperature: float = 0.0, max_new_tokens: int = 64,
                      seed: int | None = None) -> dict[str, EvalResult]:
    """``evaluate`` under several criteria from one set of generations (generation is the expensive part)."""
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, logprobs=False)
    prompts = [p.prompt for p in problems]
    if seed is None:
        batch = engine.generate(prompts, n, params)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            batch = engine.generate(prompts, n, params)
    out = {}
    for criterion in criteria:
        scores = [score_response(problems[int(i)], text, criterion)
                  for i, text in zip(batch.prompt_index, batch.texts)]
        out[criterion] = EvalResult(sum(scores) / len(scores), len(scores), batch.num_tokens, scores)
    return out
