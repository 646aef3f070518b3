"""Build (train and cache) the tiny world's base, teacher and student: real Qwen3 models, HF safetensors.

Each model is trained by supervised learning on rendered solutions and cached under
``<cache_dir>/model-<hash of its recipe, its parent's recipe, the architecture and the task>``, so a
changed recipe rebuilds and an unchanged one is reused (also across worlds that share a recipe).
``world.build`` = b trains every role with its recipe's seed + 1000 * b: the hashed recipe changes with the
build, so each build is its own set of cached models (build 0 = the recipes' own seeds).

A model's ``build_report.json`` measures it on the test split once, for every solution style (a model is
shared by the worlds that have its recipe, and worlds differ in their target style); ``world_view`` reads a
world's numbers out of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from bench.algorithms.logprobs import response_logprobs
from bench.config import WORLD_ROLES
from bench.world.digest import model_digest, world_status
from bench.world.evaluation import criterion_scorer, evaluate_scorers
from bench.world.tiny.tokenizer import build_char_tokenizer
from core.io import atomic_write_json, file_lock
from core.numerics import check_profile, profile, profile_env
from core.rollout import HFRolloutEngine
from evals.datasets.tinyworld_task import (
    CRITERIA,
    FEATURES,
    STYLES,
    Style,
    criterion_name,
    detect_style,
    render_solution,
    sample_problems,
    split_of,
)

REPORT = "build_report.json"
# Every model trains on one thread, whatever the machine: ATen splits reductions by thread count, so another
# count is another world (and two one-thread trainings side by side beat one two-thread training anyway).
BUILD_THREADS = 1
BUILD_SEED_STRIDE = 1000  # build b trains each role with seed + BUILD_SEED_STRIDE * b
MEASURE_MODES = ("greedy", "sampled_avg@4")
UNDETECTED = "none"  # the style key of responses that follow no style consistently


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else asdict(cfg)


def world_build(world) -> int:
    """``world.build`` (0 for a config that does not name one)."""
    return int(getattr(world, "build", 0) or 0)


def check_world(world) -> None:
    """Start-up checks of a tiny world's criterion, target style and build; each error names the key, the
    value and the fix."""
    if world.criterion not in CRITERIA:
        raise ValueError(f"world.criterion={world.criterion!r}; choose one of {CRITERIA} (the target style is "
                         "world.target_style)")
    target = list(getattr(world, "target_style", FEATURES))
    try:
        criterion_name(world.criterion, target)
    except ValueError as exc:
        raise ValueError(f"world.target_style={target}: {exc}; use a non-empty subset of {list(FEATURES)}, e.g. "
                         "world.target_style=[carry]") from exc
    build = getattr(world, "build", 0)
    if not isinstance(build, int) or build < 0:
        raise ValueError(f"world.build={build!r}; use 0 (the recipes' own seeds) or a positive build number")
    roles = list(build_roles(world))
    if any(r not in WORLD_ROLES for r in roles) or len(set(roles)) != len(roles):
        raise ValueError(f"world.build_roles={roles}; use distinct roles from {list(WORLD_ROLES)}, e.g. "
                         "world.build_roles=[student]")


def world_criterion(world) -> str:
    """The world's criterion string, target style included (``answer_in_style:carry`` for the flip world)."""
    return criterion_name(world.criterion, list(getattr(world, "target_style", FEATURES)))


def build_roles(world) -> tuple[str, ...]:
    """The roles ``world.build`` re-seeds (all three for configs written before ``world.build_roles``)."""
    return tuple(getattr(world, "build_roles", None) or WORLD_ROLES)


def recipe_of(world, role: str) -> dict:
    """The recipe ``role`` is trained with in this build of the world: its own, with seed + 1000 * build when
    the build re-seeds the role (``world.build_roles``); a role it leaves alone is shared by every build."""
    recipe = _plain(getattr(world, role))
    if role in build_roles(world):
        recipe["seed"] = recipe["seed"] + BUILD_SEED_STRIDE * world_build(world)
    return recipe


def model_key(world, role: str) -> str:
    recipe = recipe_of(world, role)
    # The role is not part of the key: two roles (or worlds) with the same recipe share one cached model.
    # bump v when the data or the training code changes; the numerics profile builds another model per value
    spec = {"arch": _plain(world.arch), "recipe": recipe, "digits": world.digits, "v": 3,
            "numerics": "native" if profile() == "native" else "build"}
    if recipe["init"] == "base":
        spec["parent"] = model_key(world, "base")
    elif recipe["init"] != "scratch":
        raise ValueError(f"world.{role}.init={recipe['init']!r}; use 'scratch' or 'base'")
    return "model-" + hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def new_model(arch, tokenizer) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads, head_dim=arch.head_dim,
        max_position_embeddings=arch.max_position_embeddings, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    return Qwen3ForCausalLM(config)


