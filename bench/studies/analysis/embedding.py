"""Embedding shift (paper Table 3): how far the input-embedding rows of generated tokens move.

The tiny world ties input embeddings and lm_head, so these rows are also the output projection.
"""

from __future__ import annotations

import torch


def embedding_shift(base: torch.Tensor, trained: torch.Tensor, token_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per unique token id in ``token_ids``: cosine similarity and relative L2 distance ||e_T - e_0|| / ||e_0||."""
    ids = torch.unique(token_ids.long())
    e0, e1 = base[ids].double(), trained[ids].double()
    cos = torch.nn.functional.cosine_similarity(e0, e1, dim=1)
    rel = (e1 - e0).norm(dim=1) / e0.norm(dim=1).clamp(min=1e-30)
    return {"ids": ids, "cos": cos, "rel_l2": rel}
