"""The tiny world as a ``World``: its cached models, character tokenizer and prompt splits."""

from __future__ import annotations

from transformers import AutoTokenizer

from bench.world.base import World
from bench.world.evaluation import criterion_scorer
from bench.world.tiny.build import check_world, ensure_world, world_criterion
from evals.datasets.tinyworld_task import sample_problems

VALIDATION_POOL = 1024  # the validation split's fixed pool: EffOPD takes its head, LR selection its tail


def load_tiny_world(cfg) -> World:
    w = cfg.world
    check_world(w)
    criterion = world_criterion(w)  # the target style included: answer_in_style:carry in the flip world
    half = VALIDATION_POOL // 2
    for key, value, low in (("effopd.val_prompts", cfg.effopd.val_prompts, 1),
                            ("data.selection_prompts", cfg.data.selection_prompts, 0)):
        if not low <= value <= half:
            raise ValueError(f"{key}={value}; must be between {low} and {half} (the validation pool is split in two)")
    student_path, teacher_path = ensure_world(w)
    tokenizer = AutoTokenizer.from_pretrained(student_path)
    pool = sample_problems("validation", VALIDATION_POOL, seed=0, digits=w.digits)
    return World(
        student_path=student_path, teacher_path=teacher_path, tokenizer=tokenizer, criterion=criterion,
        train=sample_problems("train", cfg.data.train_prompts, seed=0, digits=w.digits),
        test=sample_problems("test", cfg.data.test_prompts, seed=0, digits=w.digits),
        effopd_val=pool[: cfg.effopd.val_prompts], selection=pool[len(pool) - cfg.data.selection_prompts :],
        score=criterion_scorer(criterion),
    )
