"""Parameter snapshots for the parameter-dynamics analysis: which steps, what is saved, how it loads.

The trainer saves ``snapshots/step{N:06d}.safetensors`` holding only the analysed tensors: every 2-D attention and
MLP weight (q, k, v, o, gate, up, down projections) and the input embedding. Writes are atomic (temp file +
rename), so a killed run never leaves a half-written snapshot. Analyses read these files (or a base model plus
HF checkpoints) and never import the trainer.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODULES = ("q", "k", "v", "o", "gate", "up", "down")
ATTN, MLP = ("q", "k", "v", "o"), ("gate", "up", "down")
EMBED = "model.embed_tokens.weight"
_PATTERN = re.compile(r"layers\.(\d+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.weight$")


def parse_snapshot_steps(spec: str, total_steps: int) -> list[int]:
    """Steps to snapshot for ``trainer.snapshot_steps``: "" = none; "+"-joined parts of "pow2" (0, 1, 2, 4, ...),
    "every:K" (0, K, 2K, ...) and "at:3,7" (explicit steps). The final step and step 0 are always included
    once any part is given."""
    spec = (spec or "").strip()
    if not spec or spec == "off":
        return []
    steps = {0, total_steps}
    for part in spec.split("+"):
        part = part.strip()
        if part == "pow2":
            p = 1
            while p <= total_steps:
                steps.add(p)
                p *= 2
        elif part.startswith("every:"):
            k = int(part[6:])
            if k <= 0:
                raise ValueError(f"snapshot_steps part {part!r}: K must be > 0")
            steps.update(range(0, total_steps + 1, k))
        elif part.startswith("at:"):
            steps.update(int(s) for s in part[3:].split(",") if s.strip())
        else:
            raise ValueError(f"snapshot_steps={spec!r}: parts are 'pow2', 'every:K' or 'at:S1,S2' joined by '+'")
    return sorted(s for s in steps if 0 <= s <= total_steps)


def key_info(name: str) -> tuple[int, str] | None:
    """(layer, module) of an analysed 2-D weight's parameter name, else None."""
    m = _PATTERN.search(name)
    return (int(m.group(1)), m.group(3)) if m else None


def analysed_tensors(model) -> dict[str, torch.Tensor]:
    """The analysed tensors of a model (fp32 CPU copies): 2-D attention/MLP weights and the input embedding."""
    out = {}
    for name, p in model.named_parameters():
        if key_info(name) is not None:
            out[name] = p.detach().float().cpu().contiguous().clone()
    emb = model.get_input_embeddings().weight
    out[EMBED] = emb.detach().float().cpu().contiguous().clone()
    return out


def save_snapshot(out_dir: str | Path, step: int, model) -> Path:
    folder = Path(out_dir) / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step{step:06d}.safetensors"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(analysed_tensors(model), tmp, metadata={"step": str(step)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def list_snapshots(run_dir: str | Path) -> dict[int, Path]:
    folder = Path(run_dir) / "snapshots"
    return {int(p.stem[4:]): p for p in sorted(folder.glob("step*.safetensors"))}


def load_snapshot(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def load_hf_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The analysed tensors of an HF checkpoint folder (base or trained), without building the model."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {path}")
    out = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            if key_info(k) is not None or k == EMBED:
                out[k] = v.float()
    return out
