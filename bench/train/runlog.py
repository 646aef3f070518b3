"""Run outputs: ``metrics.jsonl`` (per step), ``evals.jsonl`` (periodic eval), ``effopd.jsonl`` (per trigger),
``summary.json`` (at the end), and wandb (offline by default)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from bench.world.tiny.build import tiny_world_digests
from core.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl, resume_jsonl

STREAMS = ("metrics", "evals", "effopd")


class RunLogger:
    def __init__(self, out: Path, cfg, resume_step: int | None):
        self.out, self.cfg = Path(out), cfg
        for name in STREAMS:
            path = self.out / f"{name}.jsonl"
            if resume_step is None:
                path.unlink(missing_ok=True)
            else:  # drop records written after the checkpoint we resume from (a torn last line too: a crash
                # mid-write), so the steps after it are logged again and the logs match a straight run
                kept = [r for r in resume_jsonl(path) if r["step"] <= resume_step]
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        (self.out / "summary.json").unlink(missing_ok=True)
        self.wandb = None
        mode = cfg.logging.wandb
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logging.wandb={mode!r}; use offline, online or disabled")
        if mode != "disabled":
            import wandb

            self.wandb = wandb.init(project=cfg.logging.project, mode=mode, dir=str(self.out),
                                    name=f"{cfg.method}-seed{cfg.trainer.seed}",
                                    config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")

    def _emit(self, stream: str, record: dict) -> None:
        append_jsonl(self.out / f"{stream}.jsonl", record)
        if self.wandb is not None:
            flat = {f"{stream}/{k}" if stream != "metrics" else k: v for k, v in record.items()
                    if isinstance(v, (int, float)) and v is not None}
            self.wandb.log(flat, step=record["step"])

    def step(self, record: dict) -> None:
        self._emit("metrics", record)

    def eval(self, record: dict) -> None:
        self._emit("evals", record)

    def effopd(self, record: dict) -> None:
        self._emit("effopd", record)

    def finish(self, effopd, train_seconds: float, straightness: dict | None = None) -> dict:
        """Write summary.json; ``straightness``: the tracker's summary (bench/extrapolation/straightness.py), or
        None when trainer.straightness is off."""
        evals = read_jsonl(self.out / "evals.jsonl")
        metrics = read_jsonl(self.out / "metrics.jsonl")
        time_split = {k: sum(m[k] for m in metrics) for k in metrics[0] if k.startswith("time/")} if metrics else {}
        summary = {
            "method": self.cfg.method, "seed": self.cfg.trainer.seed, "lr": self.cfg.trainer.lr,
            "world": self.cfg.world.name, "world_build": self.cfg.world.build,
            "world_build_roles": list(self.cfg.world.build_roles), "algorithm": self.cfg.algorithm.name,
            "effopd": bool(self.cfg.effopd.enabled), "status": "complete",
            "selection_prompts": self.cfg.data.selection_prompts,
            "total_steps": self.cfg.trainer.total_steps, "train_seconds": round(train_seconds, 4),
            "time_split_seconds": {k: round(v, 4) for k, v in time_split.items()},
            "validation_seconds": round(getattr(effopd, "total_seconds", 0.0), 4),
            "validation_tokens": getattr(effopd, "total_tokens", 0),
            "generated_tokens": sum(m["generated_tokens"] for m in metrics),
            "final": {k: v for k, v in evals[-1].items() if "/" in k} if evals else {},
        }
        if straightness is not None:
            summary["straightness"] = straightness
        if self.cfg.world.kind == "tiny":  # which world, to the bit: reproductions compare these first
            summary["world_digests"] = tiny_world_digests(self.cfg.world)
        atomic_write_json(self.out / "summary.json", summary)
        if self.wandb is not None:
            self.wandb.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            self.wandb.finish()
        return summary
