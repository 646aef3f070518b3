"""The benchmark registry: one entry per benchmark, everything needed to load, prompt and grade it.

Local files, row counts and sha256 checksums are those of ``shared/data/MANIFEST.md`` (the offline copies
CI uses); the hub ids are the public datasets the same rows come from, used when no local file is present
and a network is. Hub field names were taken from the datasets' cards; a mismatch there fails with an
error naming the missing field (see ``loader._from_hub``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fields:
    """Which column of a row holds what. ``id`` may be empty: rows are then numbered by position."""

    problem: str
    answer: str = ""
    id: str = ""


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # "math" | "code" | "tiny"
    grader: str  # "math_verify" | "strict" | "evalplus" | "tinyworld"
    template: str  # key of evals.datasets.templates.TEMPLATES
    local_file: str = ""  # path under the data directory
    sha256: str = ""
    rows: int = 0
    local_fields: Fields | None = None
    hub_id: str = ""
    hub_config: str | None = None
    hub_split: str = "test"
    hub_fields: Fields | None = None
    hub_answer_after: str = ""  # gold = text after this marker (GSM8K's "#### 18"); "" keeps the field as is
    role: str = "eval"  # "eval" | "train" (DeepMath: the paper's training prompts)
    notes: str = ""
    extra_fields: tuple[str, ...] = field(default_factory=tuple)  # row fields kept in Example.meta


def _math(name, local_file, sha256, rows, local_fields, hub_id, hub_split, hub_fields, **kw) -> Benchmark:
    return Benchmark(name=name, kind="math", grader="math_verify", template="math_boxed", local_file=local_file,
                     sha256=sha256, rows=rows, local_fields=local_fields, hub_id=hub_id, hub_split=hub_split,
                     hub_fields=hub_fields, **kw)


_ARENA = Fields(problem="problem", answer="answer", id="problem_idx")

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    _math("aime24", "math/aime24.jsonl", "1c1004689dbaec0bd43b71f7083cabffefc27716783e19235947dc355031a95c", 30,
          Fields("problem", "answer", "id"), "math-ai/aime24", "test", Fields("problem", "answer", "id")),
    _math("aime25", "math/aime25.jsonl", "b4e273c02d3e7fe1b74b59eae768fc8230bfb0f79539890cb56f4361caac0331", 30,
          Fields("problem", "answer", "id"), "math-ai/aime25", "test", Fields("problem", "answer", "id")),
    _math("hmmt25_feb", "math/hmmt25_feb.jsonl",
          "86825dc3a44cf9fd5fd62c5d6a4ab4afeb8feba1ae47ded20eea5663ec733524", 30,
          Fields("problem", "answer", "id"), "MathArena/hmmt_feb_2025", "train", _ARENA),
    _math("hmmt25_nov", "math/hmmt25_nov.jsonl",
          "7bd6f3f15b689d36a458556fd7daef6f7257022be15f9cf42e2dff9ffb51ddd6", 30,
          Fields("problem", "answer", "id"), "MathArena/hmmt_nov_2025", "train", _ARENA,
          notes="one gold is malformed LaTeX (\\frac{sqrt{7} + 1}{2}); graded gold_unparseable and flagged"),
    _math("math500", "math/math500.jsonl", "a239272930e5202bf1d5275f7fa475a56687c775a61f1354a6d3371bf9dd7a94", 500,
          Fields("problem", "answer", "unique_id"), "HuggingFaceH4/MATH-500", "test",
          Fields("problem", "answer", "unique_id"), extra_fields=("subject", "level")),
    _math("amc23", "math/amc23.jsonl", "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4", 40,
          Fields("problem", "answer", "id"), "math-ai/amc23", "test", Fields("question", "answer", "id"),
          notes="answers are floats such as 27.0"),
    _math("minerva", "math/minerva.jsonl", "e04ec2bc1d8f80a0091b4b1989f1ffb366f3583f5bae381546a066d4ccc26e3d", 272,
          Fields("question", "answer"), "math-ai/minervamath", "test", Fields("question", "answer"),
          notes="some answers use scientific notation (4.5e33)"),
    _math("olympiadbench", "math/olympiadbench.jsonl",
          "8016961fd178845f84b0b6c03afb2c9c8638f7e0b692142608970e5c9faaad2f", 675,
          Fields("question", "answer", "id"), "math-ai/olympiadbench", "test", Fields("question", "answer", "id"),
          notes="$-wrapped LaTeX answers, some with several parts"),
    _math("gsm8k", "math/gsm8k.jsonl", "924bca936485c23376042bc9969b93a9a01fd9c4870c3ce69ec167554e44ef2f", 1319,
          Fields("problem", "answer"), "openai/gsm8k", "test", Fields("question", "answer"),
          hub_config="main", hub_answer_after="####"),
    _math("deepmath", "math/deepmath_10k.jsonl",
          "586e4fcfb47e5c8540cac3a6ea73ce5bcb5acf884bd8a9ce1c4a3705be50ab54", 10303,
          Fields("question", "answer"), "zwhe99/DeepMath-103K", "train", Fields("question", "final_answer"),
          role="train", extra_fields=("difficulty",),
          notes="local file: a 10,303-row sample of the 103K training set; the hub has all of it"),
    Benchmark(name="humanevalplus", kind="code", grader="evalplus", template="code_complete",
              local_file="code/HumanEvalPlus.jsonl.gz",
              sha256="272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101", rows=164,
              local_fields=Fields("prompt", "", "task_id"), hub_id="evalplus/humanevalplus", hub_split="test",
              hub_fields=Fields("prompt", "", "task_id"), extra_fields=("entry_point",)),
    Benchmark(name="mbppplus", kind="code", grader="evalplus", template="code_complete",
              local_file="code/MbppPlus.jsonl",
              sha256="b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad", rows=378,
              local_fields=Fields("prompt", "", "task_id"), hub_id="evalplus/mbppplus", hub_split="test",
              hub_fields=Fields("prompt", "", "task_id"), extra_fields=("entry_point",)),
    # The tiny world's test split is generated, not stored: no file, no hub, nothing to verify.
    Benchmark(name="tinyworld", kind="tiny", grader="tinyworld", template="raw",
              notes="the built-in tiny world's test split (evals.datasets.tinyworld_task), graded by its criterion"),
]}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]
