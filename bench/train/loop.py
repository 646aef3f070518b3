"""The shared trainer: rollout -> score -> loss -> step -> hooks, for every algorithm.

    python -m bench.train experiment=effopd trainer.lr=3e-5 trainer.seed=1

Read it top to bottom: ``train`` is the whole loop; the helpers above it are the phases.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from transformers import AutoTokenizer

from bench import distributed
from bench.algorithms import LossInputs, LossTotals, ScoredBatch, get_advantage, get_policy_loss
from bench.algorithms.checks import check_algorithm
from bench.algorithms.dapo import informative_groups, overlong_penalty
from bench.algorithms.is_correction import truncated_is_weights
from bench.algorithms.logprobs import token_logprobs
from bench.config import register_configs
from bench.extrapolation.effopd import DirectionProbe, EffOPD, ValidationScore
from bench.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from bench.train.data import PromptStream
from bench.train.dry_run import dry_run
from bench.train.runlog import RunLogger
from bench.train.snapshots import parse_snapshot_steps, save_snapshot
from bench.world import check_same_vocabulary, load_model, load_world
from bench.world.evaluation import evaluate
from bench.world.teacher_samples import teacher_trajectories_for_run
from core.io import atomic_write_text
from core.rollout import SamplingParams, make_engine

register_configs()


def vllm_kwargs(cfg) -> dict:
    """The rollout.vllm_* fields as VLLMEngine's keyword arguments (0 / "" = vLLM's own default)."""
    r = cfg.rollout
    return dict(kv_cache_memory_bytes=r.vllm_kv_cache_memory_bytes or None,
                gpu_memory_utilization=r.vllm_gpu_memory_utilization or None,
                tensor_parallel_size=r.vllm_tensor_parallel_size, dtype=r.vllm_dtype or None,
                max_model_len=r.vllm_max_model_len or None, max_num_seqs=r.vllm_max_num_seqs,
                logprobs_mode=r.vllm_logprobs_mode,
                enforce_eager={"auto": None, "on": True, "off": False}[r.vllm_enforce_eager],
                enable_sleep_mode=r.vllm_enable_sleep_mode, sleep_level=r.vllm_sleep_level,
                weight_sync=r.vllm_weight_sync, seed=cfg.trainer.seed)


def micro_batches(n_rows: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


@torch.no_grad()
def score_phase(cfg, rollout, problems, teacher, reference, world) -> ScoredBatch:
    """Teacher log-probs of the sampled tokens (distillation; the whole distribution for GKD losses),
    reference log-probs (KL penalty) and rewards: the 0/1 task reward, plus DAPO's overlong shaping."""
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
    rewards = task + overlong_penalty(rollout.response_mask.sum(1), cfg.rollout.max_new_tokens,
                                      a.overlong_buffer_len, a.overlong_penalty_factor)
    loss_mask = rollout.response_mask
    if a.overlong_filter:
        loss_mask = loss_mask * (~rollout.truncated).float().unsqueeze(1)
    return ScoredBatch(rollout=rollout, teacher_logp=teacher_logp, rewards=rewards, task_rewards=task,
                       teacher_dist=teacher_dist, ref_logp=ref_logp, loss_mask=loss_mask)


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


def collect_batch(cfg, source, stream: PromptStream, sampling, score, pad_id: int,
                  step: int = 0) -> tuple[ScoredBatch, dict]:
    """One step's scored training batch. With DAPO's dynamic sampling, groups whose rewards are all equal
    are dropped and more prompts are drawn until ``prompts_per_step`` groups are kept or
    ``max_gen_batches`` rounds ran (then the step trains on what it kept). Every generated token counts."""
    want, a = cfg.trainer.prompts_per_step, cfg.algorithm

    def one_round() -> ScoredBatch:
        return score(*generate_share(cfg, source, stream.next(want), sampling, step))

    if not a.dynamic_sampling:
        scored = one_round()
        return scored, {"generated_tokens": scored.rollout.num_tokens}
    kept, n_kept, rounds, tokens = [], 0, 0, 0
    while n_kept < want and rounds < a.max_gen_batches:
        scored = one_round()
        rounds += 1
        tokens += scored.rollout.num_tokens
        groups = scored.rollout.prompt_index
        informative = informative_groups(scored.rewards, groups)
        keep_ids = groups[informative].unique()[: want - n_kept]
        n_kept += len(keep_ids)
        if len(keep_ids):
            kept.append(scored.select(torch.nonzero(torch.isin(groups, keep_ids)).squeeze(1)))
    info = {"generated_tokens": tokens, "dapo/gen_rounds": rounds, "dapo/kept_groups": n_kept}
    if not kept:  # nothing informative within the cap: the last round's advantages are all zero
        return scored, info
    return ScoredBatch.concat(kept, pad_id), info


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


