"""EffOPD: validation-driven extrapolation along the direction the optimizer has been taking.

After the optimizer step at trigger steps (default 1, 2, 4, 8, ...), with Delta = theta - theta_anchor on the
attention/MLP parameters, try theta + m_k * Delta for m_k = 2k (k = 1..5; the official in-place rule
f = 2, f <- f / (1 + f) gives exactly these) and keep going while the validation score strictly improves;
the first failure restores the last accepted point. Then theta_anchor <- theta. Optimizer state is untouched.
Works with any algorithm: it only needs the model and a validation scorer (``effopd.val_signal``). Registered
as ``effopd.method=effopd`` (bench/extrapolation/registry.py), the default method.

Under FSDP2 the parameters are DTensors: backup, extrapolation and rollback act on each rank's local shard
(elementwise, so no communication), the anchor stays sharded, and the direction statistics sum their
squares over ranks. The scorer must return the same score on every rank (the trainer all-reduces or
broadcasts it), so that all ranks take the same accept/reject decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.distributed.tensor import DTensor

from bench import distributed
from bench.extrapolation.registry import ExtrapolationContext, Scorer, ValidationScore, register_extrapolation
from core.faults import crash_point

__all__ = ["EXTRAPOLATED_KEYWORDS", "DirectionProbe", "EffOPD", "Scorer", "ValidationScore", "check_effopd",
           "direction_stats", "is_extrapolated", "is_trigger_step", "multiplier"]

# The official name rule: a parameter is extrapolated when its name contains any of these.
EXTRAPOLATED_KEYWORDS = (
    "attn", "self_attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj",
    "mlp", "feed_forward", "ffn", "gate_proj", "up_proj", "down_proj",
)


def is_extrapolated(name: str) -> bool:
    return any(k in name for k in EXTRAPOLATED_KEYWORDS)


def is_trigger_step(step: int, schedule: str) -> bool:
    """``pow2``: 1, 2, 4, 8, ...; ``every:K``: K, 2K, 3K, ...; parts joined by ``+`` trigger at the union of their
    steps (``pow2+every:4``: 1, 2, 4, 8, 12, 16, ...: early triggers while the first steps are still short)."""
    parts = schedule.split("+")
    for part in parts:
        if part != "pow2" and not (part.startswith("every:") and part[6:].isdigit() and int(part[6:]) > 0):
            raise ValueError(f"effopd.schedule={schedule!r}; use 'pow2', 'every:K' with K >= 1, or both joined "
                             "by '+' (e.g. 'pow2+every:4')")
    if step < 1:
        return False
    return any(step & (step - 1) == 0 if part == "pow2" else step % int(part[6:]) == 0 for part in parts)


def multiplier(k: int, kind: str) -> float:
    """The k-th candidate's multiple of Delta (k = 1, 2, ...)."""
    if kind == "linear":
        return 2.0 * k
    if kind == "geometric":
        return 2.0**k
    raise ValueError(f"effopd.multipliers={kind!r}; use 'linear' (official, 2k) or 'geometric' (2^k)")


def check_effopd(cfg) -> None:
    """The ``effopd`` options EffOPD reads (``cfg``: the block itself); raises naming the key and the fix."""
    if cfg.accept not in ("gt", "ge"):
        raise ValueError(f"effopd.accept={cfg.accept!r}; use 'gt' (strictly greater, official) or 'ge'")
    if cfg.max_tries < 1:
        raise ValueError(f"effopd.max_tries={cfg.max_tries}; must be >= 1")
    multiplier(1, cfg.multipliers)
    is_trigger_step(1, cfg.schedule)


