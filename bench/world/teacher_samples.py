"""Rollouts read from a fixed set of teacher samples: the data of SFT on teacher trajectories.

The teacher samples every prompt of the training pool once, with the run's rollout settings (n,
temperature, top-p, max new tokens) and a sampling seed (the run's ``trainer.seed``), and the samples
are cached on disk, keyed by the teacher, the prompts, the settings and the seed. Every SFT run with that
seed (any learning rate) trains on the same data; different seeds differ by their teacher samples, as
on-policy runs differ by their own samples. The engine serves the data through the rollout interface, so
SFT uses the trainer's one loop.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bench.world.base import load_model
from core.io import atomic_write_json, file_lock
from core.rollout.base import RolloutBatch, SamplingParams
from core.rollout.hf import HFRolloutEngine, finish_batch

GEN_BATCH = 256  # prompts per teacher generate call


class TeacherTrajectories:
    """A rollout engine that returns cached teacher samples (``sync_weights`` is a no-op: the data is fixed)."""

    def __init__(self, samples: dict[str, list[dict]], tokenizer):
        self.samples = samples  # prompt -> [{"ids": [...], "truncated": bool}] * n
        self.tokenizer = tokenizer

    def sync_weights(self) -> None:
        return None

    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> RolloutBatch:
        tok = self.tokenizer
        missing = [p for p in prompts if p not in self.samples or len(self.samples[p]) < n]
        if missing:
            raise KeyError(f"no cached teacher samples (n={n}) for prompts {missing[:3]}...; the cache was "
                           "built for another prompt pool or n: delete it or rebuild with this config")
        rows = [s["ids"] for p in prompts for s in self.samples[p][:n]]
        enc = tok([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True, add_special_tokens=False)
        response = torch.full((len(rows), max(map(len, rows))), tok.pad_token_id, dtype=torch.long)
        for r, ids in enumerate(rows):
            response[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        # The same masking, truncation flags and texts as a live engine's rollout of these tokens.
        return finish_batch(tok, enc, response, None, params, len(prompts), n)


def cache_key(teacher_path: str, prompts: list[str], n: int, params: SamplingParams, seed: int) -> str:
    spec = {"teacher": str(teacher_path), "prompts": hashlib.sha1("\n".join(prompts).encode()).hexdigest(),
            "n": n, "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens, "seed": seed}
    return "teacher-samples-" + hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def generate_samples(teacher, tokenizer, prompts: list[str], n: int, params: SamplingParams,
                     seed: int) -> dict[str, list[dict]]:
    """The teacher's ``n`` samples per prompt: response ids up to and including EOS."""
    engine = HFRolloutEngine(teacher, tokenizer)
    out: dict[str, list[dict]] = {}
    params = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, logprobs=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), GEN_BATCH):
            chunk = prompts[start : start + GEN_BATCH]
            batch = engine.generate(chunk, n, params)
            lengths = batch.response_mask.sum(1).long().tolist()
            for row, (i, length) in enumerate(zip(batch.prompt_index.tolist(), lengths)):
                out.setdefault(chunk[i], []).append({"ids": batch.response_ids[row, :length].tolist(),
                                                     "truncated": bool(batch.truncated[row])})
    return out


def teacher_trajectories_for_run(cfg, world) -> TeacherTrajectories:
    """The teacher samples a run with config ``cfg`` trains on (SFT): its rollout settings and seed."""
    r = cfg.rollout
    source, _ = load_teacher_trajectories(
        cfg.world.cache_dir, world.teacher_path, lambda: load_model(world.teacher_path, trainable=False),
        world.tokenizer, [p.prompt for p in world.train], r.n,
        SamplingParams(r.temperature, r.top_p, r.max_new_tokens, logprobs=False), seed=cfg.trainer.seed)
    return source


def load_teacher_trajectories(cache_dir: str | Path, teacher_path: str | Path, load_teacher, tokenizer,
                              prompts: list[str], n: int, params: SamplingParams,
                              seed: int = 0) -> tuple[TeacherTrajectories, Path]:
    """The cached teacher samples for ``prompts`` (generated with ``load_teacher()`` when missing)."""
    path = Path(cache_dir) / f"{cache_key(str(teacher_path), prompts, n, params, seed)}.json"
    with file_lock(path.with_suffix(".lock")):
        if not path.exists():
            samples = generate_samples(load_teacher(), tokenizer, prompts, n, params, seed)
            atomic_write_json(path, {"teacher": str(teacher_path), "n": n, "seed": seed,
                                     "sampling": {"temperature": params.temperature, "top_p": params.top_p,
                                                  "max_new_tokens": params.max_new_tokens},
                                     "samples": samples})
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt teacher-sample cache {path}: {e}; delete the file to regenerate it") from e
    return TeacherTrajectories(data["samples"], tokenizer), path
