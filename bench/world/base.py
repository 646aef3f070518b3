"""What a run needs from its world (``World``), and loading its models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from bench.world.evaluation import Scorer


@dataclass
class World:
    """Problems are anything with ``.prompt`` (the exact model input) and what ``score`` needs (tiny-world
    ``Problem``s, or ``bench.world.hub.Prompt`` with a gold answer)."""

    student_path: Path | str  # a folder, or a hub id (kind=hub)
    teacher_path: Path | str
    tokenizer: object
    criterion: str  # name of the success check (tables, logs)
    train: list
    test: list
    effopd_val: list  # EffOPD's fixed validation prompts
    selection: list  # learning-rate selection prompts, disjoint from effopd_val and test
    score: Scorer  # (problem of each row, responses, truncated flags) -> 0/1 scores


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
