"""The allowed range of every training-config field (bench/config.py), checked at start-up before any model loads.

``bench.train.config_checks.validate_config(cfg)`` is the one place a bad value is caught (it runs ``check_ranges``
here, then the registries' checks, which live above this module): ``python -m bench.train`` calls it first and turns
a ``ConfigError`` into one line naming the key, the value and the allowed range, with exit code 2. Ranges of single
fields live in ``RULES`` (one entry per field; ``tests/bench/test_config_ranges.py`` fails when a field of the
dataclasses has neither a rule nor a reason in ``UNRANGED``); rules between fields, and the registries' own
checks (algorithm, engine, extrapolation method, validation signal, distributed settings), follow in
``validate_config``. Hydra's structured configs already refuse unknown keys and wrong types; this adds the ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any

from omegaconf import OmegaConf

from bench.config import WORLD_ROLES


class ConfigError(ValueError):
    """A config value out of its range: the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    allowed: str  # what the message says is allowed


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def at_least(lo) -> Rule:
    return Rule(lambda v: _number(v) and v >= lo, f"a number >= {lo}")


def above(lo) -> Rule:
    return Rule(lambda v: _number(v) and v > lo, f"a number > {lo}")


def within(lo, hi, *, lo_open=False, hi_open=False) -> Rule:
    def ok(v):
        return _number(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return Rule(ok, f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def one_of(*choices) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def each(rule: Rule, length: int | None = None) -> Rule:
    def ok(v):
        items = list(v) if v is not None else []
        return (length is None or len(items) == length) and all(rule.ok(x) for x in items)
    return Rule(ok, f"{'a list of ' + str(length) if length else 'a list of'} values, each {rule.allowed}")


POSITIVE_INT = at_least(1)
COUNT = at_least(0)
STYLE_FEATURES = ("carry", "sep", "restate")


def _recipe(prefix: str) -> dict[str, Rule]:
    return {f"{prefix}.init": one_of("scratch", "base"), f"{prefix}.style_mix": each(within(0, 1), 3),
            f"{prefix}.steps": COUNT, f"{prefix}.lr": above(0), f"{prefix}.warmup_steps": COUNT,
            f"{prefix}.batch_size": POSITIVE_INT, f"{prefix}.seed": COUNT}


RULES: dict[str, Rule] = {
    # world
    "world.kind": one_of("tiny", "hub"),
    "world.digits": POSITIVE_INT,
    "world.criterion": one_of("answer", "answer_in_style"),
    "world.target_style": Rule(lambda v: len(v) > 0 and all(x in STYLE_FEATURES for x in v) and len(set(v)) == len(v),
                               "a non-empty list of distinct features from " + ", ".join(STYLE_FEATURES)),
    "world.build": COUNT,
    "world.build_roles": Rule(lambda v: len(v) > 0 and all(x in WORLD_ROLES for x in v) and len(set(v)) == len(v),
                              "a non-empty list of distinct roles from " + ", ".join(WORLD_ROLES)),
    **{f"world.arch.{k}": POSITIVE_INT for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                   "num_attention_heads", "num_key_value_heads", "head_dim",
                                                   "max_position_embeddings")},
    **_recipe("world.base"), **_recipe("world.teacher"), **_recipe("world.student"),
    # data
    "data.train_prompts": COUNT,  # world.kind=tiny needs >= 1 (validate_config); hub: 0 = every row
    "data.shuffle_seed": COUNT,
    "data.test_prompts": COUNT,  # world.kind=tiny needs >= 1 (validate_config); hub: 0 = every row
    "data.selection_prompts": COUNT,
    "data.min_difficulty": at_least(0),
    "data.source": one_of("auto", "local", "hub"),
    "data.chat_template": one_of("auto", "on", "off"),
    "data.grader": one_of("math_verify", "strict"),
    "data.grader_workers": COUNT,
    "data.grader_timeout_s": above(0),
    # algorithm (names: their registries, in validate_config)
    "algorithm.clip_ratio_low": within(0, 1, hi_open=True),
    "algorithm.clip_ratio_high": at_least(0),
    "algorithm.loss_agg_norm_len": COUNT,
    "algorithm.rollout_source": one_of("student", "teacher"),
    "algorithm.reward_coef": at_least(0),
    "algorithm.kl_coef": at_least(0),
    "algorithm.gkd_beta": within(0, 1),
    "algorithm.gkd_topk": POSITIVE_INT,
    "algorithm.max_gen_batches": POSITIVE_INT,
    "algorithm.overlong_buffer_len": COUNT,  # and < rollout.max_new_tokens (check_algorithm)
    "algorithm.overlong_penalty_factor": at_least(0),
    # rollout
    "rollout.n": POSITIVE_INT,
    "rollout.temperature": at_least(0),  # 0 = greedy, said explicitly
    "rollout.top_p": within(0, 1, lo_open=True),
    "rollout.max_new_tokens": POSITIVE_INT,
    "rollout.is_correction": one_of("none", "tis"),
    "rollout.is_cap": above(0),
    # trainer
    "trainer.total_steps": POSITIVE_INT,
    "trainer.prompts_per_step": POSITIVE_INT,
    "trainer.micro_batch_size": POSITIVE_INT,
    "trainer.ppo_epochs": POSITIVE_INT,
    "trainer.lr": above(0),
    "trainer.lr_warmup_steps": COUNT,
    "trainer.weight_decay": at_least(0),
    "trainer.betas": each(within(0, 1, hi_open=True), 2),
    "trainer.eps": above(0),
    "trainer.grad_clip": above(0),
    "trainer.seed": COUNT,
    "trainer.threads": COUNT,
    "trainer.eval_every": POSITIVE_INT,
    "trainer.eval_avg_k": POSITIVE_INT,
    "trainer.eval_avg_k_every": COUNT,
    "trainer.save_every": COUNT,
    "trainer.resume": one_of("none", "auto", "fallback"),
    "trainer.straightness_max_host_mb": at_least(0),
    "trainer.logprob_chunk": COUNT,
    "trainer.dist_rollouts": one_of("split", "replicate"),
    "trainer.dist_param_dtype": one_of("fp32", "bf16"),
    # effopd (method, signal, schedule, multipliers: their registries and parsers, in validate_config)
    "effopd.max_tries": POSITIVE_INT,
    "effopd.accept": one_of("gt", "ge"),
    "effopd.val_prompts": POSITIVE_INT,
    "effopd.val_samples": POSITIVE_INT,
    "effopd.val_temperature": at_least(0),
    "effopd.lr_min_factor": within(0, 1, lo_open=True),
    "effopd.lr_max_factor": at_least(1),
    "effopd.lr_backtrack_factor": within(0, 1, lo_open=True),
    # logging
    "logging.wandb": one_of("offline", "online", "disabled"),
}

# Fields without a range of their own, and why (a new field must land in RULES or here: the test checks).
UNRANGED: dict[str, str] = {
    "world.name": "a free label for tables",
    "world.cache_dir": "any folder",
    "world.student_path": "checked against world.kind in validate_config; its existence by the loader",
    "world.teacher_path": "checked against world.kind in validate_config; its existence by the loader",
    "data.train_benchmark": "the benchmark registry (validate_config, world.kind=hub)",
    "data.test_benchmark": "the benchmark registry (validate_config, world.kind=hub)",
    "data.data_dir": "any folder; the loader names a missing file",
    "data.prompt_template": "the template registry (validate_config)",
    "data.enable_thinking": "a boolean",
    "algorithm.name": "the advantage registry (check_algorithm)",
    "algorithm.policy_loss": "the policy-loss registry (check_algorithm)",
    "algorithm.loss_agg": "the loss aggregations (check_algorithm)",
    "algorithm.needs_teacher": "a boolean",
    "algorithm.norm_adv_by_std": "a boolean",
    "algorithm.gkd_divergence": "the divergences (check_algorithm)",
    "algorithm.dynamic_sampling": "a boolean",
    "algorithm.overlong_filter": "a boolean",
    "rollout.engine": "the engine registry (check_rollout)",
    "rollout.hf": "the engine's own settings dataclass checks itself (core/rollout/hf.py)",
    "rollout.vllm": "the engine's own settings dataclass checks itself (core/rollout/vllm_engine.py)",
    "trainer.save_final_model": "a boolean",
    "trainer.eval_cache": "a boolean",
    "trainer.snapshot_steps": "its parser (validate_config)",
    "trainer.resume_may_change": "each entry must name a config key (validate_config)",
    "trainer.straightness": "a boolean",
    "trainer.activation_checkpointing": "a boolean",
    "trainer.dry_run": "a boolean",
    "trainer.output_dir": "Hydra's run folder",
    "effopd.enabled": "a boolean",
    "effopd.method": "the extrapolation registry (check_extrapolation)",
    "effopd.val_signal": "the validation-signal registry (check_extrapolation)",
    "effopd.schedule": "its parser (check_extrapolation)",
    "effopd.multipliers": "its parser (check_extrapolation)",
    "effopd.val_common_random_numbers": "a boolean",
    "effopd.log_direction": "a boolean",
    "effopd.probe_when_disabled": "a boolean",
    "logging.project": "a free W&B project name",
    "logging.progress_bar": "a boolean",
    "method": "a free label for tables",
}


def config_keys(node, prefix: str = "") -> list[str]:
    """Every leaf field of a config dataclass (type or instance) as a dotted key; a nested engine settings block
    listed in ``UNRANGED`` counts as one key."""
    keys = []
    for f in fields(node):
        key = f"{prefix}{f.name}"
        sub = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(sub) and key not in UNRANGED:
            keys += config_keys(sub, key + ".")
        else:
            keys.append(key)
    return keys


def check_rules(cfg) -> None:
    """Every ``RULES`` entry; the first value out of range raises naming key, value and range."""
    for key, rule in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if value is None or not rule.ok(value):
            raise ConfigError(f"{key}={value!r} is out of range: allowed is {rule.allowed}")


def check_world_kind(cfg) -> None:
    w = cfg.world
    if w.kind == "tiny":
        for key in ("student_path", "teacher_path"):
            if w[key]:
                raise ConfigError(f"world.{key}={w[key]!r} is set, but world.kind=tiny builds its own models and "
                                  f"would ignore it: use world.kind=hub (e.g. world=paper_scale) or drop world.{key}")
        for key in ("train_prompts", "test_prompts"):
            if cfg.data[key] < 1:
                raise ConfigError(f"data.{key}={cfg.data[key]} is out of range: the tiny world needs >= 1 prompt "
                                  "(0 means 'every row' only with world.kind=hub)")
    elif not w.student_path:
        raise ConfigError("world.student_path='' with world.kind=hub: name the student (a hub id or a local folder)")


def check_key_names(cfg) -> None:
    """``trainer.resume_may_change`` names config keys (or their parents): a misspelt one would allow nothing."""
    from bench.config import TrainConfig

    keys = config_keys(TrainConfig)
    for name in cfg.trainer.resume_may_change:
        if not any(k == name or k.startswith(name + ".") for k in keys):
            raise ConfigError(f"trainer.resume_may_change names {name!r}, which is not a config key (e.g. "
                              "trainer.total_steps)")


def check_ranges(cfg) -> None:
    """The checks of this module: every field's range, the world kind's rules, the names in resume_may_change.
    ``bench.train.config_checks.validate_config`` runs them first, then the registries' own checks."""
    check_rules(cfg)
    check_world_kind(cfg)
    check_key_names(cfg)
