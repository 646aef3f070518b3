"""Subspace alignment over training (paper Fig. 4b) and rank-1 direction trajectories.

For each snapshot t and matrix: |cos(u1(t), u1(T))| between the top left singular vectors of Delta W_t and
Delta W_T, and the mean cosine of the principal angles between their top-r left singular subspaces (the mean
singular value of U_t[:, :r]^T U_T[:, :r]).
"""

from __future__ import annotations

import torch

from bench.studies.analysis.spectra import batched_svd


def principal_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of orthonormal ``a`` [m, r] and ``b`` [m, r]."""
    return torch.linalg.svdvals(a.transpose(-2, -1) @ b).clamp(max=1.0)


def alignment(delta_t: dict[str, torch.Tensor], delta_T: dict[str, torch.Tensor], r: int = 4,
              svd_T: dict | None = None) -> dict[str, dict]:
    """Per matrix: {"u1_cos": |cos(u1(t), u1(T))|, "subspace_cos": mean principal cosine of the top-r spaces}."""
    svd_t, svd_T = batched_svd(delta_t), svd_T or batched_svd(delta_T)
    out = {}
    for n, (ut, st, _) in svd_t.items():
        uT = svd_T[n][0]
        if float(st[0]) == 0.0:  # Delta W_0 = 0: no direction yet
            out[n] = {"u1_cos": 0.0, "subspace_cos": 0.0}
            continue
        k = min(r, ut.shape[1])
        out[n] = {"u1_cos": float((ut[:, 0] @ uT[:, 0]).abs()),
                  "subspace_cos": float(principal_cosines(ut[:, :k], uT[:, :k]).mean())}
    return out


def top_directions(snapshots: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """u1 per matrix and snapshot ([n_snapshots, m]), signs aligned to the next snapshot (the last one keeps its
    sign; going backwards each u1(t) is flipped when its dot product with the aligned u1(t+1) is negative)."""
    per = [{n: u[:, 0] for n, (u, _, _) in batched_svd(d).items()} for d in snapshots]
    out = {}
    for n in per[0]:
        traj = torch.stack([p[n] for p in per])
        out[n] = align_signs(traj)
    return out


def align_signs(traj: torch.Tensor) -> torch.Tensor:
    traj = traj.clone()
    for i in range(traj.shape[0] - 2, -1, -1):
        if float(traj[i] @ traj[i + 1]) < 0:
            traj[i] = -traj[i]
    return traj


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """First two principal-component coordinates of the rows of ``x``."""
    xc = x - x.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    return u[:, :2] * s[:2]