class EffOPD:
    def __init__(self, cfg, model: torch.nn.Module, scorer: Scorer,
                 on_weights_changed: Callable[[], None] = lambda: None, seed: int = 0):
        check_effopd(cfg)
        self.cfg = cfg
        self.scorer = scorer
        self.on_weights_changed = on_weights_changed  # e.g. a vLLM engine's weight sync
        self.seed = seed
        self.params = {n: p for n, p in model.named_parameters() if is_extrapolated(n)}
        if not self.params:
            raise ValueError("EffOPD found no attention/MLP parameters to extrapolate (checked names against "
                             f"{EXTRAPOLATED_KEYWORDS})")
        self.sharded = any(isinstance(p, DTensor) for p in self.params.values())
        self.anchor = {n: p.detach().clone() for n, p in self._shards().items()}
        self.prev_delta: dict[str, torch.Tensor] | None = None
        self.total_seconds = 0.0
        self.total_tokens = 0
        self.num_evals = 0
        self._tokens_this_trigger = 0

    def _shards(self) -> dict[str, torch.Tensor]:
        """This rank's part of each parameter, as views that write through (the parameters themselves on one
        process). Taken afresh at each use: FSDP2 may re-create a parameter's local view at its lazy init."""
        return {n: distributed.local(p) for n, p in self.params.items()}

    # -- checkpointing -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"anchor": _as_params(self.anchor, self.params), "prev_delta": _as_params(self.prev_delta, self.params),
                "total_seconds": self.total_seconds, "total_tokens": self.total_tokens, "num_evals": self.num_evals}

    def load_state_dict(self, state: dict) -> None:
        if set(state["anchor"]) != set(self.params):
            raise ValueError("EffOPD checkpoint anchors other parameters than this model; was it written by "
                             "another model or another version of the name rule?")
        self.anchor = {n: distributed.local(t).clone() for n, t in state["anchor"].items()}
        self.prev_delta = _as_shards(state["prev_delta"])
        self.total_seconds, self.total_tokens = state["total_seconds"], state["total_tokens"]
        self.num_evals = state["num_evals"]

    # -- the hook ------------------------------------------------------------------------------------------
    def _score(self, seed: int) -> float:
        result = self.scorer(seed)
        self.total_tokens += result.tokens
        self._tokens_this_trigger += result.tokens
        self.num_evals += 1
        return result.score

    def _better(self, score: float, best: float) -> bool:
        return score > best if self.cfg.accept == "gt" else score >= best

    def _set(self, backup: dict, delta: dict, m: float) -> None:
        for n, p in self._shards().items():
            p.copy_(backup[n] + m * delta[n])
        self.on_weights_changed()

    @torch.no_grad()
    def after_step(self, step: int) -> dict | None:
        """Call right after the optimizer step that completed global step ``step``; returns a log record."""
        if not is_trigger_step(step, self.cfg.schedule):
            return None
        t0 = time.perf_counter()
        self._tokens_this_trigger = 0
        eval_seed = self.seed * 1_000_003 + step * 7919
        next_seed = (lambda k: eval_seed) if self.cfg.val_common_random_numbers else (lambda k: eval_seed + k)
        backup = {n: p.detach().clone() for n, p in self._shards().items()}
        delta = {n: backup[n] - self.anchor[n] for n in self.params}
        base = self._score(next_seed(0))
        search = _Search(self, backup, delta, next_seed, base, step)
        try:
            self._search(search)
        finally:  # also when a scorer fails: never leave the model at an unaccepted candidate
            if search.current != search.accepted:
                self._set(backup, delta, search.accepted)  # back to the last accepted point (theta itself if none)
        record = {"step": step, "base_score": base, "candidates": search.candidates,
                  "accepted_multiplier": search.accepted, "best_score": search.best,
                  **self._after_search(search.accepted), **self._direction_stats(delta)}
        self.anchor = {n: p.detach().clone() for n, p in self._shards().items()}
        seconds = time.perf_counter() - t0
        self.total_seconds += seconds
        record.update(seconds=round(seconds, 4), tokens=self._tokens_this_trigger)
        return record

    def _search(self, search: _Search) -> None:
        """The candidates of one trigger: theta + m_k * Delta for k = 1..max_tries while the score improves."""
        for k in range(1, self.cfg.max_tries + 1):
            if not search.try_multiplier(multiplier(k, self.cfg.multipliers), k):
                break

    def _after_search(self, accepted: float) -> dict:
        """What a method does after a trigger's search (the model is at the accepted point); extra record fields."""
        return {}

    def _direction_stats(self, delta: dict) -> dict:
        out = direction_stats(delta, self.anchor, self.prev_delta if self.cfg.log_direction else None,
                              sharded=self.sharded)
        if self.cfg.log_direction:
            self.prev_delta = delta
        return out


class _Search:
    """One trigger's search state: the best score so far, the accepted and current multiples, the candidates."""

    def __init__(self, hook: EffOPD, backup: dict, delta: dict, next_seed: Callable[[int], int], base: float,
                 step: int = 0):
        self.hook, self.backup, self.delta, self.next_seed, self.step = hook, backup, delta, next_seed, step
        self.best, self.accepted, self.current, self.candidates = base, 0.0, 0.0, []

    def try_multiplier(self, m: float, k: int) -> bool:
        """Move to theta + m * Delta, score it (seed ``next_seed(k)``) and accept it when it beats the best so far."""
        self.hook._set(self.backup, self.delta, m)
        self.current = m
        crash_point("validation", self.step)  # tests only (core/faults.py): a kill at an unaccepted candidate
        score = self.hook._score(self.next_seed(k))
        self.candidates.append({"multiplier": m, "score": score})
        if not self.hook._better(score, self.best):
            return False
        self.best, self.accepted = score, m
        return True


