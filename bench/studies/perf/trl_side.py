"""TRL's side of a pair: the matching TRL 1.16 trainer on the same student, teacher, prompts and batch.

- ``opd`` / ``opd_gkd``: ``trl.DistillationTrainer`` (stable API in 1.16; always on-policy: the student
  samples every completion, so there is no ``lmbda``), ``beta=1.0`` = reverse KL.
- ``grpo``: ``trl.GRPOTrainer`` with our 0/1 task reward as its reward function, ``beta=0`` (no reference).
- ``sft``: ``trl.SFTTrainer`` on the cached teacher samples as prompt / completion pairs.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.studies.perf.deps import require_trl
from bench.studies.perf.measure import measurement
from bench.studies.perf.pairs import Pair
from bench.studies.perf.prepare import pair_config, teacher_samples
from bench.studies.perf.trl_settings import describe, trainer_kwargs
from bench.studies.perf.trl_timing import StepTimer, capture_profiling, phase_split
from bench.train.data import PromptStream
from bench.world import load_model, load_world
from evals.datasets.tinyworld_task import score_response


def build_distillation(trl, args, cfg, world, problems, student):
    from datasets import Dataset

    teacher = load_model(world.teacher_path, trainable=False)
    data = Dataset.from_dict({"prompt": [p.prompt for p in problems]})
    trainer = trl.DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                                      processing_class=world.tokenizer)
    return trainer, None


def build_grpo(trl, args, cfg, world, problems, student):
    from datasets import Dataset

    def tinyworld_task_reward(prompts, completions, problem_index, **_):
        pairs = zip(problem_index, completions, strict=True)
        return [score_response(problems[i], c, world.criterion) for i, c in pairs]

    data = Dataset.from_dict({"prompt": [p.prompt for p in problems], "problem_index": list(range(len(problems)))})
    trainer = trl.GRPOTrainer(model=student, reward_funcs=tinyworld_task_reward, args=args, train_dataset=data,
                              processing_class=world.tokenizer)
    return trainer, None


def build_sft(trl, args, cfg, world, problems, student):
    from datasets import Dataset

    tok, samples = world.tokenizer, teacher_samples(cfg, world).samples
    rows = [(p.prompt, tok.decode([i for i in s["ids"] if i != tok.eos_token_id], skip_special_tokens=True))
            for p in problems for s in samples[p.prompt][: cfg.rollout.n]]
    data = Dataset.from_dict({"prompt": [r[0] for r in rows], "completion": [r[1] for r in rows]})
    trainer = trl.SFTTrainer(model=student, args=args, train_dataset=data, processing_class=tok)
    # SFTTrainer appends EOS to each completion, as our samples end with it (all but truncated ones).
    tokens = sum(sum(t != -100 for t in labels) for labels in trainer.train_dataset["labels"])
    return trainer, tokens


BUILDERS = {"DistillationTrainer": build_distillation, "GRPOTrainer": build_grpo, "SFTTrainer": build_sft}


def logged(history: list[dict], key: str) -> list[float]:
    return [h[key] for h in history if key in h and h[key] is not None]


def run_trl(pair: Pair, steps: int, threads: int, out_dir: Path, extra: list[str] = ()) -> dict:
    """One run of TRL's trainer for ``pair``. Steps/s uses the ``StepTimer`` step times; wall-clock is
    the whole call: world and model loading, dataset and trainer construction, ``train()``."""
    trl = require_trl()
    from transformers.trainer_callback import PrinterCallback

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cfg = pair_config(pair, steps, threads, out_dir, extra)
    world = load_world(cfg)
    problems = PromptStream(world.train, cfg.data.shuffle_seed).next(steps * pair.prompts_per_step)
    config_cls = getattr(trl, pair.trl_trainer.replace("Trainer", "Config"))
    kwargs = trainer_kwargs(pair, cfg, steps)
    args = config_cls(output_dir=str(out_dir), **kwargs)
    student = load_model(world.student_path, trainable=True)
    trainer, tokens = BUILDERS[pair.trl_trainer](trl, args, cfg, world, problems, student)
    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True would print every log dict
    timer = StepTimer()
    trainer.add_callback(timer)
    with capture_profiling() as phases:
        t1 = time.perf_counter()
        trainer.train()
        train_call = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    history = trainer.state.log_history
    if tokens is None:  # on-policy: TRL logs the mean completion length of every step (logging_steps=1)
        tokens = round(sum(logged(history, "completions/mean_length")) * pair.completions_per_step)
    step_total = sum(timer.step_seconds)
    rewards = logged(history, "reward")
    return measurement(
        "trl", pair.name, steps, pair.completions_per_step, timer.step_seconds, wall,
        completion_tokens=tokens, time_split=phase_split(step_total, dict(phases)),
        threads=torch.get_num_threads(), train_call_seconds=round(train_call, 4),
        trl_phases={k: round(v, 4) for k, v in sorted(phases.items())},
        trl_logged_step_time=[round(s, 4) for s in logged(history, "step_time")],
        reward_mean=sum(rewards) / len(rewards) if rewards else None,
        trl_class=f"trl.{pair.trl_trainer}", trl_config_class=f"trl.{config_cls.__name__}",
        trl_settings=describe(config_cls, kwargs),
    )
