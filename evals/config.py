"""The eval runner's structured config (``python -m evals.run key=value ...``); a typo'd key fails loudly.

Defaults are the paper's upstream maths protocol: 32 samples at temperature 1.0, top-p 1.0, non-thinking
mode, at most 16,384 new tokens, math-verify on the last ``\\boxed{}``, avg@32 and pass@32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class EvalConfig:
    model: str = MISSING  # HF-format checkpoint folder (a run's final_model/, a tiny-world model) or a hub model id
    revision: str = ""  # hub revision (branch, tag or commit); "" = the default branch
    benchmark: str = "aime24"  # a key of evals.datasets.BENCHMARKS (aime24, math500, humanevalplus, tinyworld...)
    data_dir: str = ""  # benchmark files; "" = $EFFOPD_DATA_DIR, else <repo>/../shared/data
    source: str = "auto"  # "auto" (local file, else hub) | "local" | "hub"
    limit: int = 0  # score only the first `limit` problems (0 = all): smoke runs
    n: int = 32  # samples per problem
    k: int = 0  # k of avg@k / pass@k / maj@k (0 = n); must be <= n
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16384  # a sample that hits it is graded "truncated"
    seed: int = 0  # each fixed chunk of problems samples from seed-derived RNG, so resumed runs match fresh ones
    batch_prompts: int = 4  # problems per generate call (each with its n samples)
    engine: str = "hf"  # a registered rollout engine (core/rollout/registry.py): "hf" | "qwen3_fast" (tiny Qwen3, CPU)
    dtype: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU) | "float32" | "bfloat16"
    device: str = "auto"  # "auto" (cuda when available) | "cpu" | "cuda"
    chat_template: str = "auto"  # "auto" (use the tokenizer's template when it has one) | "on" | "off"
    enable_thinking: bool = False  # Qwen3 chat templates: the paper evaluates in non-thinking mode
    grader: str = ""  # "" = the benchmark's own; maths may override with "strict" or "math_verify"
    grader_workers: int = 2  # maths grading processes (0 = in-process, no deadline: debugging only); code:
    # sandboxes in parallel
    grader_timeout_s: float = 10.0  # wall-clock deadline per graded sample, enforced by the parent
    criterion: str = "answer_in_style"  # tinyworld only: "answer" | "answer_in_style" (three-feature target) |
    # "answer_in_style:<features joined by +>" (the world's target style: answer_in_style:carry for world=flip)
    tiny_n: int = 200  # tinyworld only: test problems (the trainer's periodic eval uses data.test_prompts)
    tiny_digits: int = 3  # tinyworld only: operand digits (world.digits)
    code_timeout_factor: float = 4.0  # code only: per-input time limit = max(min limit, factor x reference time)
    code_min_time_limit_s: float = 1.0  # code only: floor of that limit (evalplus 0.3.1's defaults: 1.0 s, 4x)
    sandbox: str = "auto"  # code only: how generated code is contained (evals/graders/code/sandbox.py): "auto"
    # (namespaces; refuses to run on a machine without them) or "unsafe-rlimits" (rlimits only, for code you trust;
    # the summary's protocol then says so in grader.isolation)
    code_cache_dir: str = ""  # code only: evalplus's ground-truth cache; "" = <repo>/.cache/evalplus
    output_dir: str = ""  # "" = runs/evals/<benchmark>/<model folder or id>
    resume: bool = True  # skip problems whose samples are already in samples.jsonl; refuses when the folder's
    # config.json differs from this config (other samples would be reused under this protocol), listing the keys
    resume_may_change: list[str] = field(default_factory=list)  # keys a resume may change anyway. Never counted:
    # output_dir, resume, progress_bar, grader_workers, limit (chunks stay put) and k (the summary only)
    progress_bar: bool = True


def register_eval_config() -> None:
    cs = ConfigStore.instance()
    if "eval_schema.yaml" not in cs.repo:
        cs.store(name="eval_schema", node=EvalConfig)


def compose_eval_config(overrides: list[str]):
    """The eval config for ``overrides`` outside a Hydra app (tests, scripts)."""
    from hydra import compose, initialize

    register_eval_config()
    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="eval_schema", overrides=overrides)
