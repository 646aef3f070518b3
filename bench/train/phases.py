"""The phases of one training step, as plain functions of explicit arguments (``train_step`` in loop.py
calls them in this order): ``collect_batch`` (generate + ``score_phase`` + the algorithm's batch stages),
``update_phase``, ``batch_metrics``; and the evaluations: ``periodic_eval`` and EffOPD's validation scorer."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

from bench import distributed
from bench.algorithms import LossInputs, LossTotals, ScoredBatch, get_advantage, get_policy_loss
from bench.algorithms.is_correction import truncated_is_weights
from bench.algorithms.logprobs import token_logprobs
from bench.algorithms.stages import BatchStage, active_batch_stages, apply_round_stages, collecting_stage
from bench.extrapolation.registry import ValidationScore, get_val_signal
from bench.extrapolation.validation import prepare_validation
from bench.train.data import PromptStream
from bench.world.evaluation import evaluate
from core.faults import crash_point


def micro_batches(n_rows: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


@torch.no_grad()
def score_phase(cfg, rollout, problems, teacher, reference, world) -> ScoredBatch:
    """Teacher log-probs of the sampled tokens (distillation; the whole distribution for GKD losses),
    reference log-probs (KL penalty) and the 0/1 task reward (reward shaping is a batch stage)."""
    a = cfg.algorithm
    ids, mask = rollout.full_sequences()
    R = rollout.response_ids.shape[1]
    chunks = micro_batches(ids.shape[0], cfg.trainer.micro_batch_size)
    teacher_logp = teacher_dist = ref_logp = None
    if teacher is not None:
        full = get_policy_loss(a.policy_loss).needs_teacher_distribution
        logp_parts, dist_parts = [], []
        for mb in chunks:
            logp, dist = token_logprobs(teacher, ids[mb], mask[mb], R, cfg.trainer.logprob_chunk, full)
            logp_parts.append(logp)
            if full:
                dist_parts.append(dist)
        teacher_logp = torch.cat(logp_parts) * rollout.response_mask
        teacher_dist = torch.cat(dist_parts) if full else None
    if reference is not None:
        ref_logp = torch.cat([token_logprobs(reference, ids[mb], mask[mb], R, cfg.trainer.logprob_chunk)[0]
                              for mb in chunks])
    task = torch.tensor(world.score([problems[int(i)] for i in rollout.prompt_index], rollout.texts,
                                    rollout.truncated.tolist()), dtype=torch.float32,
                        device=rollout.response_mask.device)
    return ScoredBatch(rollout=rollout, teacher_logp=teacher_logp, rewards=task, task_rewards=task,
                       teacher_dist=teacher_dist, ref_logp=ref_logp)


class TimedScorer:
    """``score_phase`` with the run's models, adding up its seconds (generation and scoring interleave under
    dynamic sampling, so the step's timing subtracts these from the collection time)."""

    def __init__(self, cfg, teacher, reference, world):
        self.cfg, self.teacher, self.reference, self.world = cfg, teacher, reference, world
        self.seconds = 0.0

    def __call__(self, rollout, problems) -> ScoredBatch:
        t0 = time.perf_counter()
        scored = score_phase(self.cfg, rollout, problems, self.teacher, self.reference, self.world)
        self.seconds += time.perf_counter() - t0
        return scored


def generate_share(cfg, source, problems: list, sampling, step: int) -> tuple:
    """This rank's rollouts of the step's prompts, and the problem list their ``prompt_index`` points into.

    One process: all of them. Under torchrun rank r takes its contiguous slice of the same global prompt
    list (whole prompts, so a GRPO group's ``rollout.n`` samples stay together on one rank), either sampled
    by itself from a per-rank seed (``trainer.dist_rollouts=split``) or cut out of the whole batch, which
    every rank samples with the shared RNG exactly as one process would (``replicate``)."""
    n, prompts = cfg.rollout.n, [p.prompt for p in problems]
    if distributed.world_size() == 1:
        return source.generate(prompts, n, sampling), problems
    mine = distributed.share(len(problems))
    if cfg.trainer.dist_rollouts == "replicate":
        rollout = source.generate(prompts, n, sampling).select(slice(mine.start * n, mine.stop * n))
    else:
        with distributed.forked_rng(distributed.rank_seed("rollout", cfg.trainer.seed, step)):
            rollout, problems = source.generate(prompts[mine], n, sampling), problems[mine]
    return rollout.to(distributed.device()), problems


