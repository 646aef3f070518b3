"""Structured (dataclass) configs for every experiment, registered with Hydra's ConfigStore.

Every field is documented where it is declared. The YAML files under ``experiments/`` only override these
defaults, so a typo in a key or a value of the wrong type fails loudly with Hydra's own message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from core.rollout import HFSettings, VLLMSettings


@dataclass
class ArchConfig:
    """Shape of a tiny Qwen3 model (``transformers.Qwen3ForCausalLM``)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32  # >= 32: vLLM's CPU backend rejects 16
    max_position_embeddings: int = 128


@dataclass
class RecipeConfig:
    """How one tiny-world model is trained by supervised learning (cached by the hash of this recipe)."""

    init: str = "scratch"  # "scratch" (random init) or "base" (start from the world's base model)
    style_mix: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Probability that each style feature (carry, sep, restate) is in its target form, per example."""
    steps: int = 1000  # optimizer steps
    lr: float = 3e-3  # peak AdamW learning rate (linear warm-up, cosine decay to 10%)
    warmup_steps: int = 50
    batch_size: int = 64  # sequences per step
    seed: int = 0


WORLD_ROLES = ("base", "teacher", "student")  # a tiny world's models, parents first


@dataclass
class WorldConfig:
    """The world a run lives in: task, tokenizer, teacher and student.

    ``kind=tiny`` builds everything locally and caches it. ``kind=hub`` names paper-scale Hugging Face
    models (or local paths) in ``student_path`` / ``teacher_path``.
    """

    kind: str = "tiny"  # "tiny" | "hub"
    name: str = "style"  # label used in tables
    digits: int = 3  # operand digits of the addition task
    criterion: str = "answer_in_style"  # "answer" or "answer_in_style" (see evals.datasets.tinyworld_task)
    target_style: list[str] = field(default_factory=lambda: ["carry", "sep", "restate"])
    """Tiny worlds: the style features (carry, sep, restate) the teacher's style writes in their new form; the
    ``answer_in_style`` criterion asks for exactly this style, and the build reports measure the share of
    responses in it. Default: all three (the style world); the flip world's teacher changes ``carry`` only."""
    build: int = 0
    """Tiny worlds: which build of the world (a random factor). Build b trains every role (base, teacher,
    student) with its recipe's seed + 1000 * b, so each build is its own cached model set; 0 = the recipes'
    own seeds (the models every pinned number comes from)."""
    build_roles: list[str] = field(default_factory=lambda: list(WORLD_ROLES))
    """Tiny worlds: the roles ``build`` re-seeds. A role left out keeps its recipe's own seed in every build, so
    all builds share its cached model (and the time to train it): e.g. ``[student]`` varies only the student's
    seed over one base and one teacher. Build 0 is the same whatever this says."""
    arch: ArchConfig = field(default_factory=ArchConfig)
    base: RecipeConfig = field(default_factory=RecipeConfig)  # pretrained base (used when init == "base")
    teacher: RecipeConfig = field(default_factory=RecipeConfig)
    student: RecipeConfig = field(default_factory=RecipeConfig)
    cache_dir: str = "${oc.env:EFFOPD_CACHE_DIR,.cache/effopd-bench}"  # built models live here
    student_path: str = ""  # kind=hub: hub id or local path of the student
    teacher_path: str = ""  # kind=hub: hub id or local path of the teacher


