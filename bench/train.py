"""The shared trainer: rollout -> score -> loss -> step -> hooks, for every algorithm.

    python -m bench.train experiment=effopd trainer.lr=3e-5 trainer.seed=1

Read it top to bottom: ``train`` is the whole loop; the helpers above it are the phases.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from transformers import AutoTokenizer

from bench.algorithms import LossInputs, LossTotals, ScoredBatch, get_advantage, get_policy_loss
from bench.algorithms.checks import check_algorithm
from bench.algorithms.dapo import informative_groups, overlong_penalty
from bench.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bench.config import register_configs
from bench.data import PromptStream
from bench.effopd import DirectionProbe, EffOPD, ValidationScore
from bench.evaluation import evaluate
from bench.io import atomic_write_text
from bench.logprobs import pick, response_logits, response_logprobs
from bench.rollout import SamplingParams, make_engine
from bench.rollout.teacher_cache import teacher_trajectories_for_run
from bench.runlog import RunLogger
from bench.tinyworld.task import score_response
from bench.world import check_same_vocabulary, load_model, load_world

register_configs()


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
            dist = torch.log_softmax(response_logits(teacher, ids[mb], mask[mb], R), dim=-1)
            logp_parts.append(pick(dist, rollout.response_ids[mb]))
            if full:
                dist_parts.append(dist)
        teacher_logp = torch.cat(logp_parts) * rollout.response_mask
        teacher_dist = torch.cat(dist_parts) if full else None
    if reference is not None:
        ref_logp = torch.cat([response_logprobs(reference, ids[mb], mask[mb], R) for mb in chunks])
    task = torch.tensor([score_response(problems[int(i)], t, world.criterion)
                         for i, t in zip(rollout.prompt_index, rollout.texts)])
    rewards = task + overlong_penalty(rollout.response_mask.sum(1), cfg.rollout.max_new_tokens,
                                      a.overlong_buffer_len, a.overlong_penalty_factor)
    loss_mask = rollout.response_mask
    if a.overlong_filter:
        loss_mask = loss_mask * (~rollout.truncated).float().unsqueeze(1)
    return ScoredBatch(rollout=rollout, teacher_logp=teacher_logp, rewards=rewards, task_rewards=task,
                       teacher_dist=teacher_dist, ref_logp=ref_logp, loss_mask=loss_mask)


def collect_batch(cfg, source, stream: PromptStream, sampling, score, pad_id: int) -> tuple[ScoredBatch, dict]:
    """One step's scored training batch. With DAPO's dynamic sampling, groups whose rewards are all equal
    are dropped and more prompts are drawn until ``prompts_per_step`` groups are kept or
    ``max_gen_batches`` rounds ran (then the step trains on what it kept). Every generated token counts."""
    want, a = cfg.trainer.prompts_per_step, cfg.algorithm

    def one_round() -> ScoredBatch:
        problems = stream.next(want)
        return score(source.generate([p.prompt for p in problems], cfg.rollout.n, sampling), problems)

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
    totals = LossTotals(tokens=lm.sum().item(), sequences=(lm.sum(1) > 0).sum().item(),
                        norm_len=float(a.loss_agg_norm_len or cfg.rollout.max_new_tokens))
    denom = max(totals.tokens, 1.0)
    batch_adv = None if advantage_fn.needs_student_logp else advantage_fn(scored, None, a)
    old_logp = None
    if cfg.trainer.ppo_epochs > 1:
        with torch.no_grad():
            old_logp = torch.cat([response_logprobs(student, ids[mb], mask[mb], R) for mb in chunks])
    stats: dict[str, float] = {"loss": 0.0, "adv_mean": 0.0, "adv_abs_mean": 0.0, "student_logp_mean": 0.0}
    for _ in range(cfg.trainer.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for mb in chunks:
            sub = scored.select(mb)
            dist = torch.log_softmax(response_logits(student, ids[mb], mask[mb], R), dim=-1)
            logp = pick(dist, rollout.response_ids[mb])
            old = old_logp[mb] if old_logp is not None else logp.detach()
            adv = advantage_fn(sub, old, a) if batch_adv is None else batch_adv[mb]
            inputs = LossInputs(logp=logp, old_logp=old, advantages=adv, mask=sub.loss_mask, totals=totals,
                                student_dist=dist if loss_fn.needs_student_distribution else None,
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
        stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.trainer.grad_clip).item()
        optimizer.step()
    n = cfg.trainer.ppo_epochs
    return {k: v / n if k != "grad_norm" else v for k, v in stats.items()}


def periodic_eval(cfg, engine, world, step: int, train_seconds: float, with_avg_k: bool) -> dict:
    """Greedy test accuracy (the table's metric), greedy selection-set accuracy (for LR selection) and,
    on its own cadence, temperature-1 avg@k on the test split. Forked RNGs: training randomness untouched."""
    t0 = time.perf_counter()
    max_new = cfg.rollout.max_new_tokens
    rec = {"step": step, "train_seconds": round(train_seconds, 4)}
    # One greedy batch for both sets: generation cost is dominated by per-token steps, not by batch rows.
    greedy = evaluate(engine, world.test + world.selection, world.criterion, max_new_tokens=max_new).scores
    n_test = len(world.test)
    rec["test/greedy"] = sum(greedy[:n_test]) / n_test
    if world.selection:  # data.selection_prompts=0: a run that takes no part in LR selection skips it
        rec["val/greedy"] = sum(greedy[n_test:]) / len(world.selection)
    if with_avg_k:
        k = cfg.trainer.eval_avg_k
        rec[f"test/avg@{k}"] = evaluate(engine, world.test, world.criterion, n=k, temperature=1.0,
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
    out = Path(tcfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tcfg.threads > 0:
        torch.set_num_threads(tcfg.threads)
    if tcfg.resume not in ("none", "auto"):
        raise ValueError(f"trainer.resume={tcfg.resume!r}; use 'none' or 'auto'")
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    seed_everything(tcfg.seed)

    # --- world, models, engine, optimizer --------------------------------------------------------------
    check_algorithm(cfg)
    world = load_world(cfg)
    student = load_model(world.student_path, trainable=True)
    teacher = reference = None
    if cfg.algorithm.needs_teacher:
        teacher = load_model(world.teacher_path, trainable=False)
        check_same_vocabulary(world.tokenizer, AutoTokenizer.from_pretrained(world.teacher_path), student, teacher)
    if cfg.algorithm.kl_coef > 0:
        reference = load_model(world.student_path, trainable=False)  # the frozen initial student
    engine = make_engine(cfg.rollout.engine, student, world.tokenizer)
    # No sampled-token log-probs from the engine: the update recomputes them (with ppo_epochs == 1 from the
    # training forward itself), and a [B, R, V] logits stack would cost ~1 GB per step at a 152k vocabulary.
    sampling = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens,
                              logprobs=False)
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
            r = evaluate(engine, world.effopd_val, world.criterion, n=cfg.effopd.val_samples,
                         temperature=cfg.effopd.val_temperature, max_new_tokens=cfg.rollout.max_new_tokens,
                         seed=seed)
            return ValidationScore(r.accuracy, r.num_tokens)

        effopd = EffOPD(cfg.effopd, student, validation_scorer, on_weights_changed=engine.sync_weights,
                        seed=tcfg.seed)
    elif cfg.effopd.probe_when_disabled:
        effopd = DirectionProbe(student, cfg.effopd.schedule)

    # --- resume ----------------------------------------------------------------------------------------
    step, train_seconds = 0, 0.0
    ckpt = latest_checkpoint(out) if tcfg.resume == "auto" else None
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["data"])
        if effopd is not None:
            effopd.load_state_dict(state["effopd"])
        set_rng_state(state["rng"])
        step, train_seconds = state["step"], state["train_seconds"]
    log = RunLogger(out, cfg, resume_step=step if ckpt is not None else None)

    def checkpoint_state() -> dict:
        return {"step": step, "train_seconds": train_seconds, "model": student.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "data": stream.state_dict(), "effopd": effopd.state_dict() if effopd else None,
                "rng": rng_state()}

    if step == 0:
        log.eval(periodic_eval(cfg, engine, world, 0, 0.0, with_avg_k=True))

    # --- the loop --------------------------------------------------------------------------------------
    bar = tqdm(total=tcfg.total_steps, initial=step, disable=not cfg.logging.progress_bar, desc=cfg.method)
    while step < tcfg.total_steps:
        t = {"start": time.perf_counter()}
        score_times = []

        def score(rollout, problems):
            t0 = time.perf_counter()
            scored = score_phase(cfg, rollout, problems, teacher, reference, world)
            score_times.append(time.perf_counter() - t0)
            return scored

        scored, batch_info = collect_batch(cfg, source, stream, sampling, score, world.tokenizer.pad_token_id)
        rollout = scored.rollout
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
        mask = rollout.response_mask
        record = {"step": step, "lr": scheduler.get_last_lr()[0], **stats,
                  "reward_mean": scored.task_rewards.float().mean().item(),
                  "response_length": mask.sum(1).float().mean().item(),
                  "truncated_frac": rollout.truncated.float().mean().item(),
                  **batch_info, **timing, "train_seconds": train_seconds}
        if cfg.algorithm.overlong_buffer_len > 0:
            record["shaped_reward_mean"] = scored.rewards.float().mean().item()
        if scored.teacher_logp is not None:
            # Mean over loss tokens of log p_student - log p_teacher: a per-token reverse-KL estimate.
            record["reverse_kl"] = stats["student_logp_mean"] - (
                (scored.teacher_logp * scored.loss_mask).sum() / scored.loss_mask.sum().clamp(min=1)).item()
        if trigger is not None:
            log.effopd(trigger)
            if "accepted_multiplier" in trigger:
                record["effopd/accepted_multiplier"] = trigger["accepted_multiplier"]
        log.step(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward_mean']:.3f}", loss=f"{stats['loss']:.4f}")

        last = step == tcfg.total_steps
        if step % tcfg.eval_every == 0 or last:
            with_k = last or (tcfg.eval_avg_k_every > 0 and step % tcfg.eval_avg_k_every == 0)
            log.eval(periodic_eval(cfg, engine, world, step, train_seconds, with_avg_k=with_k))
        if (tcfg.save_every > 0 and step % tcfg.save_every == 0) or last:
            save_checkpoint(out, step, checkpoint_state())
    bar.close()

    if tcfg.save_final_model:
        final = out / "final_model"
        tmp = out / f".final_model.tmp-{os.getpid()}"
        student.save_pretrained(tmp)
        world.tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    summary = log.finish(effopd, train_seconds)
    return summary


@hydra.main(version_base="1.3", config_path="../experiments", config_name="config")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
