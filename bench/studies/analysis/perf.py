"""Analysis speed benchmark -> results/perf/analysis_speed.json.

    python -m bench.analysis perf [--runs-dir runs/analysis] [--out results/perf/analysis_speed.json]
    python -m bench.analysis perf --device cuda --shapes qwen3-1.7b   (random deltas; needs a GPU)

Tiny world: times the static analyses (norms, spectra, alignment over all snapshots) and the full per-run
analysis (with evaluations) of one existing run. ``--shapes qwen3-1.7b``: random Delta W of Qwen3-1.7B's
28 layers x 7 matrices (hidden 2048, intermediate 6144, 16 q heads / 8 kv heads x 128), batched svdvals
(Table 1 metrics) and a full SVD (alignment / reconstruction), on ``--device``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from bench.studies.analysis.spectra import batched_svd, spectral_table
from core.io import atomic_write_json

SHAPES = {"qwen3-1.7b": {"layers": 28, "hidden": 2048, "inter": 6144, "q": 16 * 128, "kv": 8 * 128},
          "tiny": {"layers": 4, "hidden": 128, "inter": 384, "q": 128, "kv": 64}}


def random_deltas(shape: str, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    s = SHAPES[shape]
    g = torch.Generator(device="cpu").manual_seed(seed)
    dims = {"self_attn.q": (s["q"], s["hidden"]), "self_attn.k": (s["kv"], s["hidden"]),
            "self_attn.v": (s["kv"], s["hidden"]), "self_attn.o": (s["hidden"], s["q"]),
            "mlp.gate": (s["inter"], s["hidden"]), "mlp.up": (s["inter"], s["hidden"]),
            "mlp.down": (s["hidden"], s["inter"])}
    return {f"model.layers.{i}.{k}_proj.weight": (torch.randn(*shp, generator=g) * 1e-3).to(device)
            for i in range(s["layers"]) for k, shp in dims.items()}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_shapes(shape: str, device: str) -> dict:
    d = random_deltas(shape, device)
    _sync(device)
    t0 = time.perf_counter()
    spectral_table(d, device=device)
    _sync(device)
    t1 = time.perf_counter()
    batched_svd(d, device=device)
    _sync(device)
    t2 = time.perf_counter()
    return {"shapes": shape, "device": device, "matrices": len(d), "svdvals_table1_seconds": round(t1 - t0, 3),
            "full_svd_seconds": round(t2 - t1, 3)}


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}}
    if args.shapes:
        res["random_deltas"] = time_shapes(args.shapes, args.device)
    else:
        from bench.studies.analysis.run_analysis import analyse_run, static_analyses

        run = Path(args.run)
        (run / "analysis").mkdir(exist_ok=True)
        t0 = time.perf_counter()
        static_analyses(run)
        res["tiny_static_seconds"] = round(time.perf_counter() - t0, 3)
        full = analyse_run(run, n_prompts=args.prompts, write=False)  # timing only: leave its results alone
        res["tiny_run"] = str(run)
        res["tiny_full_seconds"] = full["seconds"]
        res["tiny_eval_calls"] = full["eval_calls"]
        res["tiny_eval_prompts"] = args.prompts
        res["random_deltas_tiny_cpu"] = time_shapes("tiny", "cpu")
    atomic_write_json(args.out, res)
    print(res)
    return res
