"""WindowLR: a line search along the last short window, with the accepted step fed back into the learning rate.

EffOPD extrapolates along an ever-longer power-of-two window and forgets what it learned: its late jumps fail
where OPD's path bends, and an accepted multiple m says the optimizer's step was about (1 + m) times
too short, which EffOPD never tells the optimizer. WindowLR, at every trigger (``effopd.schedule``, e.g.
``every:4``):

1. Delta = theta - theta_anchor over the last window only (the anchor moves at every trigger), so the
   direction follows a bending path;
2. scores theta + m * Delta for m = 1, 2, 4, ... (``effopd.max_tries`` candidates) while the validation score
   strictly improves (``effopd.accept``), the first failure restoring the last accepted point; when even
   m = 1 fails it tries one step back, m = -1/2 (the window overshot);
3. multiplies the optimizer's learning rate by (1 + m) for the accepted m (x0.5 after a step back, unchanged
   when nothing was accepted), keeping it within [``effopd.lr_min_factor``, ``effopd.lr_max_factor``] times
   the run's starting LR: an online step-size search, so that later steps go as far as the jumps did.

Meant for a continuous, verifier-free signal (``effopd.val_signal=teacher_loglik``: one forward over cached
teacher samples, no generation), which makes frequent triggers cheap. Works with any algorithm. The LR change
goes through the scheduler's base LRs (saved with the scheduler, so a resumed run continues at the same LR);
Adam's moments are left alone, as EffOPD leaves them.
"""

from __future__ import annotations

from bench.extrapolation.effopd import EffOPD, check_effopd
from bench.extrapolation.registry import ExtrapolationContext, register_extrapolation

BACKTRACK = -0.5  # the step back tried when the first forward candidate fails


def forward_multipliers(max_tries: int) -> list[float]:
    """The forward candidates' multiples of Delta: 1, 2, 4, ... (``max_tries`` of them)."""
    return [2.0**k for k in range(max_tries)]


def lr_factor(accepted: float, backtrack_factor: float = 0.5) -> float:
    """How much the learning rate changes after accepting ``accepted`` x Delta: the window went (1 + m) times as
    far forward; after a step back, ``backtrack_factor``."""
    return 1.0 + accepted if accepted > 0 else backtrack_factor


def check_window_lr(cfg) -> None:
    e = cfg.effopd
    check_effopd(e)
    if not 0 < e.lr_min_factor <= 1 <= e.lr_max_factor:
        raise ValueError(f"effopd.lr_min_factor={e.lr_min_factor}, effopd.lr_max_factor={e.lr_max_factor}: need "
                         "0 < lr_min_factor <= 1 <= lr_max_factor (bounds on the LR as a multiple of trainer.lr)")
    if not 0 < e.lr_backtrack_factor <= 1:
        raise ValueError(f"effopd.lr_backtrack_factor={e.lr_backtrack_factor}: need 0 < factor <= 1 (the LR's "
                         "factor after an accepted step back; 1 leaves the LR alone)")
    if e.schedule == "pow2":
        raise ValueError("effopd.method=window_lr with effopd.schedule=pow2: its windows must stay short; use "
                         "'every:K' (the preset uses every:4)")


class WindowLR(EffOPD):
    """EffOPD's machinery (anchor, backup, rollback, cost accounting) with WindowLR's candidates and LR feedback."""

    def __init__(self, cfg, model, scorer, optimizer, scheduler=None, on_weights_changed=lambda: None, seed=0):
        super().__init__(cfg, model, scorer, on_weights_changed=on_weights_changed, seed=seed)
        if optimizer is None:
            raise ValueError("effopd.method=window_lr feeds its steps back into the learning rate: it needs the "
                             "run's optimizer (ExtrapolationContext.optimizer)")
        self.optimizer, self.scheduler = optimizer, scheduler
        self.lr_scale = 1.0  # the LR as a multiple of the run's starting LR

    def state_dict(self) -> dict:
        return {**super().state_dict(), "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.lr_scale = state["lr_scale"]  # the LR itself comes back with the optimizer's and scheduler's state

    def _scale_lr(self, factor: float) -> float:
        """Multiply the LR by ``factor`` (clipped to the bounds); returns the factor applied."""
        e = self.cfg
        new_scale = min(max(self.lr_scale * factor, e.lr_min_factor), e.lr_max_factor)
        applied = new_scale / self.lr_scale
        self.lr_scale = new_scale
        for group in self.optimizer.param_groups:
            group["lr"] *= applied
        if self.scheduler is not None:  # the scheduler recomputes lr = base_lr * lambda(step) at its next step
            self.scheduler.base_lrs = [b * applied for b in self.scheduler.base_lrs]
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        return applied

    def _search(self, search) -> None:
        forward = forward_multipliers(self.cfg.max_tries)
        for k, m in enumerate(forward, start=1):
            if not search.try_multiplier(m, k):
                break
        if search.accepted == 0.0:  # even one more window's worth was worse: try half a window back
            search.try_multiplier(BACKTRACK, len(forward) + 1)

    def _after_search(self, accepted: float) -> dict:
        applied = self._scale_lr(lr_factor(accepted, self.cfg.lr_backtrack_factor)) if accepted != 0.0 else 1.0
        return {"lr_factor": applied, "lr_scale": self.lr_scale}


@register_extrapolation("window_lr", check=check_window_lr)
def build_window_lr(ctx: ExtrapolationContext) -> WindowLR:
    """``effopd.method=window_lr``: short-window line search with LR feedback (preset ``experiment=window_lr``)."""
    return WindowLR(ctx.cfg.effopd, ctx.model, ctx.scorer, ctx.optimizer, ctx.scheduler,
                    on_weights_changed=ctx.on_weights_changed, seed=ctx.seed)
