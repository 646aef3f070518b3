"""Setup of a training run: everything the loop needs, built once, in a fixed order, into one ``Run``.

The order matters for reproducibility (it is the order in which the global RNGs are consumed): seed ->
checks -> world -> student, teacher, reference -> rollout engine -> training rollout source -> optimizer,
scheduler -> prompt stream -> EffOPD hook -> straightness tracker (consumes no RNG).
"""

from __future__ import annotations

import contextlib
import copy
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from bench import distributed
from bench.algorithms.stages import BatchStage, active_batch_stages
from bench.extrapolation import ExtrapolationContext, ExtrapolationHook, get_extrapolation
from bench.extrapolation.effopd import DirectionProbe
from bench.extrapolation.straightness import StraightnessTracker
from bench.train.checkpoint import all_checkpoints
from bench.train.data import PromptStream
from bench.train.phases import EffOPDValidation
from bench.train.snapshots import parse_snapshot_steps
from bench.world import World, check_same_vocabulary, load_model, load_world
from bench.world.teacher_samples import teacher_trajectories_for_run
from core.config_diff import check_unchanged
from core.io import atomic_write_text
from core.rollout import RolloutEngine, SamplingParams, make_engine
from core.run_lock import FolderInUse, FolderLock


@dataclass
class Run:
    """The parts of one training run (``setup`` builds them; the loop reads them and steps the stateful ones)."""

    cfg: object  # the resolved experiment config (bench/config.py)
    out: Path  # trainer.output_dir
    is_main: bool  # rank 0: writes the run's files and logs
    world: object  # bench.world.World: tokenizer, model paths, prompt splits, task score
    student: torch.nn.Module  # trained (FSDP2-sharded under torchrun)
    teacher: torch.nn.Module | None  # frozen; scores distillation algorithms
    reference: torch.nn.Module | None  # the frozen initial student (algorithm.kl_coef > 0)
    rollout_model: torch.nn.Module  # full weights: what the engine samples from and final_model/ exports
    engine: RolloutEngine  # samples from rollout_model: rollouts, evaluations, EffOPD validation
    source: object  # where training rollouts come from: the engine, or cached teacher samples (SFT)
    sampling: SamplingParams  # training rollouts' sampling
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    stream: PromptStream  # training prompts, in data.shuffle_seed order
    effopd: ExtrapolationHook | DirectionProbe | None  # effopd.method's hook (or the direction probe), after each step
    stages: list[BatchStage]  # the algorithm's active batch stages (bench/algorithms/stages.py)
    snapshot_steps: set[int]  # steps whose parameters are saved for bench.studies.analysis
    straightness: StraightnessTracker | None = None  # the path's straightness (trainer.straightness), every step


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_scheduler(cfg, optimizer):
    warmup = cfg.trainer.lr_warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)


