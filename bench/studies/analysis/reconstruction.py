"""Edited updates (paper Figs. 2, 3, 4c and the module intervention): what W_0 + f(Delta W) is evaluated.

Every function maps {name: Delta W} to {name: edited Delta W}; ``apply`` adds them to the base weights.
"""

from __future__ import annotations

import math

import torch

from bench.studies.analysis.spectra import batched_svd
from bench.train.snapshots import ATTN, MLP, key_info


def apply(base: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor], scale: float = 1.0) -> dict:
    return {n: base[n] + scale * d for n, d in deltas.items()}


def frobenius(deltas: dict[str, torch.Tensor]) -> float:
    """Global Frobenius norm of the whole update (all matrices together)."""
    return math.sqrt(sum(float((d * d).sum()) for d in deltas.values()))


def n_kept(rank: int, frac: float) -> int:
    return max(1, min(rank, math.ceil(frac * rank))) if frac > 0 else 0


def truncate(deltas: dict[str, torch.Tensor], frac: float, which: str = "top", svd: dict | None = None) -> dict:
    """Delta W rebuilt from its top (or bottom) ``frac`` of singular triplets, per matrix (frac = 1: Delta W)."""
    if which not in ("top", "bottom"):
        raise ValueError(f"which={which!r}; 'top' or 'bottom'")
    svd = svd or batched_svd(deltas)
    out = {}
    for n, (u, s, vh) in svd.items():
        k = n_kept(s.numel(), frac)
        sl = slice(0, k) if which == "top" else slice(s.numel() - k, s.numel())
        out[n] = (u[:, sl] * s[sl]) @ vh[sl]
    return out


def rescale_to(deltas: dict[str, torch.Tensor], target_norm: float) -> dict:
    """The whole update scaled to global Frobenius norm ``target_norm`` (equal-norm comparisons, Fig. 3)."""
    norm = frobenius(deltas)
    return {n: d * (target_norm / norm if norm > 0 else 0.0) for n, d in deltas.items()}


def norm_matched(early: dict[str, torch.Tensor], final: dict[str, torch.Tensor], beta: float = 1.0) -> dict:
    """Early-checkpoint norm scaling (Fig. 4c), per module: [1 + beta (||dW_T|| / ||dW_t|| - 1)] dW_t;
    beta = 1 gives dW_t ||dW_T|| / ||dW_t||, beta = 0 leaves dW_t."""
    out = {}
    for n, d in early.items():
        nt, nT = float(d.norm()), float(final[n].norm())
        ratio = nT / nt if nt > 0 else 0.0
        out[n] = d * (1.0 + beta * (ratio - 1.0))
    return out


def window(deltas: dict[str, torch.Tensor], centre: int, half_width: int, group: str) -> dict:
    """Only the ``group`` ("mlp" | "attn") updates of layers within ``half_width`` of ``centre``."""
    mods = MLP if group == "mlp" else ATTN
    return {n: d for n, d in deltas.items()
            if key_info(n)[1] in mods and abs(key_info(n)[0] - centre) <= half_width}