def batch_metrics(cfg, scored: ScoredBatch, stats: dict) -> dict:
    """Means over the step's global batch. Per-row values are gathered from every rank, so the formulas (and,
    on one process, the numbers) are those of a single-process run."""
    rollout, rows = scored.rollout, distributed.gather_rows
    rec = {"reward_mean": rows(scored.task_rewards.float()).mean().item(),
           "response_length": rows(rollout.response_mask.sum(1).float()).mean().item(),
           "truncated_frac": rows(rollout.truncated.float()).mean().item()}
    if cfg.algorithm.overlong_buffer_len > 0:
        rec["shaped_reward_mean"] = rows(scored.rewards.float()).mean().item()
    if scored.teacher_logp is not None:
        # Mean over loss tokens of log p_student - log p_teacher: a per-token reverse-KL estimate.
        teacher_sum, n_tokens = distributed.all_reduce_((scored.teacher_logp * scored.loss_mask).sum(),
                                                        scored.loss_mask.sum())
        rec["reverse_kl"] = stats["student_logp_mean"] - (teacher_sum / n_tokens.clamp(min=1)).item()
    return rec


def periodic_eval(cfg, engine, world, step: int, train_seconds: float, with_avg_k: bool) -> dict:
    """Greedy test accuracy (the table's metric), greedy selection-set accuracy (for LR selection) and,
    on its own cadence, temperature-1 avg@k on the test split. Forked RNGs: training randomness untouched."""
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


