"""TRL configs for the comparison, derived from our composed config, and their record.

TRL's CPU-hostile defaults are switched off: ``bf16=True`` (on a CPU-only machine TRL 1.16 refuses to
start with it unless ``use_cpu=True``), gradient checkpointing (``activation_checkpointing``, the
transformers 5.x name; ``gradient_checkpointing`` is its deprecated alias), vLLM, reporting, tqdm and
checkpoint saving. Optimiser, LR schedule, clipping and sampling follow our config.
"""

from __future__ import annotations

import dataclasses

from bench.studies.perf.pairs import COMPLETIONS_PER_STEP, Pair


def common_kwargs(cfg, steps: int) -> dict:
    t = cfg.trainer
    return {
        "use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False,
        "report_to": "none", "logging_steps": 1, "disable_tqdm": True, "save_strategy": "no",
        "dataloader_pin_memory": False, "max_steps": steps,
        "per_device_train_batch_size": COMPLETIONS_PER_STEP, "gradient_accumulation_steps": 1,
        "optim": "adamw_torch", "learning_rate": t.lr, "lr_scheduler_type": "constant", "warmup_steps": 0,
        "max_grad_norm": t.grad_clip, "adam_beta1": t.betas[0], "adam_beta2": t.betas[1],
        "adam_epsilon": t.eps, "weight_decay": t.weight_decay, "seed": t.seed,
        "shuffle_dataset": False,  # the dataset is already in our prompt stream's order
    }


def sampling_kwargs(cfg) -> dict:
    r = cfg.rollout
    return {"max_completion_length": r.max_new_tokens, "temperature": r.temperature, "top_p": r.top_p,
            "top_k": 0, "use_vllm": False}


def trainer_kwargs(pair: Pair, cfg, steps: int) -> dict:
    """The config keyword arguments of ``pair``'s TRL trainer."""
    a = cfg.algorithm
    kw = common_kwargs(cfg, steps)
    if pair.trl_trainer == "DistillationTrainer":
        return {**kw, **sampling_kwargs(cfg), "beta": 1.0}  # 1.0 = reverse KL(student || teacher)
    if pair.trl_trainer == "GRPOTrainer":
        return {**kw, **sampling_kwargs(cfg), "num_generations": pair.samples_per_prompt, "beta": 0.0,
                "num_iterations": cfg.trainer.ppo_epochs, "epsilon": a.clip_ratio_low,
                "epsilon_high": a.clip_ratio_high, "loss_type": "dapo",
                "scale_rewards": "group" if a.norm_adv_by_std else "none"}
    if pair.trl_trainer == "SFTTrainer":
        return {**kw, "packing": False, "completion_only_loss": True}
    raise ValueError(f"no TRL settings for {pair.trl_trainer}")


# Declared ``None`` defaults that TRL / transformers resolve in ``__post_init__``: what they become.
RESOLVED_DEFAULTS = {
    "bf16": "None -> True unless fp16 (TRL); on a CPU-only machine that refuses to start without use_cpu=True",
    "activation_checkpointing": "None -> gradient_checkpointing, which TRL defaults to True",
    "disable_tqdm": "None -> False unless the log level is above WARN",
    "epsilon_high": "None -> epsilon (symmetric clipping)",
    "completion_only_loss": "None -> True for prompt / completion datasets",
}


def field_default(config_cls, name: str):
    for f in dataclasses.fields(config_cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return None
    raise KeyError(f"{config_cls.__name__} has no field {name!r}")


def describe(config_cls, kwargs: dict) -> dict:
    """Every setting we pass: ``non_default`` (differs from the class's declared default) and
    ``explicit_default`` (set to its default, for the record)."""
    out = {"non_default": {}, "explicit_default": {}}
    for k, v in kwargs.items():
        d = field_default(config_cls, k)
        bucket = "explicit_default" if d == v else "non_default"
        if d is None and k in RESOLVED_DEFAULTS:
            d = RESOLVED_DEFAULTS[k]
        out[bucket][k] = {"value": v, "trl_default": d} if bucket == "non_default" else v
    return out
