"""Paper-scale worlds (``world.kind=hub``): hub or local models, registry benchmarks, math-verify rewards.

Training prompts come from ``data.train_benchmark`` (DeepMath by default, filtered by difficulty) in a
fixed shuffled order; EffOPD's validation prompts and the LR-selection prompts are held out from its tail,
so none of them is ever trained on. The test split is ``data.test_benchmark`` (AIME24 by default). Prompts
are the evals templates wrapped in the student's chat template, exactly as ``python -m evals.run`` builds
them, and rewards use the same maths grader (worker processes with deadlines) as the evals.
"""

from __future__ import annotations

import atexit
import random
from dataclasses import dataclass

from evals.datasets import load_benchmark
from evals.generation import build_prompt, for_batched_generation, use_chat_template

SPLIT_SEED = 20260101  # the fixed shuffle that decides which training rows are held out


@dataclass(frozen=True)
class Prompt:
    uid: str
    prompt: str  # the exact model input (template + chat wrapper)
    answer: str


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise ValueError(f"cannot load the tokenizer of {path!r} ({str(exc)[:200]}). Offline, set "
                         "world.student_path / world.teacher_path to local HF-format folders") from exc
    return for_batched_generation(tok)


def check_paths(world_cfg) -> None:
    for key in ("student_path", "teacher_path"):
        if not getattr(world_cfg, key):
            raise ValueError(f"world.{key} is empty; world.kind=hub needs a hub id or a local HF-format folder")


def split_training_rows(rows: list, n_val: int, n_selection: int, n_train: int) -> tuple[list, list, list]:
    """(train, effopd_val, selection): a fixed shuffle, validation and selection held out from its tail."""
    order = list(rows)
    random.Random(SPLIT_SEED).shuffle(order)
    held = n_val + n_selection
    if held >= len(order):
        raise ValueError(f"{len(order)} training rows cannot hold out effopd.val_prompts={n_val} + "
                         f"data.selection_prompts={n_selection} and still train; lower them or data.min_difficulty")
    val, selection, train = order[len(order) - n_val:], order[len(order) - held:len(order) - n_val], order[:-held]
    return (train[:n_train] if n_train else train), val, selection


def math_scorer(mode: str, workers: int, timeout_s: float):
    """Scorer backed by a grader pool that lives as long as the process (closed at exit)."""
    from evals.graders.pool import GradeItem, GraderPool

    pool = GraderPool(workers=workers, timeout_s=timeout_s).__enter__()
    atexit.register(pool.__exit__, None, None, None)

    def score(problems, texts, truncated) -> list[float]:
        items = [GradeItem(t, p.answer, mode, bool(tr)) for p, t, tr in zip(problems, texts, truncated)]
        return [g.score for g in pool.grade(items)]

    return score


def load_hub_world(cfg):
    from bench.world.base import World

    w, d = cfg.world, cfg.data
    check_paths(w)
    if d.grader not in ("math_verify", "strict"):
        raise ValueError(f"data.grader={d.grader!r}; choose math_verify or strict")
    tok = load_tokenizer(w.student_path)
    chat = use_chat_template(tok, d.chat_template)
    train_set = load_benchmark(d.train_benchmark, d.data_dir or None, d.source)
    test_set = load_benchmark(d.test_benchmark, d.data_dir or None, d.source)
    for loaded in (train_set, test_set):
        if loaded.benchmark.kind != "math":
            raise ValueError(f"benchmark {loaded.benchmark.name!r} is {loaded.benchmark.kind}; hub worlds train "
                             "and test on maths benchmarks (graded by math-verify)")
    rows = [e for e in train_set.examples if float(e.meta.get("difficulty", 0.0)) >= d.min_difficulty]
    train, val, selection = split_training_rows(rows, cfg.effopd.val_prompts, d.selection_prompts, d.train_prompts)
    test = test_set.examples[: d.test_prompts] if d.test_prompts else test_set.examples

    def prompts(examples, template) -> list[Prompt]:
        return [Prompt(e.id, build_prompt(tok, e, template, chat, d.enable_thinking), e.answer) for e in examples]

    return World(student_path=w.student_path, teacher_path=w.teacher_path, tokenizer=tok, criterion=d.grader,
                 train=prompts(train, d.prompt_template), test=prompts(test, d.prompt_template),
                 effopd_val=prompts(val, d.prompt_template), selection=prompts(selection, d.prompt_template),
                 score=math_scorer(d.grader, d.grader_workers, d.grader_timeout_s))