@contextlib.contextmanager
def lock_run_folder(cfg):
    """Rank 0 holds the run folder's lock (core/run_lock.py) for the block: two trainers writing one folder would
    interleave their logs. Under torchrun every rank learns rank 0's outcome, so all of them refuse together."""
    distributed.init()  # idempotent: start() joins the same group
    out = Path(cfg.trainer.output_dir)
    lock = refusal = None
    if distributed.is_main():
        try:
            lock = FolderLock(out)
        except FolderInUse as err:
            refusal = str(err)
    refusal = distributed.broadcast(refusal)
    if refusal is not None:
        raise FolderInUse(refusal)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def start(cfg) -> Path:
    """Join the process group (torchrun), check the config, create the run folder, write config.yaml, seed."""
    tcfg = cfg.trainer
    distributed.init()  # torchrun: join the process group (one process: nothing to do)
    distributed.check_config(cfg)  # the rules that depend on the world size
    out = Path(tcfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tcfg.threads > 0:
        torch.set_num_threads(tcfg.threads)
    check_resume_config(cfg, out)
    if distributed.is_main():
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    seed_everything(tcfg.seed)
    return out


# Launch settings a resume may always change: they do not change what the run computes.
RESUME_IGNORES = ("trainer.resume", "trainer.resume_may_change", "trainer.output_dir", "trainer.threads",
                  "trainer.eval_cache", "world.cache_dir", "logging")


def check_resume_config(cfg, out: Path) -> None:
    """``trainer.resume=auto`` over a checkpoint continues the run whose config is ``<out>/config.yaml``: a
    different config refuses (core/config_diff.py), listing the keys, unless ``trainer.resume_may_change`` names
    them; the named changes are printed. Runs before config.yaml is rewritten and before anything loads."""
    stored = out / "config.yaml"
    if cfg.trainer.resume == "none" or not stored.exists() or not all_checkpoints(out):
        return
    changed = check_unchanged(OmegaConf.to_container(OmegaConf.load(stored), resolve=False),
                              OmegaConf.to_container(cfg, resolve=True), what=str(stored),
                              allowed=cfg.trainer.resume_may_change, ignored=RESUME_IGNORES,
                              how_to_allow="trainer.resume_may_change")
    if changed and distributed.is_main():
        print(f"resuming {out} with changed keys: "
              + "; ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in changed.items()), file=sys.stderr)


def load_models(cfg, world) -> tuple:
    """Student (trainable), teacher (when the algorithm scores with it) and reference (kl_coef > 0)."""
    student = load_model(world.student_path, trainable=True)
    if cfg.trainer.activation_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    teacher = reference = None
    if cfg.algorithm.needs_teacher:
        teacher = load_model(world.teacher_path, trainable=False)
        check_same_vocabulary(world.tokenizer, AutoTokenizer.from_pretrained(world.teacher_path),
                              student.get_input_embeddings().num_embeddings,
                              teacher.get_input_embeddings().num_embeddings)
    if cfg.algorithm.kl_coef > 0:
        reference = load_model(world.student_path, trainable=False)  # the frozen initial student
    return student, teacher, reference


def shard_models(cfg, student, teacher, reference) -> torch.nn.Module:
    """The engine's full-weight model: the student itself on one process. Under torchrun, FSDP2 for the models
    that run forward passes on each rank's rows and a full copy for the engine (kept in sync by
    GatheredRollouts); weights load in full on every rank first (no meta-device init)."""
    if distributed.world_size() == 1:
        return student
    rollout_model = copy.deepcopy(student).requires_grad_(False).to(distributed.device())
    for model, trainable in ((student, True), (teacher, False), (reference, False)):
        if model is not None:
            distributed.shard_model(model, trainable, cfg.trainer.dist_param_dtype)
    return rollout_model


def build_engine(cfg, rollout_model, student, tokenizer) -> RolloutEngine:
    """The registered engine ``rollout.engine`` (core/rollout/registry.py), built from its settings block
    ``rollout.<engine>`` (absent: its defaults) and the run's seed."""
    name = cfg.rollout.engine
    engine = make_engine(name, rollout_model, tokenizer, cfg.rollout.get(name), seed=cfg.trainer.seed)
    if distributed.world_size() > 1:
        engine = distributed.GatheredRollouts(engine, rollout_model, student)
    return engine


def build_extrapolation(cfg, student, engine, world, teacher=None, rollout_model=None,
                        optimizer=None, scheduler=None) -> ExtrapolationHook | DirectionProbe | None:
    """The hook that runs after every optimizer step: with ``effopd.enabled`` the registered extrapolation method
    ``effopd.method`` (bench/extrapolation/registry.py; default EffOPD), scored by the validation signal
    ``effopd.val_signal`` when it validates; otherwise the direction probe (``effopd.probe_when_disabled``) or
    nothing. ``rollout_model``: the student's full weights the engine samples from (default: ``student``, as on
    one process); ``teacher``: the run's teacher, lent to a signal that runs it when it holds full weights here."""
    if cfg.effopd.enabled:
        method = get_extrapolation(cfg.effopd.method)
        scorer = None
        if method.needs_validation:
            full = rollout_model if rollout_model is not None else student
            lend = teacher if distributed.world_size() == 1 else None  # FSDP2 shards: a signal loads its own copy
            scorer = EffOPDValidation(cfg, engine, world, model=full, teacher=lend)
        return method.build(ExtrapolationContext(cfg=cfg, model=student, scorer=scorer,
                                                 on_weights_changed=engine.sync_weights, seed=cfg.trainer.seed,
                                                 optimizer=optimizer, scheduler=scheduler))
    if cfg.effopd.probe_when_disabled:
        return DirectionProbe(student, cfg.effopd.schedule)
    return None


def build_straightness(cfg, student) -> StraightnessTracker | None:
    """The straightness tracker (``trainer.straightness``) over the student's attention/MLP parameters, windows
    on ``effopd.schedule``; it also measures the optimizer's own path when an extrapolation hook moves the
    weights (``effopd.enabled``)."""
    tcfg = cfg.trainer
    if not tcfg.straightness:
        return None
    return StraightnessTracker(student, tcfg.total_steps, cfg.effopd.schedule, optimizer_path=bool(cfg.effopd.enabled),
                               max_host_mb=tcfg.straightness_max_host_mb)


def setup(cfg, world: World | None = None) -> Run:
    """Every part of the run, in the order documented at the top of this module. ``world``: one the caller built
    (a benchmark's synthetic prompts, bench/studies/perf/real_vocab_memory.py); default ``load_world(cfg)``."""
    tcfg = cfg.trainer
    out = start(cfg)
    world = world if world is not None else load_world(cfg)
    student, teacher, reference = load_models(cfg, world)
    rollout_model = shard_models(cfg, student, teacher, reference)
    engine = build_engine(cfg, rollout_model, student, world.tokenizer)
    # No sampled-token log-probs from the engine: the update recomputes them (with ppo_epochs == 1 from the
    # training forward itself), and a [B, R, V] logits stack would cost ~1 GB per step at a 152k vocabulary.
    # (Except under is_correction=tis: the engine's own log-probs are the IS denominator.)
    sampling = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens,
                              logprobs=cfg.rollout.is_correction == "tis")
    source = teacher_trajectories_for_run(cfg, world) if cfg.algorithm.rollout_source == "teacher" else engine
    optimizer = torch.optim.AdamW(student.parameters(), lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
                                  weight_decay=tcfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    return Run(cfg=cfg, out=out, is_main=distributed.is_main(), world=world, student=student, teacher=teacher,
               reference=reference, rollout_model=rollout_model, engine=engine, source=source, sampling=sampling,
               optimizer=optimizer, scheduler=scheduler,
               stream=PromptStream(world.train, cfg.data.shuffle_seed),
               effopd=build_extrapolation(cfg, student, engine, world, teacher, rollout_model, optimizer, scheduler),
               stages=active_batch_stages(cfg),
               snapshot_steps=set(parse_snapshot_steps(tcfg.snapshot_steps, tcfg.total_steps)),
               straightness=build_straightness(cfg, student))