@dataclass
class DataConfig:
    """Where prompts come from and how batches are drawn."""

    train_prompts: int = 4096  # size of the fixed training prompt pool (tiny world)
    shuffle_seed: int = 0  # data order; the same for every method so comparisons are paired
    test_prompts: int = 200  # held-out test prompts scored by periodic evaluation
    selection_prompts: int = 100  # validation prompts scored greedily at each eval for learning-rate selection
    # (disjoint from EffOPD's); 0 skips them in runs that take no part in a sweep
    # --- world.kind=hub only: prompts from the evals benchmark registry (evals/datasets/registry.py) ---
    train_benchmark: str = "deepmath"  # training prompts; EffOPD validation and LR selection take held-out rows
    min_difficulty: float = 0.0  # keep training rows with meta difficulty >= this (DeepMath: 6 = "level >= 6")
    test_benchmark: str = "aime24"  # periodic eval; test_prompts caps it (0 = all rows)
    data_dir: str = ""  # benchmark files ("" = $EFFOPD_DATA_DIR, else ../shared/data); source: evals loader
    source: str = "auto"  # "auto" (local file, else hub) | "local" | "hub"
    prompt_template: str = "math_boxed"  # evals.datasets.templates: the paper's "Please reason step by step..."
    chat_template: str = "auto"  # "auto" | "on" | "off": wrap prompts in the student tokenizer's chat template
    enable_thinking: bool = False  # Qwen3 chat templates: the paper trains and evaluates in non-thinking mode
    grader: str = "math_verify"  # task reward and eval grader: "math_verify" | "strict"
    grader_workers: int = 2  # grading processes (evals.graders.pool); 0 = in-process
    grader_timeout_s: float = 10.0  # per-sample grading deadline (a timeout scores 0)


@dataclass
class AlgorithmConfig:
    """The registered advantage function and policy loss that define an algorithm, and their options.

    Presets: ``experiments/algorithm/{opd,opd_gkd,grpo,dapo,sft}.yaml``.
    """

    name: str = "opd"  # advantage in bench.algorithms.registry: opd | grpo | sft (or any registered one)
    policy_loss: str = "ppo_clip"  # policy loss in bench.algorithms.registry: ppo_clip | nll | gkd
    clip_ratio_low: float = 0.2  # PPO clip: ratio >= 1 - low
    clip_ratio_high: float = 0.2  # PPO clip: ratio <= 1 + high (DAPO's clip-higher: 0.28)
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum-norm (Dr. GRPO)
    loss_agg_norm_len: int = 0  # seq-mean-token-sum-norm's constant length; 0 = rollout.max_new_tokens
    needs_teacher: bool = True  # load and run the frozen teacher for scoring (OPD, GKD)
    rollout_source: str = "student"  # "student" (on-policy) | "teacher": cached teacher samples (SFT)
    reward_coef: float = 0.0  # OPD: add reward_coef * task reward to every token's advantage (0 = pure OPD)
    norm_adv_by_std: bool = True  # GRPO: divide group-centred rewards by the group std (False = Dr. GRPO)
    kl_coef: float = 0.0  # KL(student || reference) penalty (k3 estimator) in ppo_clip; > 0 loads a frozen
    # copy of the initial student as reference (recent GRPO practice: 0)
    gkd_divergence: str = "reverse_kl"  # gkd loss: reverse_kl | forward_kl | jsd | topk_forward_kl
    gkd_beta: float = 0.5  # gkd jsd interpolation, TRL's convention (0 -> forward KL, 1 -> reverse KL)
    gkd_topk: int = 8  # gkd topk_forward_kl: teacher tokens kept per position
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal, resample until the
    # step has trainer.prompts_per_step informative groups
    max_gen_batches: int = 4  # dynamic sampling: cap on generation rounds per step (then train on what is kept)
    overlong_buffer_len: int = 0  # DAPO soft overlong punishment over the last L tokens before
    # rollout.max_new_tokens (0 = off)
    overlong_penalty_factor: float = 1.0  # the punishment reached at rollout.max_new_tokens
    overlong_filter: bool = False  # DAPO: truncated responses (no EOS) contribute no loss


@dataclass
class RolloutConfig:
    """Sampling for training rollouts.

    Each rollout engine owns the dataclass of its options, next to its code in core/rollout/, and registers it
    with ``register_engine(name, settings_cls)``; its config block here is a field named after the engine.
    """

    engine: str = "hf"  # a registered engine (core/rollout/registry.py): "hf" (HF generate), "qwen3_fast" (Qwen3
    # on CPU only, bit-identical to hf, faster) or "vllm" (an in-process vllm.LLM, core/rollout/vllm_engine.py:
    # GPUs, or CPU in .venv-vllm). Its options are the block of the same name below (ignored by other engines)
    n: int = 1  # samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    hf: HFSettings = field(default_factory=HFSettings)  # engine=hf: rollout.hf.static_cache (core/rollout/hf.py)
    vllm: VLLMSettings = field(default_factory=VLLMSettings)  # engine=vllm: rollout.vllm.kv_cache_memory_bytes,
    # gpu_memory_utilization, tensor_parallel_size, dtype, ... (each documented in core/rollout/vllm_engine.py)
    is_correction: str = "none"  # "none" | "tis": truncated importance weights min(pi_trainer / pi_rollout,
    # is_cap) on the ppo_clip loss, for the engine/trainer mismatch (needs temperature 1 and top_p 1)
    is_cap: float = 2.0  # TIS cap C