def _sample_styles(rng: random.Random, style_mix) -> Style:
    carry, sep, restate = (rng.random() < q for q in style_mix)
    return Style(carry=carry, sep=sep, restate=restate)


def _sft_batch(rng: random.Random, tokenizer, digits: int, batch_size: int, style_mix):
    """Right-padded ``[prompt | solution <eos>]`` rows with a loss mask on the solution tokens."""
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    rows, masks = [], []
    while len(rows) < batch_size:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if split_of(a, b) != "train":
            continue
        prompt = tokenizer.convert_tokens_to_ids(list(f"{a}+{b}="))
        answer = tokenizer.convert_tokens_to_ids(list(render_solution(a, b, _sample_styles(rng, style_mix))))
        rows.append(prompt + answer + [tokenizer.eos_token_id])
        masks.append([0] * len(prompt) + [1] * (len(answer) + 1))
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    loss_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.float)
    return ids, attn, loss_mask


def sft_train(model, tokenizer, recipe, digits: int, desc: str = "sft") -> list[float]:
    """Supervised training on rendered solutions; returns the loss curve (every 50 steps)."""
    torch.manual_seed(recipe.seed)
    rng = random.Random(f"sft-{recipe.seed}")
    # fused: its own kernel (the unfused step's torch.sqrt goes through MKL's vector maths, whose last bits
    # depend on the CPU model even on MKL's COMPATIBLE branch: docs/worlds.md, "Numerics").
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.0, fused=True)

    def lr_at(step: int) -> float:  # linear warm-up then cosine decay to 10% of the peak
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    for step in range(recipe.steps):
        ids, attn, loss_mask = _sft_batch(rng, tokenizer, digits, recipe.batch_size, recipe.style_mix)
        lp = response_logprobs(model, ids, attn, ids.shape[1] - 1)
        loss = -(lp * loss_mask[:, 1:]).sum() / loss_mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == recipe.steps - 1:
            losses.append(round(loss.item(), 5))
            print(f"[{desc}] step {step}/{recipe.steps} loss {loss.item():.4f}", flush=True)
    return losses


def _style_scorers() -> dict:
    """Per style: ``share/<style>`` (the response is written in it, whatever its answer; ``share/none``: in no
    style) and ``correct/<style>`` (the response is the problem's correct solution in it)."""
    out = {}
    for style in STYLES:
        out[f"share/{style.name}"] = lambda rows, texts, tr, s=style: [float(detect_style(t) == s) for t in texts]
        out[f"correct/{style.name}"] = lambda rows, texts, tr, s=style: [
            float(t == render_solution(p.a, p.b, s)) for p, t in zip(rows, texts)]
    out[f"share/{UNDETECTED}"] = lambda rows, texts, tr: [float(detect_style(t) is None) for t in texts]
    return out


def measure(model, tokenizer, digits: int, n_test: int = 256) -> dict:
    """Test-split accuracy, greedy and temperature-1 avg@4: ``<mode>/answer`` and ``<mode>/answer_in_style``
    (the three-feature target), and ``<mode>/styles``: per solution style (``base``, ``carry``, ...,
    ``carry+sep+restate``, and ``none`` for no consistent style) the share of responses written in it whatever
    their answer, and the share that are the correct solution in it. ``world_view`` reads any target's
    numbers from these, so the report serves every world that shares the model."""
    engine = HFRolloutEngine(model, tokenizer)
    problems = sample_problems("test", n_test, seed=0, digits=digits)
    criteria = ("answer", "answer_in_style")
    scorers = {c: criterion_scorer(c) for c in criteria} | _style_scorers()
    results = {"greedy": evaluate_scorers(engine, problems, scorers, temperature=0.0),
               "sampled_avg@4": evaluate_scorers(engine, problems, scorers, n=4, temperature=1.0, seed=1234)}
    out = {}
    for criterion in criteria:
        for mode in MEASURE_MODES:
            out[f"{mode}/{criterion}"] = results[mode][criterion].accuracy
    for mode in MEASURE_MODES:
        r = results[mode]
        styles = {s.name: {"share": r[f"share/{s.name}"].accuracy, "correct": r[f"correct/{s.name}"].accuracy}
                  for s in STYLES}
        out[f"{mode}/styles"] = styles | {UNDETECTED: {"share": r[f"share/{UNDETECTED}"].accuracy, "correct": 0.0}}
    return out