def scored_round(cfg, source, stream: PromptStream, sampling, score, step: int,
                 stages: list[BatchStage]) -> ScoredBatch:
    """One round: ``trainer.prompts_per_step`` new prompts, this rank's rollouts of them, scored, and the
    active round stages applied (e.g. DAPO's overlong shaping)."""
    problems = stream.next(cfg.trainer.prompts_per_step)
    return apply_round_stages(stages, score(*generate_share(cfg, source, problems, sampling, step)), cfg)


def collect_batch(cfg, source, stream: PromptStream, sampling, score, pad_id: int, step: int = 0,
                  stages: list[BatchStage] | None = None) -> tuple[ScoredBatch, dict]:
    """One step's scored training batch and its counters (``generated_tokens``, plus a collecting stage's).

    One round (``scored_round``) by default; a collecting batch stage (DAPO's dynamic sampling,
    ``bench.algorithms.dapo``) runs as many as it needs instead. ``stages``: the run's active batch stages
    (default: those ``cfg`` switches on)."""
    stages = active_batch_stages(cfg) if stages is None else stages
    next_round = functools.partial(scored_round, cfg, source, stream, sampling, score, step, stages)
    collector = collecting_stage(stages)
    if collector is not None:
        return collector.fn(next_round, cfg, pad_id)
    scored = next_round()
    return scored, {"generated_tokens": scored.rollout.num_tokens}


