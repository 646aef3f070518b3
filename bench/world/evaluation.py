"""Scoring a policy on a set of problems: greedy accuracy and temperature-1 avg@k."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from core.rollout import SamplingParams
from evals.datasets.tinyworld_task import parse_criterion, score_response

# A world's success check: (problem of each row, response texts, truncated flags) -> 0/1 scores.
Scorer = Callable[[Sequence, Sequence[str], Sequence[bool]], list[float]]


@dataclass
class EvalResult:
    accuracy: float  # mean score over all samples
    num_samples: int
    num_tokens: int  # generated tokens (cost accounting)
    scores: list[float]


def criterion_scorer(criterion: str) -> Scorer:
    """The tiny world's scorer for ``criterion`` (evals.datasets.tinyworld_task.score_response): ``answer``,
    ``answer_in_style`` (the three-feature target) or ``answer_in_style:<features>`` (a world's own target
    style, e.g. ``answer_in_style:carry``; ``bench.world.tiny.build.world_criterion`` names a world's)."""
    parse_criterion(criterion)  # an unknown criterion fails here, not at the first scored batch

    def score(problems, texts, truncated) -> list[float]:
        return [score_response(p, t, criterion) for p, t in zip(problems, texts)]

    return score


def evaluate(engine, problems: list, scorer: Scorer, *, n: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 64, seed: int | None = None) -> EvalResult:
    """Generate ``n`` samples per problem and score them. A ``seed`` samples from a forked RNG, leaving the
    caller's random stream untouched (so evaluation never changes what training samples next)."""
    return evaluate_scorers(engine, problems, {"_": scorer}, n=n, temperature=temperature,
                            max_new_tokens=max_new_tokens, seed=seed)["_"]


def evaluate_criteria(engine, problems: list, criteria: tuple[str, ...], **kw) -> dict[str, EvalResult]:
    """``evaluate`` under several tiny-world criteria from one set of generations."""
    return evaluate_scorers(engine, problems, {c: criterion_scorer(c) for c in criteria}, **kw)


def evaluate_scorers(engine, problems: list, scorers: dict[str, Scorer], *, n: int = 1, temperature: float = 0.0,
                     max_new_tokens: int = 64, seed: int | None = None) -> dict[str, EvalResult]:
    """One set of generations scored by several scorers (generation is the expensive part)."""
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, logprobs=False)
    prompts = [p.prompt for p in problems]
    if seed is None:
        batch = engine.generate(prompts, n, params)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            batch = engine.generate(prompts, n, params)
    rows = [problems[int(i)] for i in batch.prompt_index]
    truncated = batch.truncated.tolist()
    out = {}
    for name, scorer in scorers.items():
        scores = scorer(rows, batch.texts, truncated)
        out[name] = EvalResult(sum(scores) / len(scores), len(scores), batch.num_tokens, scores)
    return out
