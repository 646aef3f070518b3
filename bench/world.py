"""Everything a run needs from its world: models, tokenizer, prompt sets and the success criterion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.evaluation import Scorer, criterion_scorer
from bench.tinyworld.build import ensure_world
from bench.tinyworld.task import CRITERIA, sample_problems

VALIDATION_POOL = 1024  # the validation split's fixed pool: EffOPD takes its head, LR selection its tail


@dataclass
class World:
    """Problems are anything with ``.prompt`` (the exact model input) and what ``score`` needs (tiny-world
    ``Problem``s, or ``bench.hubworld.Prompt`` with a gold answer)."""

    student_path: Path | str  # a folder, or a hub id (kind=hub)
    teacher_path: Path | str
    tokenizer: object
    criterion: str  # name of the success check (tables, logs)
    train: list
    test: list
    effopd_val: list  # EffOPD's fixed validation prompts
    selection: list  # learning-rate selection prompts, disjoint from effopd_val and test
    score: Scorer  # (problem of each row, responses, truncated flags) -> 0/1 scores


def load_world(cfg) -> World:
    w = cfg.world
    if w.kind == "hub":
        from bench.hubworld import load_hub_world  # lazy: the tiny world never needs the evals stack

        return load_hub_world(cfg)
    if w.kind != "tiny":
        raise ValueError(f"world.kind={w.kind!r}; choose 'tiny' (built locally) or 'hub' (paper-scale models)")
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
        score=criterion_scorer(w.criterion),
    )


def load_model(path: Path | str, trainable: bool):
    """fp32 weights from a folder or hub id (any causal LM; the tiny world's are Qwen3)."""
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as exc:
        raise ValueError(f"cannot load model {str(path)!r} ({str(exc)[:200]}). Offline, point world.student_path / "
                         "world.teacher_path at local HF-format folders") from exc
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)  # frozen teacher: no grads, no optimizer state
    return model


def check_same_vocabulary(student_tok, teacher_tok, vs: int, vt: int) -> None:
    """OPD compares log-probs token by token: both models must share the tokenizer and vocabulary size
    (``vs`` / ``vt``: the student's and teacher's embedding rows, or their configs' ``vocab_size``)."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        diff = set(student_tok.get_vocab().items()) ^ set(teacher_tok.get_vocab().items())
        raise ValueError(f"student and teacher tokenizers differ ({len(diff)} vocabulary entries, e.g. "
                         f"{sorted(diff)[:3]}); OPD needs a teacher with the student's tokenizer")
    if vs != vt:
        raise ValueError(f"student vocabulary size {vs} != teacher's {vt}; OPD needs identical vocabularies")
