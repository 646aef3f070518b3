"""Prompt templates: how a benchmark's problem text becomes the user message the model sees.

The maths suffix is the paper's upstream evaluation prompt (EffOPD/verl data preparation); the code
templates follow evalplus's own instruction prompts, so code scores stay comparable with its leaderboard.
A template's hash is recorded in every eval summary: two results are comparable only if it matches.
"""

from __future__ import annotations

import hashlib

TEMPLATES: dict[str, str] = {
    # The paper's evaluation prompt: the problem, then the boxed-answer instruction.
    "math_boxed": "{problem} Please reason step by step, and put your final answer within \\boxed{{}}.",
    # evalplus's instruction-model prompt (its codegen "instruction_prefix" + fenced prompt).
    "code_complete": (
        "Please provide a self-contained Python script that solves the following problem in a markdown "
        "code block:\n```python\n{problem}\n```"
    ),
    # The tiny world's prompts are already the model input ("123+456="): no chat wrapper, no suffix.
    "raw": "{problem}",
}


def render(template: str, problem: str) -> str:
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[template].format(problem=problem)


def template_hash(template: str) -> str:
    """Short sha256 of the template text (not its name), so an edited template gets a new hash."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {sorted(TEMPLATES)}")
    return hashlib.sha256(TEMPLATES[template].encode()).hexdigest()[:16]