def update_phase(cfg, student, optimizer, scored: ScoredBatch) -> dict:
    """PPO-style update. With ``ppo_epochs == 1`` the batch is exactly on-policy, so the pre-update student
    log-probs are the detached log-probs of the training forward itself (no extra forward pass).
    Group-level advantages (GRPO) are computed once on the whole batch; token-level ones (OPD) per
    micro-batch from those log-probs."""
    a = cfg.algorithm
    advantage_fn, loss_fn = get_advantage(a.name), get_policy_loss(a.policy_loss)
    rollout = scored.rollout
    ids, mask = rollout.full_sequences()
    R = rollout.response_ids.shape[1]
    chunks = micro_batches(ids.shape[0], cfg.trainer.micro_batch_size)
    lm = scored.loss_mask
    # Normalisers of the global batch (summed over ranks): with the gradient sum over ranks, W ranks x B/W
    # rows give the gradient of one process with B rows.
    tokens, sequences = distributed.sum_over_ranks(lm.sum().item(), (lm.sum(1) > 0).sum().item())
    totals = LossTotals(tokens=tokens, sequences=sequences,
                        norm_len=float(a.loss_agg_norm_len or cfg.rollout.max_new_tokens))
    denom = max(totals.tokens, 1.0)
    batch_adv = None if advantage_fn.needs_student_logp else advantage_fn(scored, None, a)
    old_logp = None
    if cfg.trainer.ppo_epochs > 1:
        with torch.no_grad():
            old_logp = torch.cat([token_logprobs(student, ids[mb], mask[mb], R, cfg.trainer.logprob_chunk)[0]
                                  for mb in chunks])
    stats: dict[str, float] = {"loss": 0.0, "adv_mean": 0.0, "adv_abs_mean": 0.0, "student_logp_mean": 0.0}
    for _ in range(cfg.trainer.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for mb in chunks:
            sub = scored.select(mb)
            logp, dist = token_logprobs(student, ids[mb], mask[mb], R, cfg.trainer.logprob_chunk,
                                        full=loss_fn.needs_student_distribution)
            old = old_logp[mb] if old_logp is not None else logp.detach()
            adv = advantage_fn(sub, old, a) if batch_adv is None else batch_adv[mb]
            if cfg.rollout.is_correction == "tis":  # w >= 0 factors out of PPO's min: w x the per-token loss
                weights, is_stats = truncated_is_weights(old, sub.rollout.logprobs, sub.loss_mask, cfg.rollout.is_cap)
                adv = adv * weights
                for k in ("is/mismatch_abs_mean", "is/mismatch_kl", "is/truncated_frac", "is/weight_mean"):
                    stats[k] = stats.get(k, 0.0) + (sub.loss_mask.sum().item() / denom) * is_stats[k]
            inputs = LossInputs(logp=logp, old_logp=old, advantages=adv, mask=sub.loss_mask, totals=totals,
                                student_dist=dist,
                                teacher_dist=sub.teacher_dist,
                                ref_logp=sub.ref_logp)
            loss, loss_stats = loss_fn(inputs, a)
            loss.backward()
            m = sub.loss_mask
            w = m.sum().item() / denom
            stats["loss"] += loss.item()
            for k, v in loss_stats.items():
                stats[k] = stats.get(k, 0.0) + w * v
            stats["adv_mean"] += (adv * m).sum().item() / denom
            stats["adv_abs_mean"] += (adv.abs() * m).sum().item() / denom
            stats["student_logp_mean"] += (old * m).sum().item() / denom
        stats["grad_norm"] = distributed.clip_grad_norm(student.parameters(), cfg.trainer.grad_clip)
        optimizer.step()
    n = cfg.trainer.ppo_epochs
    stats = distributed.sum_dict_over_ranks(stats, keep=("grad_norm",))  # each rank's share of global means
    return {k: v / n if k != "grad_norm" else v for k, v in stats.items()}


def batch_metrics(cfg, scored: ScoredBatch, stats: dict, stages: list[BatchStage] = ()) -> dict:
    """Means over the step's global batch (and the batch stages' ``row_metrics``). Per-row values are gathered
    from every rank, so the formulas (and, on one process, the numbers) are those of a single-process run."""
    rollout, rows = scored.rollout, distributed.gather_rows
    rec = {"reward_mean": rows(scored.task_rewards.float()).mean().item(),
           "response_length": rows(rollout.response_mask.sum(1).float()).mean().item(),
           "truncated_frac": rows(rollout.truncated.float()).mean().item()}
    for stage in stages:
        for key, values in (stage.row_metrics(scored) if stage.row_metrics else {}).items():
            rec[key] = rows(values).mean().item()
    if scored.teacher_logp is not None:
        # Mean over loss tokens of log p_student - log p_teacher: a per-token reverse-KL estimate.
        teacher_sum, n_tokens = distributed.all_reduce_((scored.teacher_logp * scored.loss_mask).sum(),
                                                        scored.loss_mask.sum())
        rec["reverse_kl"] = stats["student_logp_mean"] - (teacher_sum / n_tokens.clamp(min=1)).item()
    return rec


def periodic_eval(cfg, engine, world, step: int, train_seconds: float, with_avg_k: bool) -> dict:
    """Greedy test accuracy (the table's metric), greedy selection-set accuracy (for LR selection) and,
    on its own cadence, temperature-1 avg@k on the test split. Forked RNGs: training randomness untouched."""
    crash_point("eval", step)  # tests only (core/faults.py)
    t0 = time.perf_counter()
    max_new = cfg.rollout.max_new_tokens
    rec = {"step": step, "train_seconds": round(train_seconds, 4)}
    # One greedy batch for both sets: generation cost is dominated by per-token steps, not by batch rows.
    greedy = evaluate(engine, world.test + world.selection, world.score, max_new_tokens=max_new).scores
    n_test = len(world.test)
    rec["test/greedy"] = sum(greedy[:n_test]) / n_test
    if world.selection:  # data.selection_prompts=0: a run that takes no part in LR selection skips it
        rec["val/greedy"] = sum(greedy[n_test:]) / len(world.selection)
    if with_avg_k:
        k = cfg.trainer.eval_avg_k
        rec[f"test/avg@{k}"] = evaluate(engine, world.test, world.score, n=k, temperature=1.0,
                                        max_new_tokens=max_new, seed=10_000 + step).accuracy
    rec["eval_seconds"] = round(time.perf_counter() - t0, 4)
    return rec


@dataclass
class EffOPDValidation:
    """The extrapolation hook's scorer: the registered validation signal ``effopd.val_signal``
    (bench/extrapolation/validation.py) of the student as ``engine`` samples it, on the fixed validation prompts
    (``world.effopd_val``); the default ``accuracy`` is the student's accuracy sampled by ``engine`` with ``seed``.
    Every rank returns the same score (split scores are summed over ranks, replicated ones broadcast from rank 0),
    so all take the same accept/reject decision. ``model``: the student's full weights on this rank (what the
    engine samples from); ``teacher``: a full-weight teacher to lend to a signal that runs one (else it loads
    its own). The signal's set-up (teacher samples, teacher) happens here, once per run."""

    cfg: object
    engine: object
    world: object
    model: torch.nn.Module | None = None
    teacher: torch.nn.Module | None = None

    def __post_init__(self):
        self.signal = get_val_signal(self.cfg.effopd.val_signal)
        self.inputs = prepare_validation(self.cfg, self.engine, self.world, self.model, self.teacher)

    def __call__(self, seed: int) -> ValidationScore:
        return self.signal.score(self.inputs, seed)