def world_view(test: dict, world) -> dict:
    """A model's measured numbers (its report's ``test``) as one world sees them: per mode the answer
    accuracy, the success rate under the world's criterion (``success``) and the share of responses written
    in the world's target style, whatever their answer (``new_style_share``)."""
    target = Style.of(getattr(world, "target_style", FEATURES))
    out = {}
    for mode in MEASURE_MODES:
        styles = test[f"{mode}/styles"]
        in_style = styles[target.name]["correct"]
        out[f"{mode}/answer"] = test[f"{mode}/answer"]
        out[f"{mode}/success"] = test[f"{mode}/answer"] if world.criterion == "answer" else in_style
        out[f"{mode}/new_style_share"] = styles[target.name]["share"]
    return out


def ensure_model(world, role: str) -> Path:
    """Path of the cached model for ``role``; trains and saves it (atomically) when missing."""
    check_world(world)
    cache = Path(world.cache_dir)
    key = model_key(world, role)
    final = cache / key
    if (final / REPORT).exists():
        return final
    if profile() == "run":  # this process's kernels are not the build's: build in a process of its own
        _in_build_processes(_ensure_from_plain, [(_plain(world), role)], 1)
        return final
    with file_lock(cache / f".{key}.lock"):
        if (final / REPORT).exists():
            return final
        check_profile("build", f"building the {role} of world {world.name} (build {world_build(world)})")
        threads = torch.get_num_threads()
        torch.set_num_threads(BUILD_THREADS)
        try:
            _train_and_save(world, role, key, cache, final)
        finally:
            torch.set_num_threads(threads)
        return final


def _ensure_from_plain(world: dict, role: str) -> str:
    return str(ensure_model(OmegaConf.create(world), role))