@dataclass
class TrainerConfig:
    """The shared loop: steps, optimizer, evaluation cadence, checkpoints."""

    total_steps: int = 50  # optimizer steps
    prompts_per_step: int = 64  # prompts per step (x rollout.n sequences)
    micro_batch_size: int = 64  # sequences per forward/backward (gradient accumulation above it)
    ppo_epochs: int = 1  # passes over each rollout batch; 1 = exactly on-policy (no extra forward)
    lr: float = 2e-5  # AdamW learning rate
    lr_warmup_steps: int = 0  # linear warm-up steps, then constant
    weight_decay: float = 0.0  # AdamW decoupled weight decay (0: self-distillation leaves weights unchanged)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm
    seed: int = 0  # sampling / init seed of this run
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    eval_every: int = 1  # periodic test evaluation cadence (steps); step 0 is always evaluated
    eval_avg_k: int = 4  # temperature-1 samples per test prompt for avg@k
    eval_avg_k_every: int = 25  # avg@k is costlier: its own cadence (0 = only at steps 0 and the end)
    eval_cache: bool = True  # tiny worlds: read the step-0 evaluation from world.cache_dir when an identical
    # one (same student weights, prompts, settings; bench/train/initial_eval.py) was already computed
    save_every: int = 0  # checkpoint cadence in steps; 0 = only at the end
    resume: str = "none"  # "none" | "auto" (continue from the latest checkpoint in the output dir, once its
    # manifest check passes) | "fallback" (from the newest checkpoint that passes it, each skipped one said)
    resume_may_change: list[str] = field(default_factory=list)  # trainer.resume=auto refuses a config that differs
    # from the run folder's config.yaml, listing the keys, except in these (dotted keys or their parents), e.g.
    # [trainer.total_steps] to extend a run. Launch settings never count: trainer.resume, trainer.output_dir,
    # trainer.threads, world.cache_dir, logging.*
    save_final_model: bool = True  # write the final student in HF format
    snapshot_steps: str = ""  # parameter snapshots for bench.studies.analysis: "" = off; "+"-joined "pow2"
    # (0, 1, 2, 4, ...), "every:K", "at:S1,S2"; step 0 and the final step always; only the 2-D attention/MLP
    # weights and the input embedding, rank 0, atomic safetensors in <output_dir>/snapshots/
    straightness: bool = True  # measure how straight the run's path over the attention/MLP parameters is
    # (bench/extrapolation/straightness.py): per-step norms in metrics.jsonl; each effopd.schedule window's cosine
    # with the final Delta W and with the previous window, the first 10% of steps' share of Delta W and the
    # chord-to-arc ratio in summary.json's "straightness" (also over the optimizer's own steps when a hook
    # extrapolates). No validation, no RNG; excluded from train_seconds
    straightness_max_host_mb: float = 2048.0  # cap on its CPU copies of those parameters ((3 + K) float32 copies,
    # twice that with an extrapolation hook; K = trigger steps in the run): above it the measure is skipped, with
    # a note in summary.json (paper-scale models: raise it knowingly); 0 = no cap
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (HF gradient
    # checkpointing, non-reentrant): activation memory of one layer instead of all; ~30% more compute
    logprob_chunk: int = 0  # > 0: log-probs over this many response positions at a time (lm_head + log-softmax
    # recomputed in backward), so [B, R, V] fp32 logits never exist at once; 0 = one pass (exact old path).
    # GKD losses need the whole student/teacher distribution and always take the one-pass path.
    dry_run: bool = False  # check config, model configs and tokenizers (no weights), print sizes and memory; exit
    output_dir: str = "${hydra:runtime.output_dir}"
    # distributed: torchrun runs only (bench/distributed.py, README "Scaling out"); one process ignores these
    dist_rollouts: str = "split"  # "split": each rank samples only its slice of the step's prompts (and of
    # EffOPD's validation prompts) from a per-rank seed: generation scales with ranks, but the samples differ
    # from a one-process run. "replicate": every rank samples the whole global batch with the shared RNG and
    # keeps its slice: exactly the one-process samples at world-size times the generation cost (the tiny-world
    # equivalence mode the distributed tests use)
    dist_param_dtype: str = "fp32"  # "bf16": FSDP2 MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)
    # for student and teacher on CUDA; CPU runs keep fp32


@dataclass
class EffOPDConfig:
    """EffOPD extrapolation hook, and the block every registered extrapolation method reads.
    Defaults reproduce the official implementation."""

    enabled: bool = False  # run the extrapolation hook ``method`` after every optimizer step (any algorithm)
    method: str = "effopd"  # the registered extrapolation method built when enabled (bench/extrapolation/registry.py,
    # ``register_extrapolation``): "effopd" (the paper's, bench/extrapolation/effopd.py) or any registered one
    val_signal: str = "accuracy"  # the registered validation signal that scores the base point and each candidate
    # (bench/extrapolation/validation.py; higher is better, accept rule unchanged): "accuracy" (official: task
    # accuracy of val_samples samples per prompt at val_temperature), "teacher_loglik" (the student's mean per-token
    # log-likelihood of the teacher's val_samples samples per prompt at val_temperature, generated once per run and
    # cached; no generation, no verifier) or "reverse_kl" (minus the mean per-token log p_student - log p_teacher on
    # the student's own val_samples samples per prompt at val_temperature; no verifier)
    schedule: str = "pow2"  # trigger steps: "pow2" (1, 2, 4, 8, ...), "every:K", or both: "pow2+every:K"
    multipliers: str = "linear"  # candidates theta + m*Delta with m = 2k ("linear", official) or 2^k ("geometric")
    max_tries: int = 5  # candidates per trigger
    accept: str = "gt"  # accept a candidate when score "gt" (strictly greater, official) or "ge" best so far
    val_prompts: int = 50  # fixed validation prompts (training distribution, disjoint from test)
    val_samples: int = 1  # samples per validation prompt
    val_temperature: float = 1.0  # 1.0 = sampled (the official example); 0 = greedy (verl's val_kwargs default)
    val_common_random_numbers: bool = False  # reuse one sampling seed for the base and all candidates of a
    # trigger (less noisy comparisons); off = fresh sampling noise per evaluation, as the official code
    log_direction: bool = True  # log cosine between consecutive trigger windows (keeps one extra copy of Delta)
    lr_min_factor: float = 0.1  # method=window_lr only: bounds on the learning rate it steers, as multiples of
    lr_max_factor: float = 30.0  # trainer.lr (bench/extrapolation/window_lr.py); 0 < min <= 1 <= max
    lr_backtrack_factor: float = 0.5  # method=window_lr only: the LR's factor when the step back (m = -1/2) is
    # accepted; 1 = a step back moves the weights but leaves the LR (one noisy window then costs no LR)
    probe_when_disabled: bool = True  # runs without EffOPD still log the direction diagnostic (no validation)


@dataclass
class LoggingConfig:
    wandb: str = "offline"  # "offline" | "online" | "disabled"
    project: str = "effopd-bench"
    progress_bar: bool = True


@dataclass
class TrainConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    data: DataConfig = field(default_factory=DataConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    effopd: EffOPDConfig = field(default_factory=EffOPDConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    method: str = MISSING  # label of this run in tables (set by the experiment preset)


def register_configs() -> None:
    cs = ConfigStore.instance()
    if "train_schema.yaml" not in cs.repo:
        cs.store(name="train_schema", node=TrainConfig)


def compose_config(overrides: list[str]):
    """The resolved experiment config for ``overrides``, outside a Hydra app (CLI helpers, tests)."""
    from hydra import compose, initialize_config_dir

    from core.paths import EXPERIMENTS_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(EXPERIMENTS_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
