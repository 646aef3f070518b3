"""Weight extrapolation hooks that run after the optimizer step: EffOPD (the paper's method)."""