def _as_params(shards: dict | None, params: dict) -> dict | None:
    """Local shards as DTensors laid out like their parameters (checkpoints reshard them); as-is on one process."""
    return None if shards is None else {n: distributed.like_param(t, params[n]) for n, t in shards.items()}


def _as_shards(tensors: dict | None) -> dict | None:
    return None if tensors is None else {n: distributed.local(t) for n, t in tensors.items()}


def _flat(tensors: dict) -> torch.Tensor:
    return torch.cat([t.flatten().float() for t in tensors.values()])


def direction_stats(delta: dict, anchor: dict, prev_delta: dict | None, sharded: bool = False) -> dict:
    """Size of this trigger window's update relative to the anchor, and its cosine with the previous window's
    (EffOPD can only pay when consecutive windows point the same way). ``sharded``: the dicts hold this
    rank's shards, and the sums of squares and products are summed over ranks."""
    if sharded:
        return _sharded_direction_stats(delta, anchor, prev_delta)
    d, a = _flat(delta), _flat(anchor)
    cos = None
    if prev_delta is not None:
        cos = torch.nn.functional.cosine_similarity(d, _flat(prev_delta), dim=0).item()
    return {"delta_norm": d.norm().item(), "delta_rel": (d.norm() / a.norm().clamp(min=1e-12)).item(),
            "cos_prev_window": cos}


def _sharded_direction_stats(delta: dict, anchor: dict, prev_delta: dict | None) -> dict:
    d, a = _flat(delta).double(), _flat(anchor).double()
    p = _flat(prev_delta).double() if prev_delta is not None else torch.zeros_like(d)
    dd, aa, dp, pp = distributed.sum_over_ranks(*(x.item() for x in (d @ d, a @ a, d @ p, p @ p)))
    eps = 1e-8  # cosine_similarity's
    cos = dp / (max(dd**0.5, eps) * max(pp**0.5, eps)) if prev_delta is not None else None
    return {"delta_norm": dd**0.5, "delta_rel": dd**0.5 / max(aa**0.5, 1e-12), "cos_prev_window": cos}


class DirectionProbe:
    """The direction diagnostic alone, for runs without EffOPD: at the same trigger steps, log how far and
    in which direction the extrapolated parameters moved since the previous trigger. No validation cost."""

    def __init__(self, model: torch.nn.Module, schedule: str = "pow2"):
        is_trigger_step(1, schedule)
        self.schedule = schedule
        self.params = {n: p for n, p in model.named_parameters() if is_extrapolated(n)}
        self.sharded = any(isinstance(p, DTensor) for p in self.params.values())
        self.anchor = {n: p.detach().clone() for n, p in self._shards().items()}
        self.prev_delta: dict | None = None

    def _shards(self) -> dict[str, torch.Tensor]:
        return {n: distributed.local(p) for n, p in self.params.items()}

    def state_dict(self) -> dict:
        return {"anchor": _as_params(self.anchor, self.params), "prev_delta": _as_params(self.prev_delta, self.params)}

    def load_state_dict(self, state: dict) -> None:
        self.anchor, self.prev_delta = _as_shards(state["anchor"]), _as_shards(state["prev_delta"])

    @torch.no_grad()
    def after_step(self, step: int) -> dict | None:
        if not is_trigger_step(step, self.schedule):
            return None
        delta = {n: p.detach() - self.anchor[n] for n, p in self._shards().items()}
        record = {"step": step, "probe_only": True,
                  **direction_stats(delta, self.anchor, self.prev_delta, sharded=self.sharded)}
        self.prev_delta = delta
        self.anchor = {n: p.detach().clone() for n, p in self._shards().items()}
        return record


@register_extrapolation("effopd", check=lambda cfg: check_effopd(cfg.effopd))
def build_effopd(ctx: ExtrapolationContext) -> EffOPD:
    """``effopd.method=effopd`` (the default): the paper's method with the ``effopd.*`` options."""
    return EffOPD(ctx.cfg.effopd, ctx.model, ctx.scorer, on_weights_changed=ctx.on_weights_changed, seed=ctx.seed)
