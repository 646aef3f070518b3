"""Everything a run needs from its world: models, tokenizer, prompt sets and the success criterion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3ForCausalLM

from bench.tinyworld.build import ensure_world
from bench.tinyworld.task import CRITERIA, Problem, sample_problems

VALIDATION_POOL = 1024  # the validation split's fixed pool: EffOPD takes its head, LR selection its tail


@dataclass
class World:
    student_path: Path
    teacher_path: Path
    tokenizer: object
    criterion: str
    train: list[Problem]
    test: list[Problem]
    effopd_val: list[Problem]  # EffOPD's fixed validation prompts
    selection: list[Problem]  # learning-rate selection prompts, disjoint from effopd_val and test


def load_world(cfg) -> World:
    w = cfg.world
    if w.kind != "tiny":
        raise ValueError(f"world.kind={w.kind!r} is not supported yet; use world.kind=tiny "
                         "(paper-scale hub worlds arrive with issue 5)")
    if w.criterion not in CRITERIA:
        raise ValueError(f"world.criterion={w.criterion!r}; choose one of {CRITERIA}")
    half = VALIDATION_POOL // 2
    for key, value, low in (("effopd.val_prompts", cfg.effopd.val_prompts, 1),
                            ("data.selection_prompts", cfg.data.selection_prompts, 0)):
        if not low <= value <= half:
            raise ValueError(f"{key}={value}; must be between {low} and {half} (the validation pool is split in two)")
    student_path, teacher_path = ensure_world(w)
    tokenizer = AutoTokenizer.from_pretrained(student_path)
    pool = sample_problems("validation", VALIDATION_POOL, seed=0, digits=w.digits)
    return World(
        student_path=student_path, teacher_path=teacher_path, tokenizer=tokenizer, criterion=w.criterion,
        train=sample_problems("train", cfg.data.train_prompts, seed=0, digits=w.digits),
        test=sample_problems("test", cfg.data.test_prompts, seed=0, digits=w.digits),
        effopd_val=pool[: cfg.effopd.val_prompts], selection=pool[len(pool) - cfg.data.selection_prompts :],
    )


def load_model(path: Path, trainable: bool) -> Qwen3ForCausalLM:
    model = Qwen3ForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)  # frozen teacher: no grads, no optimizer state
    return model


def check_same_vocabulary(student_tok, teacher_tok, student, teacher) -> None:
    """OPD compares log-probs token by token: both models must share the tokenizer and vocabulary."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        diff = set(student_tok.get_vocab().items()) ^ set(teacher_tok.get_vocab().items())
        raise ValueError(f"student and teacher tokenizers differ ({len(diff)} vocabulary entries, e.g. "
                         f"{sorted(diff)[:3]}); OPD needs a teacher with the student's tokenizer")
    vs, vt = student.get_input_embeddings().num_embeddings, teacher.get_input_embeddings().num_embeddings
    if vs != vt:
        raise ValueError(f"student vocabulary size {vs} != teacher's {vt}; OPD needs identical vocabularies")