def make_scheduler(cfg, optimizer):
    warmup = cfg.trainer.lr_warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig) -> dict:
    tcfg = cfg.trainer
    if tcfg.dry_run:
        return dry_run(cfg)
    distributed.init()  # torchrun: join the process group (one process: nothing to do)
    distributed.check_config(cfg)
    is_main = distributed.is_main()  # rank 0 writes the run's files and logs
    out = Path(tcfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tcfg.threads > 0:
        torch.set_num_threads(tcfg.threads)
    if tcfg.resume not in ("none", "auto"):
        raise ValueError(f"trainer.resume={tcfg.resume!r}; use 'none' or 'auto'")
    if is_main:
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    seed_everything(tcfg.seed)

    # --- world, models, engine, optimizer --------------------------------------------------------------
    check_algorithm(cfg)
    world = load_world(cfg)
    student = load_model(world.student_path, trainable=True)
    if tcfg.activation_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    teacher = reference = None
    if cfg.algorithm.needs_teacher:
        teacher = load_model(world.teacher_path, trainable=False)
        check_same_vocabulary(world.tokenizer, AutoTokenizer.from_pretrained(world.teacher_path),
                              student.get_input_embeddings().num_embeddings,
                              teacher.get_input_embeddings().num_embeddings)
    if cfg.algorithm.kl_coef > 0:
        reference = load_model(world.student_path, trainable=False)  # the frozen initial student
    rollout_model = student  # full weights: what the engine samples from and final_model/ exports
    if distributed.world_size() > 1:
        # FSDP2 for the models that run forward passes on each rank's rows; a full copy for the engine
        # (kept in sync by GatheredRollouts). Weights load in full on every rank first (no meta-device init).
        rollout_model = copy.deepcopy(student).requires_grad_(False).to(distributed.device())
        for model, trainable in ((student, True), (teacher, False), (reference, False)):
            if model is not None:
                distributed.shard_model(model, trainable, tcfg.dist_param_dtype)
    engine = make_engine(cfg.rollout.engine, rollout_model, world.tokenizer,
                         hf_static_cache=cfg.rollout.hf_static_cache, vllm_kwargs=vllm_kwargs(cfg))
    if distributed.world_size() > 1:
        engine = distributed.GatheredRollouts(engine, rollout_model, student)
    # No sampled-token log-probs from the engine: the update recomputes them (with ppo_epochs == 1 from the
    # training forward itself), and a [B, R, V] logits stack would cost ~1 GB per step at a 152k vocabulary.
    # (Except under is_correction=tis: the engine's own log-probs are the IS denominator.)
    sampling = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens,
                              logprobs=cfg.rollout.is_correction == "tis")
    source = engine  # where training rollouts come from: the student itself, or cached teacher samples (SFT)
    if cfg.algorithm.rollout_source == "teacher":
        source = teacher_trajectories_for_run(cfg, world)
    optimizer = torch.optim.AdamW(student.parameters(), lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
                                  weight_decay=tcfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    stream = PromptStream(world.train, cfg.data.shuffle_seed)

    effopd = None
    if cfg.effopd.enabled:
        def validation_scorer(seed: int) -> ValidationScore:
            problems, split = world.effopd_val, distributed.world_size() > 1 and tcfg.dist_rollouts == "split"
            if split:  # each rank scores its share of the prompts from a seed of its own
                problems, seed = problems[distributed.share(len(problems))], distributed.rank_seed("effopd", seed)
            r = evaluate(engine, problems, world.score, n=cfg.effopd.val_samples,
                         temperature=cfg.effopd.val_temperature, max_new_tokens=cfg.rollout.max_new_tokens,
                         seed=seed)
            if split:
                correct, samples, tokens = distributed.sum_over_ranks(sum(r.scores), len(r.scores), r.num_tokens)
                return ValidationScore(correct / samples, int(tokens))
            # One process, or every rank scored the same samples (replicate): rank 0's score decides for all.
            return distributed.broadcast(ValidationScore(r.accuracy, r.num_tokens))

        effopd = EffOPD(cfg.effopd, student, validation_scorer, on_weights_changed=engine.sync_weights,
                        seed=tcfg.seed)
    elif cfg.effopd.probe_when_disabled:
        effopd = DirectionProbe(student, cfg.effopd.schedule)

    # --- resume ----------------------------------------------------------------------------------------
    step, train_seconds = 0, 0.0
    ckpt = latest_checkpoint(out) if tcfg.resume == "auto" else None
    if ckpt is not None:  # any world size: the checkpoint reshards (model, optimizer, EffOPD anchor)
        state = load_checkpoint(ckpt, student, optimizer, effopd.state_dict()["anchor"] if effopd else None)
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["data"])
        if effopd is not None and state["effopd"] is not None:
            effopd.load_state_dict(state["effopd"])
        set_rng_state(state["rng"])
        step, train_seconds = state["step"], state["train_seconds"]
        engine.sync_weights()  # the engine's full copy (torchrun) follows the loaded weights
    log = RunLogger(out, cfg, resume_step=step if ckpt is not None else None) if is_main else None

    def checkpoint_state() -> dict:  # model and optimizer go in through DCP's get_state_dict
        return {"step": step, "train_seconds": train_seconds, "scheduler": scheduler.state_dict(),
                "data": stream.state_dict(), "effopd": effopd.state_dict() if effopd else None}

    snapshot_steps = set(parse_snapshot_steps(tcfg.snapshot_steps, tcfg.total_steps))  # issue 6 analyses
    if step in snapshot_steps and is_main:  # rollout_model: the full weights on every world size
        save_snapshot(out, step, rollout_model)
    if step == 0 and is_main:  # evaluation reads the engine's full copy: no collectives, rank 0 alone
        log.eval(periodic_eval(cfg, engine, world, 0, 0.0, with_avg_k=True))

    # --- the loop --------------------------------------------------------------------------------------
    bar = tqdm(total=tcfg.total_steps, initial=step, disable=not (cfg.logging.progress_bar and is_main),
               desc=cfg.method)
    while step < tcfg.total_steps:
        t = {"start": time.perf_counter()}
        score_times = []

        def score(rollout, problems):
            t0 = time.perf_counter()
            scored = score_phase(cfg, rollout, problems, teacher, reference, world)
            score_times.append(time.perf_counter() - t0)
            return scored

        scored, batch_info = collect_batch(cfg, source, stream, sampling, score, world.tokenizer.pad_token_id,
                                           step=step)
        t["score"] = time.perf_counter()
        t["generate"] = t["score"] - sum(score_times)  # generation and scoring interleave under dynamic sampling
        stats = update_phase(cfg, student, optimizer, scored)
        scheduler.step()
        engine.sync_weights()
        step += 1
        t["update"] = time.perf_counter()
        trigger = effopd.after_step(step) if effopd is not None else None
        t["validation"] = time.perf_counter()

        timing = {f"time/{k}": t[k] - t[prev] for prev, k in
                  (("start", "generate"), ("generate", "score"), ("score", "update"), ("update", "validation"))}
        train_seconds += t["validation"] - t["start"]
        batch_info = {k: int(v) for k, v in distributed.sum_dict_over_ranks(batch_info).items()}  # token counts
        record = {"step": step, "lr": scheduler.get_last_lr()[0], **stats, **batch_metrics(cfg, scored, stats),
                  **batch_info, **timing, "train_seconds": train_seconds}
        if trigger is not None and "accepted_multiplier" in trigger:
            record["effopd/accepted_multiplier"] = trigger["accepted_multiplier"]
        if is_main:
            if trigger is not None:
                log.effopd(trigger)
            log.step(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward_mean']:.3f}", loss=f"{stats['loss']:.4f}")

        last = step == tcfg.total_steps
        if (step % tcfg.eval_every == 0 or last) and is_main:
            with_k = last or (tcfg.eval_avg_k_every > 0 and step % tcfg.eval_avg_k_every == 0)
            log.eval(periodic_eval(cfg, engine, world, step, train_seconds, with_avg_k=with_k))
        if step in snapshot_steps and is_main:
            save_snapshot(out, step, rollout_model)
        if (tcfg.save_every > 0 and step % tcfg.save_every == 0) or last:
            save_checkpoint(out, step, student, optimizer, checkpoint_state())
    bar.close()

    if tcfg.save_final_model and is_main:
        final = out / "final_model"
        tmp = out / f".final_model.tmp-{os.getpid()}"
        rollout_model.save_pretrained(tmp)
        world.tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    # Every rank returns rank 0's summary (and waits for its final model on the way).
    return distributed.broadcast(log.finish(effopd, train_seconds) if is_main else None)
