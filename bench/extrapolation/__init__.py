"""Weight extrapolation hooks that run after the optimizer step: EffOPD (the paper's method) and any method
registered with ``register_extrapolation``; their validation signals (``register_val_signal``). Importing
this package registers the built-in ones (``effopd``, ``window_lr``; ``accuracy``, ``teacher_loglik``,
``reverse_kl``)."""

from bench.extrapolation import effopd, validation, window_lr  # noqa: F401  (registration side effects)
from bench.extrapolation.registry import (
    ExtrapolationContext,
    ExtrapolationHook,
    check_extrapolation,
    get_extrapolation,
    get_val_signal,
    register_extrapolation,
    register_val_signal,
)

__all__ = ["ExtrapolationContext", "ExtrapolationHook", "check_extrapolation", "get_extrapolation", "get_val_signal",
           "register_extrapolation", "register_val_signal"]
