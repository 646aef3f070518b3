"""Validation signals: how an extrapolation method scores the model as it is now (``effopd.val_signal``).

Every signal scores the student on the fixed validation prompts (``world.effopd_val``) and returns a
``ValidationScore`` where higher is better, identical on every rank, so that all ranks take the same
accept/reject decision:

- ``accuracy`` (official): task accuracy of ``effopd.val_samples`` samples per prompt at
  ``effopd.val_temperature`` (0 = greedy). Needs the verifier; noisy when the sampled accuracy is low.
- ``teacher_loglik``: the mean per-token log-likelihood, under the student, of the teacher's samples of the
  validation prompts (``val_samples`` per prompt at ``val_temperature``, generated once per run with the
  teacher's weights and cached on disk like SFT's teacher samples; kept in memory). No generation at scoring
  time, no verifier, no sampling noise: one forward pass over fixed tokens. Higher is better (at temperature 1
  it is minus the forward KL to the teacher, up to the teacher's entropy).
- ``reverse_kl``: minus the mean per-token reverse-KL estimate ``log p_student - log p_teacher`` on the
  student's own samples (``val_samples`` per prompt at ``val_temperature``, seeded like ``accuracy``).
  No verifier; costs a generation plus a student and a teacher forward.

Distributed runs follow ``trainer.dist_rollouts``: ``split`` scores each rank's share of the prompts (from a
per-rank seed) and sums the totals over ranks; otherwise every rank scores everything and rank 0's score is
broadcast. Log-likelihoods are computed with full-weight models (the engine's model, and a full teacher on
every rank), so no collective runs inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench import distributed
from bench.algorithms.logprobs import token_logprobs
from bench.extrapolation.registry import ValidationScore, get_val_signal, register_val_signal
from bench.world.base import load_model
from bench.world.evaluation import evaluate
from bench.world.teacher_samples import load_teacher_trajectories
from core.rollout.base import RolloutBatch, SamplingParams


@dataclass
class ValidationInputs:
    """What a validation signal reads (``prepare_validation`` builds it once per run)."""

    cfg: object  # the run config (effopd.val_*, rollout.max_new_tokens, trainer.micro_batch_size, ...)
    engine: object  # samples from the student's current weights (synced by the hook's on_weights_changed)
    world: object  # bench.world.World: effopd_val prompts, task score, tokenizer
    model: torch.nn.Module | None  # full weights of the student on this rank (what ``engine`` samples from);
    # None is allowed for signals that only generate (accuracy)
    teacher: torch.nn.Module | None = None  # full-weight teacher (signals registered with needs_teacher)
    teacher_batch: RolloutBatch | None = None  # teacher samples of this rank's prompts (needs_teacher_samples)

    @property
    def split(self) -> bool:
        """Each rank scores its own share of the prompts (torchrun with trainer.dist_rollouts=split)."""
        return distributed.world_size() > 1 and self.cfg.trainer.dist_rollouts == "split"

    def problems(self) -> list:
        """This rank's validation problems: its share under ``split``, all of them otherwise."""
        problems = self.world.effopd_val
        return problems[distributed.share(len(problems))] if self.split else problems

    def sampling(self) -> SamplingParams:
        e = self.cfg.effopd
        return SamplingParams(temperature=e.val_temperature, max_new_tokens=self.cfg.rollout.max_new_tokens,
                              logprobs=False)


