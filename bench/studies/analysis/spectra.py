"""Update matrices and their spectra (paper Sec. 3, Table 1): norms per module and spectral concentration.

Delta W = W_t - W_0 for every 2-D attention/MLP weight. All linear algebra runs in float32. Equal-shape
matrices are stacked and decomposed in one batched call; ``svdvals`` is used when only singular values matter.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from bench.train.snapshots import MODULES, key_info

FIXED_K = 4  # tiny matrices (rank <= 128): the top-1% ratio is just sigma_1's share, so top-4 is reported too


def deltas(base: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Delta W per analysed 2-D weight (float32), keyed by parameter name, in (layer, module) order."""
    names = sorted((n for n in base if key_info(n) is not None),
                   key=lambda n: (key_info(n)[0], MODULES.index(key_info(n)[1])))
    return {n: trained[n].float() - base[n].float() for n in names}


def by_shape(mats: dict[str, torch.Tensor]) -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, m in mats.items():
        groups[tuple(m.shape)].append(name)
    return groups


def batched_svdvals(mats: dict[str, torch.Tensor], device: str = "cpu") -> dict[str, torch.Tensor]:
    """Singular values (descending, float32) of each matrix; one ``svdvals`` call per distinct shape."""
    out = {}
    for names in by_shape(mats).values():
        s = torch.linalg.svdvals(torch.stack([mats[n] for n in names]).to(device, torch.float32)).cpu()
        out.update(zip(names, s))
    return out


def batched_svd(mats: dict[str, torch.Tensor], device: str = "cpu") -> dict[str, tuple]:
    """(U, S, Vh) thin SVD of each matrix, batched by shape."""
    out = {}
    for names in by_shape(mats).values():
        u, s, vh = torch.linalg.svd(torch.stack([mats[n] for n in names]).to(device, torch.float32),
                                    full_matrices=False)
        for i, n in enumerate(names):
            out[n] = (u[i].cpu(), s[i].cpu(), vh[i].cpu())
    return out


def spectral_metrics(s: torch.Tensor, fixed_k: int = FIXED_K) -> dict[str, float]:
    """Paper Table 1 metrics from the singular values ``s`` of one Delta W.

    sigma1; sigma1 / ||Delta W||_F; effective rank exp(-sum p_i log p_i) with p_i = sigma_i / sum sigma_j;
    top-1% ratio sqrt(sum_{i<=k} sigma_i^2 / sum sigma_j^2) with k = ceil(rank / 100) (rank = min(m, n));
    and the same ratio at a fixed small k (tiny matrices)."""
    s = s.double()
    fro = float(torch.sqrt((s * s).sum()))
    total = float(s.sum())
    if fro == 0.0:
        return {"sigma1": 0.0, "fro": 0.0, "sigma1_ratio": 0.0, "eff_rank": 0.0, "top1pct": 0.0,
                "topk_fixed": 0.0, "k_1pct": 1, "rank": int(s.numel())}
    p = s / total
    p = p[p > 0]
    eff = math.exp(float(-(p * p.log()).sum()))
    k = max(1, math.ceil(s.numel() / 100))
    energy = (s * s).cumsum(0) / (fro * fro)
    return {"sigma1": float(s[0]), "fro": fro, "sigma1_ratio": float(s[0]) / fro, "eff_rank": eff,
            "top1pct": math.sqrt(float(energy[k - 1])),
            "topk_fixed": math.sqrt(float(energy[min(fixed_k, s.numel()) - 1])),
            "k_1pct": k, "rank": int(s.numel())}


def module_norms(mats: dict[str, torch.Tensor]) -> list[dict]:
    """||Delta W||_F per (layer, module) and its share of the total squared norm (shares sum to 1)."""
    rows = [{"name": n, "layer": key_info(n)[0], "module": key_info(n)[1], "fro": float(m.norm())}
            for n, m in mats.items()]
    total = sum(r["fro"] ** 2 for r in rows) or 1.0
    for r in rows:
        r["share"] = r["fro"] ** 2 / total
    return rows


def spectral_table(mats: dict[str, torch.Tensor], device: str = "cpu") -> dict:
    """Per-matrix metrics, their mean/std over matrices, the pooled (energy-weighted) value and per-layer means."""
    svals = batched_svdvals(mats, device)
    per = []
    for n, s in svals.items():
        layer, module = key_info(n)
        per.append({"name": n, "layer": layer, "module": module, **spectral_metrics(s)})
    keys = ("sigma1_ratio", "eff_rank", "top1pct", "topk_fixed")
    summary = {}
    weights = torch.tensor([r["fro"] ** 2 for r in per], dtype=torch.float64)
    for k in keys:
        v = torch.tensor([r[k] for r in per], dtype=torch.float64)
        summary[k] = {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0,
                      "pooled": float((v * weights).sum() / weights.sum().clamp(min=1e-30))}
    layers = sorted({r["layer"] for r in per})
    per_layer = {k: [sum(r[k] for r in per if r["layer"] == layer) / sum(1 for r in per if r["layer"] == layer)
                     for layer in layers] for k in keys}
    return {"per_matrix": per, "summary": summary, "per_layer": per_layer, "layers": layers,
            "dtype": "float32", "fixed_k": FIXED_K}
