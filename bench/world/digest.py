"""World digests: the sha256 of a built model's tensors, and whether this machine built the reference world.

A digest covers every tensor's name, dtype, shape and bytes in name order, so it does not depend on how a file
lays them out (safetensors headers, shard boundaries). Two machines built the same world exactly when every
model's digest agrees; agreement "within a tolerance" is not enough, since training amplifies the last bit.

The reference is ``results/world_digests.json``: the digests of the models behind the committed results, with
the CPU and numerics they were built with (``record_reference`` writes it). ``world_status`` compares a set of
built models against it and says, in one line, what a reader of a result must know: bit-identical, a
different draw of the world (compare distributions over builds, not numbers), or unknown (no reference).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from core.io import atomic_write_json
from core.paths import RESULTS_DIR

REFERENCE_FILE = RESULTS_DIR / "world_digests.json"
IDENTICAL, DIFFERENT, UNKNOWN = "identical", "different", "unknown"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_digest(path: str | Path) -> str:
    """The digest of the tensors in a saved model folder (every ``*.safetensors`` file in it)."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path} holds no *.safetensors file: not a built model")
    tensors = {}
    for f in files:
        tensors.update(load_file(f))
    return tensor_digest(tensors)


def load_reference(path: str | Path | None = None) -> dict:
    """{model key: {"weights_sha256", "world", "build", "role", ...}} of the reference; {} when there is none."""
    path = Path(path or REFERENCE_FILE)
    return json.loads(path.read_text())["models"] if path.exists() else {}


def world_status(models: dict[str, str], reference: dict | None = None) -> dict:
    """Compare built models ({model key: digest}) with the reference: a status, the keys per outcome, one line.

    identical: every model has a reference digest and matches it; different: at least one model differs;
    unknown: none differs but some have no reference digest."""
    reference = load_reference() if reference is None else reference
    same = sorted(k for k, d in models.items() if k in reference and reference[k]["weights_sha256"] == d)
    differ = sorted(k for k, d in models.items() if k in reference and reference[k]["weights_sha256"] != d)
    missing = sorted(k for k in models if k not in reference)
    status = DIFFERENT if differ else UNKNOWN if missing else IDENTICAL
    return {"status": status, "models": len(models), "identical": same, "different": differ, "no_reference": missing,
            "line": status_line(status, len(models), differ, missing)}


def status_line(status: str, n: int, differ: list[str], missing: list[str]) -> str:
    ref = "results/world_digests.json"
    if status == IDENTICAL:
        return (f"World: bit-identical to the reference ({n} models match {ref}): the numbers are comparable with "
                "the committed ones run for run.")
    if status == DIFFERENT:
        return (f"World: DIFFERENT from the reference ({len(differ)} of {n} models differ from {ref}, e.g. "
                f"{differ[0]}): this machine built another draw of the world, so its numbers are not the committed "
                "ones; compare distributions over builds (the verdict and its interval), not single runs "
                "(python -m bench.leaderboard reproduce, docs/worlds.md).")
    return (f"World: no reference digest for {len(missing)} of {n} models (e.g. {missing[0]}): this machine's world "
            f"cannot be compared with {ref} (another recipe, build or numerics mode than the committed results).")


def reference_machine() -> dict:
    """What a reference was built on: the CPU model, CPU count, torch and the build numerics."""
    import os
    import platform

    from core.numerics import PROFILES, mode
    from core.provenance import cpu_model

    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, "numerics": {"mode": mode(), "build_profile": PROFILES["build"]}}


def record_reference(reports: list[dict], machine: dict, path: str | Path | None = None) -> None:
    """Write the reference: the digests of ``reports`` (build reports with key, role, build and weights_sha256)
    and the machine they were built on."""
    models = {r["key"]: {"weights_sha256": r["weights_sha256"], "role": r["role"], "build": r["build"],
                         **({"world": r["world"]} if "world" in r else {})} for r in reports}
    atomic_write_json(Path(path or REFERENCE_FILE), {"machine": machine, "models": dict(sorted(models.items()))})