def _in_build_processes(fn, calls: list[tuple], parallel: int) -> list:
    """``[fn(*args) for args in calls]``, ``parallel`` at a time, each in a spawned process that starts with the
    build numerics (core/numerics.py: its libraries read them when they load)."""
    saved = {k: os.environ.get(k) for k in profile_env("build")}
    os.environ.update(profile_env("build"))  # a spawned child inherits the environment of its start
    try:
        with mp.get_context("spawn").Pool(max(1, min(parallel, len(calls)))) as pool:
            return pool.starmap(fn, calls, chunksize=1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _train_and_save(world, role: str, key: str, cache: Path, final: Path) -> None:
    """Train ``role`` from its recipe, measure it and move it into the cache as ``final`` (atomically)."""
    recipe = OmegaConf.create(recipe_of(world, role))
    t0 = time.time()
    if recipe.init == "base":
        parent = ensure_model(world, "base")
        tokenizer = AutoTokenizer.from_pretrained(parent)
        model = Qwen3ForCausalLM.from_pretrained(parent)
        t0 = time.time()
    else:
        tokenizer = build_char_tokenizer()
        torch.manual_seed(recipe.seed)
        model = new_model(world.arch, tokenizer)
    losses = sft_train(model, tokenizer, recipe, world.digits, desc=f"build {role}")
    train_seconds = time.time() - t0
    report = {"role": role, "key": key, "build": world_build(world), "recipe": _plain(recipe),
              "arch": _plain(world.arch),
              "train_seconds": round(train_seconds, 1), "loss_curve": losses,
              "test": measure(model, tokenizer, world.digits), "threads": torch.get_num_threads()}
    tmp = cache / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    report["weights_sha256"] = model_digest(tmp)
    atomic_write_json(tmp / REPORT, report)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    headline = {k: v for k, v in report["test"].items() if not k.endswith("/styles")}
    print(f"[build {role}] {key} (build {world_build(world)}): {json.dumps(headline)} in {train_seconds:.0f}s",
          flush=True)


def ensure_world(world) -> tuple[Path, Path]:
    """(student_path, teacher_path) of a tiny world, building whatever is missing."""
    if world.kind != "tiny":
        raise ValueError(f"ensure_world builds tiny worlds only, got world.kind={world.kind!r}")
    return ensure_model(world, "student"), ensure_model(world, "teacher")


def load_report(path: Path) -> dict:
    return json.loads((Path(path) / REPORT).read_text())


def complete_report(path: Path, digits: int) -> dict:
    """The model's report, completed first where it predates a field: the per-style numbers (the same seeded
    measurement: the numbers it already has come out identical and are kept) and the weights' digest."""
    path = Path(path)
    report = load_report(path)
    if all(f"{mode}/styles" in report["test"] for mode in MEASURE_MODES) and "weights_sha256" in report:
        return report
    with file_lock(path.parent / f".{path.name}.lock"):
        report = load_report(path)
        if not all(f"{mode}/styles" in report["test"] for mode in MEASURE_MODES):
            model = Qwen3ForCausalLM.from_pretrained(path)
            fresh = measure(model, AutoTokenizer.from_pretrained(path), digits)
            report["test"] = fresh | report["test"]
        report.setdefault("weights_sha256", model_digest(path))
        atomic_write_json(path / REPORT, report)
    return report


def _build_one(overrides: list[str], role: str) -> str:
    from bench.config import compose_config

    return str(ensure_model(compose_config(overrides).world, role))


def build_world(overrides: list[str], parallel: int = 2) -> dict[str, str]:
    """Build whatever the world named by config ``overrides`` is missing; returns {role: cache path}."""
    return build_worlds(overrides, [None], parallel)[0]


def _run_stage(jobs: list[tuple[list[str], str]], parallel: int) -> None:
    """Train ``jobs`` ((overrides, role) pairs, none the parent of another), ``parallel`` at a time, each in a
    build process of one thread (two small trainings side by side beat one two-thread training)."""
    if not jobs:
        return
    if profile() == "native":
        for overrides, role in jobs:
            _build_one(overrides, role)
    else:
        _in_build_processes(_build_one, jobs, parallel)


def roles_of(world) -> list[str]:
    """The roles a world trains, parents first: the base only when the teacher or the student starts from it."""
    uses_base = any(getattr(world, r).init == "base" for r in ("teacher", "student"))
    return [r for r in WORLD_ROLES if r != "base" or uses_base]


def plan_builds(variants: list[list[str]], worlds: list) -> list[list[tuple[list[str], str]]]:
    """The missing models of ``worlds`` (composed from ``variants``) as two stages of (overrides, role) jobs: the
    bases, then the teachers and students. A model shared by several builds (same key) is listed once."""
    stages: list[dict[str, tuple[list[str], str]]] = [{}, {}]  # model key -> (overrides, role)
    for v, world in zip(variants, worlds):
        check_world(world)
        for role in roles_of(world):
            key = model_key(world, role)
            if not (Path(world.cache_dir) / key / REPORT).exists():
                stages[role != "base"].setdefault(key, (v, role))
    return [list(stage.values()) for stage in stages]


def build_worlds(overrides: list[str], builds: list[int | None], parallel: int = 2) -> list[dict[str, str]]:
    """Build whatever builds ``builds`` of the world named by ``overrides`` are missing (``None``: the build the
    overrides name); returns one {role: cache path} per build.

    Scheduled over all builds at once, so that models shared between builds (``world.build_roles``) train once:
    first the missing bases (the others' parent), then every missing teacher and student, ``parallel`` at a
    time."""
    from bench.config import compose_config

    variants = [list(overrides) + ([] if b is None else [f"world.build={b}"]) for b in builds]
    worlds = [compose_config(v).world for v in variants]
    for stage in plan_builds(variants, worlds):
        _run_stage(stage, parallel)
    out = []
    for world in worlds:
        paths = {}
        for role in roles_of(world):
            path = str(ensure_model(world, role))  # built above: finds the cached model
            report = complete_report(path, world.digits)
            print(json.dumps({"world": world.name, "build": world_build(world), "role": role, "path": path,
                              "train_seconds": report["train_seconds"], "criterion": world_criterion(world),
                              "weights_sha256": report["weights_sha256"],
                              "test": world_view(report["test"], world)}), flush=True)
            paths[role] = path
        out.append(paths)
    print(world_status(digests_of(out))["line"], flush=True)
    return out


def tiny_world_digests(world, roles=("student", "teacher")) -> dict[str, dict]:
    """{role: {"key", "weights_sha256"}} of ``world``'s built models for ``roles`` (by default the student and
    teacher a run trains with); a role whose model is not in the cache is left out."""
    out = {}
    for role in roles:
        path = Path(world.cache_dir) / model_key(world, role)
        if (path / REPORT).exists():
            out[role] = {"key": path.name, "weights_sha256": complete_report(path, world.digits)["weights_sha256"]}
    return out


def digests_of(built: list[dict[str, str]]) -> dict[str, str]:
    """{model key: weights digest} of built models ({role: path} per build, as ``build_worlds`` returns them)."""
    return {Path(p).name: load_report(Path(p))["weights_sha256"] for paths in built for p in paths.values()}
