"""The pairs the TRL comparison runs: one of our presets and the TRL trainer that does the same job.

Every pair trains on 32 completions per step of at most 64 new tokens, fp32 on the CPU, for the same
number of steps, from the same tiny-world student (and teacher), on the same prompts in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPLETIONS_PER_STEP = 32
MAX_NEW_TOKENS = 64
# Our step-0 and final evaluations run outside the timed steps; these keep their wall-clock small.
LIGHT_EVAL = ["data.test_prompts=32", "data.selection_prompts=0", "trainer.eval_avg_k=1"]


@dataclass(frozen=True)
class Pair:
    name: str
    experiment: str  # our preset (experiments/experiment/<name>.yaml)
    trl_trainer: str  # the TRL class on the other side
    prompts_per_step: int
    samples_per_prompt: int  # our rollout.n, TRL's num_generations (GRPO)
    note: str  # what differs between the two sides, beyond speed

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt


PAIRS: dict[str, Pair] = {p.name: p for p in (
    Pair("opd", "opd", "DistillationTrainer", 32, 1,
         "ours: sampled-token advantage log p_teacher - log p_student in the PPO clipped loss (teacher forward "
         "in the score phase); TRL: full-vocabulary reverse KL (beta=1), teacher forward inside compute_loss"),
    Pair("grpo", "grpo", "GRPOTrainer", 8, 4,
         "both: group-normalised 0/1 task reward, PPO clip 0.2, token-mean (TRL loss_type=dapo), no reference model"),
    Pair("sft", "sft", "SFTTrainer", 32, 1,
         "both: cross-entropy on the completion tokens of the same cached teacher samples (prompt + completion)"),
    Pair("opd_gkd", "opd_gkd", "DistillationTrainer", 32, 1,
         "optional: our full-vocabulary reverse-KL (GKD) loss, the same objective as TRL's beta=1"),
)}
DEFAULT_PAIRS = ("opd", "grpo", "sft")


def parse_pairs(text: str) -> list[Pair]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PAIRS]
    if unknown or not names:
        raise ValueError(f"unknown pair(s) {unknown or text!r}; choose from {', '.join(PAIRS)}")
    return [PAIRS[n] for n in names]


def our_overrides(pair: Pair, steps: int, threads: int, out_dir, extra: list[str] = ()) -> list[str]:
    """Hydra overrides of our run for ``pair`` (``extra``: e.g. another world, for tests)."""
    return [
        f"experiment={pair.experiment}", f"trainer.total_steps={steps}",
        f"trainer.prompts_per_step={pair.prompts_per_step}", f"rollout.n={pair.samples_per_prompt}",
        f"trainer.micro_batch_size={COMPLETIONS_PER_STEP}", f"rollout.max_new_tokens={MAX_NEW_TOKENS}",
        "trainer.eval_every=1000000", "trainer.eval_avg_k_every=0", "trainer.save_every=0",
        "trainer.save_final_model=false", "logging.wandb=disabled", "logging.progress_bar=false",
        f"trainer.threads={threads}",
        "effopd.probe_when_disabled=false",  # a diagnostic TRL has no counterpart for
        *LIGHT_EVAL, *extra, f"trainer.output_dir={out_dir}",
    ]