def prepare_validation(cfg, engine, world, model: torch.nn.Module | None, teacher: torch.nn.Module | None = None,
                       load_teacher: Callable[[], torch.nn.Module] | None = None) -> ValidationInputs:
    """The inputs of ``effopd.val_signal``: the teacher when the signal runs it (``teacher`` if given, else
    ``load_teacher()``, by default the world's teacher loaded in full), and the teacher's samples of this rank's
    validation prompts when it reads them. ``model``: the student's full weights on this rank (only signals
    that run the student's forward need it). Consumes no global RNG: the choice of signal leaves the training
    run's random streams alone."""
    signal = get_val_signal(cfg.effopd.val_signal)
    v = ValidationInputs(cfg, engine, world, model)
    if not (signal.needs_teacher or signal.needs_teacher_samples):
        return v
    if model is None:
        raise ValueError(f"effopd.val_signal={signal.name} scores the student's log-likelihoods: give "
                         "prepare_validation the full-weight student the engine samples from")
    load_teacher = load_teacher or (lambda: load_model(world.teacher_path, trainable=False))
    cached = []

    def full_teacher() -> torch.nn.Module:
        if teacher is not None:
            return teacher
        if not cached:
            with torch.random.fork_rng(devices=[]):  # loading may initialise weights randomly first
                cached.append(load_teacher().to(_device(model)))
        return cached[0]

    if signal.needs_teacher:
        v.teacher = full_teacher()
    if signal.needs_teacher_samples:
        e, prompts = cfg.effopd, [p.prompt for p in world.effopd_val]
        samples, _ = load_teacher_trajectories(cfg.world.cache_dir, world.teacher_path, full_teacher, world.tokenizer,
                                               prompts, e.val_samples, v.sampling(), seed=cfg.trainer.seed)
        mine = [p.prompt for p in v.problems()]
        v.teacher_batch = samples.generate(mine, e.val_samples, v.sampling()).to(_device(model))
    return v


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def response_logprobs(model: torch.nn.Module, batch: RolloutBatch, cfg) -> torch.Tensor:
    """``[B, R]`` log-probs of ``batch``'s response tokens under ``model`` (0 where masked), in micro-batches of
    ``trainer.micro_batch_size`` rows, in eval mode (the model's mode is restored)."""
    ids, mask = batch.full_sequences()
    R, size = batch.response_ids.shape[1], cfg.trainer.micro_batch_size
    was_training = model.training
    model.eval()
    try:
        parts = [token_logprobs(model, ids[i : i + size], mask[i : i + size], R, cfg.trainer.logprob_chunk)[0]
                 for i in range(0, ids.shape[0], size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) * batch.response_mask


def _mean_over_ranks(v: ValidationInputs, total: float, count: float, tokens: int, sign: float) -> ValidationScore:
    """``sign * total / count`` over the global set: summed over ranks under ``split``, else rank 0's."""
    if v.split:
        total, count, tokens = distributed.sum_over_ranks(total, count, tokens)
        return ValidationScore(sign * total / max(count, 1.0), int(tokens))
    return distributed.broadcast(ValidationScore(sign * total / max(count, 1.0), int(tokens)))


def _sample_seed(v: ValidationInputs, seed: int) -> int:
    return distributed.rank_seed("effopd", seed) if v.split else seed


@register_val_signal("accuracy")
def accuracy(v: ValidationInputs, seed: int) -> ValidationScore:
    """Task accuracy of ``val_samples`` samples per prompt at ``val_temperature`` (the official signal)."""
    e = v.cfg.effopd
    r = evaluate(v.engine, v.problems(), v.world.score, n=e.val_samples, temperature=e.val_temperature,
                 max_new_tokens=v.cfg.rollout.max_new_tokens, seed=_sample_seed(v, seed))
    if v.split:
        correct, samples, tokens = distributed.sum_over_ranks(sum(r.scores), len(r.scores), r.num_tokens)
        return ValidationScore(correct / samples, int(tokens))
    # One process, or every rank scored the same samples (replicate): rank 0's score decides for all.
    return distributed.broadcast(ValidationScore(r.accuracy, r.num_tokens))


@register_val_signal("teacher_loglik", needs_teacher_samples=True)
def teacher_loglik(v: ValidationInputs, seed: int) -> ValidationScore:
    """Mean per-token log p_student of the cached teacher samples (``seed`` unused: nothing is sampled).
    ``tokens``: the response tokens scored."""
    batch = v.teacher_batch
    logp = response_logprobs(v.model, batch, v.cfg)
    n = batch.response_mask.sum().item()
    return _mean_over_ranks(v, logp.sum().item(), n, int(n), sign=1.0)


@register_val_signal("reverse_kl", needs_teacher=True)
def reverse_kl(v: ValidationInputs, seed: int) -> ValidationScore:
    """Minus the mean per-token ``log p_student - log p_teacher`` on the student's own samples of the validation
    prompts. ``tokens``: the generated tokens."""
    prompts = [p.prompt for p in v.problems()]
    with torch.random.fork_rng(devices=[]):  # evaluate()'s seeding: training randomness untouched
        torch.manual_seed(_sample_seed(v, seed))
        batch = v.engine.generate(prompts, v.cfg.effopd.val_samples, v.sampling())
    batch = batch.to(_device(v.model))
    diff = response_logprobs(v.model, batch, v.cfg) - response_logprobs(v.teacher, batch.to(_device(v.teacher)),
                                                                        v.cfg).to(_device(v.model))
    n = batch.response_mask.sum().item()
    return _mean_over_ranks(v, diff.sum().item(), n, int(n), sign=-1.0)
