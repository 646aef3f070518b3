"""The shared trainer: rollout -> score -> loss -> step -> hooks, for every algorithm.

    python -m bench.train experiment=effopd trainer.lr=3e-5 trainer.seed=1

Read ``train`` top to bottom: setup (setup.py) -> resume -> the loop (``train_step``, whose phases are in
phases.py, then evaluation, snapshots and checkpoints) -> finish (final model, summary).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from omegaconf import DictConfig
from tqdm import tqdm

from bench import distributed
from bench.config import register_configs
from bench.extrapolation.straightness import extrapolated_layout
from bench.train.checkpoint import agreed_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from bench.train.config_checks import validate_config
from bench.train.dry_run import dry_run
from bench.train.initial_eval import initial_eval
from bench.train.phases import TimedScorer, batch_metrics, collect_batch, periodic_eval, update_phase
from bench.train.runlog import RunLogger
from bench.train.setup import Run, lock_run_folder, setup
from bench.train.snapshots import save_snapshot
from core.faults import crash_point

register_configs()


@dataclass
class Progress:
    """What the loop advances (and a checkpoint restores besides the run's stateful parts)."""

    step: int = 0
    train_seconds: float = 0.0  # rollout + update + EffOPD validation; evaluations and checkpoints excluded
    resumed: bool = False


def train(cfg: DictConfig) -> dict:
    """One training run; every rank returns rank 0's summary."""
    validate_config(cfg)  # before the dry run, the lock and the run folder: a bad value changes nothing on disk
    if cfg.trainer.dry_run:
        return dry_run(cfg)
    with lock_run_folder(cfg):  # held to the end; a second trainer on this folder refuses before loading models
        return run_loop(setup(cfg))


def run_loop(run: Run) -> dict:
    """Resume, train to ``trainer.total_steps`` and finish; returns rank 0's summary on every rank."""
    cfg, tcfg = run.cfg, run.cfg.trainer
    progress = resume(run)
    log = RunLogger(run.out, cfg, resume_step=progress.step if progress.resumed else None) if run.is_main else None
    if progress.step in run.snapshot_steps and run.is_main:  # rollout_model: the full weights on every world size
        save_snapshot(run.out, progress.step, run.rollout_model)
    if progress.step == 0 and run.is_main:  # evaluation reads the engine's full copy: no collectives, rank 0 alone
        log.eval(initial_eval(cfg, run.engine, run.world))  # cached per student (bench/train/initial_eval.py)

    bar = tqdm(total=tcfg.total_steps, initial=progress.step,
               disable=not (cfg.logging.progress_bar and run.is_main), desc=cfg.method)
    while progress.step < tcfg.total_steps:
        record, trigger = train_step(run, progress)
        step = progress.step
        if run.is_main:
            if trigger is not None:
                log.effopd(trigger)
            log.step(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward_mean']:.3f}", loss=f"{record['loss']:.4f}")

        last = step == tcfg.total_steps
        if (step % tcfg.eval_every == 0 or last) and run.is_main:
            with_k = last or (tcfg.eval_avg_k_every > 0 and step % tcfg.eval_avg_k_every == 0)
            log.eval(periodic_eval(cfg, run.engine, run.world, step, progress.train_seconds, with_avg_k=with_k))
        if step in run.snapshot_steps and run.is_main:
            save_snapshot(run.out, step, run.rollout_model)
        if (tcfg.save_every > 0 and step % tcfg.save_every == 0) or last:
            save_checkpoint(run.out, step, run.student, run.optimizer, checkpoint_state(run, progress))
    bar.close()
    return finish(run, progress, log)


def train_step(run: Run, progress: Progress) -> tuple[dict, dict | None]:
    """One optimizer step: collect a scored batch, update, sync the engine, run the EffOPD hook. Advances
    ``progress``; returns the step's record and EffOPD's trigger record (``None`` when it did not fire)."""
    cfg = run.cfg
    t = {"start": time.perf_counter()}
    score = TimedScorer(cfg, run.teacher, run.reference, run.world)
    scored, batch_info = collect_batch(cfg, run.source, run.stream, run.sampling, score,
                                       run.world.tokenizer.pad_token_id, step=progress.step, stages=run.stages)
    t["score"] = time.perf_counter()
    t["generate"] = t["score"] - score.seconds  # generation and scoring interleave under dynamic sampling
    stats = update_phase(cfg, run.student, run.optimizer, scored)
    crash_point("step", progress.step + 1)  # tests only (core/faults.py): a kill after the update, before any log
    run.scheduler.step()
    run.engine.sync_weights()
    progress.step += 1
    t["update"] = time.perf_counter()
    tracker = run.straightness  # a diagnostic: its seconds are not counted in any phase nor in train_seconds
    if tracker is not None:
        tracker.after_update(progress.step, run.student)  # the optimizer's own endpoint, before any jump
    hook_start = time.perf_counter()
    trigger = run.effopd.after_step(progress.step) if run.effopd is not None else None
    t["validation"] = t["update"] + time.perf_counter() - hook_start
    straightness = tracker.after_step(progress.step, run.student) if tracker is not None else {}

    timing = {f"time/{k}": t[k] - t[prev] for prev, k in
              (("start", "generate"), ("generate", "score"), ("score", "update"), ("update", "validation"))}
    progress.train_seconds += t["validation"] - t["start"]
    batch_info = {k: int(v) for k, v in distributed.sum_dict_over_ranks(batch_info).items()}  # token counts
    record = {"step": progress.step, "lr": run.scheduler.get_last_lr()[0], **stats,
              **batch_metrics(cfg, scored, stats, run.stages), **batch_info, **timing,
              "train_seconds": progress.train_seconds, **straightness}
    if trigger is not None and "accepted_multiplier" in trigger:
        record["effopd/accepted_multiplier"] = trigger["accepted_multiplier"]
    return record, trigger


def resume(run: Run) -> Progress:
    """``trainer.resume=auto``: restore the latest checkpoint in the run folder once its manifest check passes
    (``fallback``: the newest that passes), at any world size (it reshards
    model, optimizer and EffOPD anchor); otherwise, or when there is none, start at step 0."""
    ckpt = agreed_checkpoint(run.out, run.cfg.trainer.resume)
    if ckpt is None:
        return Progress()
    effopd = run.effopd
    layout = effopd.state_dict()["anchor"] if effopd else extrapolated_layout(run.student)  # of saved tensor dicts
    state = load_checkpoint(ckpt, run.student, run.optimizer, layout)
    run.scheduler.load_state_dict(state["scheduler"])
    run.stream.load_state_dict(state["data"])
    if effopd is not None and state["effopd"] is not None:
        effopd.load_state_dict(state["effopd"])
    if run.straightness is not None:
        run.straightness.load_state_dict(state.get("straightness"), step=state["step"])
    set_rng_state(state["rng"])
    run.engine.sync_weights()  # the engine's full copy (torchrun) follows the loaded weights
    return Progress(step=state["step"], train_seconds=state["train_seconds"], resumed=True)


def checkpoint_state(run: Run, progress: Progress) -> dict:
    """Everything but model and optimizer (those go in through DCP's get_state_dict)."""
    return {"step": progress.step, "train_seconds": progress.train_seconds, "scheduler": run.scheduler.state_dict(),
            "data": run.stream.state_dict(), "effopd": run.effopd.state_dict() if run.effopd else None,
            "straightness": run.straightness.state_dict() if run.straightness else None}


def finish(run: Run, progress: Progress, log: RunLogger | None) -> dict:
    """Export the final model (``trainer.save_final_model``: the full weights in HF format, swapped in
    atomically) and return rank 0's summary on every rank (which waits for the export on the way)."""
    if run.cfg.trainer.save_final_model and run.is_main:
        final = run.out / "final_model"
        tmp = run.out / f".final_model.tmp-{os.getpid()}"
        run.rollout_model.save_pretrained(tmp)
        run.world.tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    straightness = run.straightness.summary() if run.straightness is not None else None  # collective: all ranks
    return distributed.broadcast(log.finish(run.effopd, progress.train_seconds, straightness) if run.is_main else None)
