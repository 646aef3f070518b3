"""What differs between a stored config (or protocol) and a new one, and the refusal to continue over a difference
the user did not ask for.

A resumed training run, or an evaluation rerun in the same folder, continues what is already on disk: a silently
different learning rate, seed or sampling temperature would mix two experiments under one label. The caller
names the keys the user means to change (``trainer.resume_may_change``, e.g. ``[trainer.total_steps]`` to extend
a run); every other difference refuses, listing the keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def flatten(tree, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists are leaves)."""
    if not isinstance(tree, Mapping):
        return {prefix.rstrip("."): tree}
    flat: dict[str, object] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def config_diff(old: Mapping, new: Mapping) -> dict[str, tuple[object, object]]:
    """Dotted key -> (old, new) for every leaf that differs; a key on one side only shows ``'<absent>'``."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(a.keys() | b.keys())
            if a.get(k, "<absent>") != b.get(k, "<absent>")}


def _covered(key: str, allowed: Iterable[str]) -> bool:
    """``trainer.total_steps`` is covered by itself or by a parent such as ``trainer``."""
    return any(key == a or key.startswith(a + ".") for a in allowed)


class ConfigChanged(ValueError):
    """A continuation whose config differs from the stored one in keys the user did not name."""


def check_unchanged(old: Mapping, new: Mapping, *, what: str, allowed: Iterable[str] = (),
                    ignored: Iterable[str] = (), how_to_allow: str) -> dict[str, tuple[object, object]]:
    """Raise ``ConfigChanged`` listing the keys (old -> new) that differ outside ``allowed`` and ``ignored``;
    returns the allowed differences (for the log). ``what``: the stored config's file, for the message;
    ``how_to_allow``: the option that names keys (e.g. ``trainer.resume_may_change``)."""
    allowed, ignored = list(allowed), list(ignored)
    diff = {k: v for k, v in config_diff(old, new).items() if not _covered(k, ignored)}
    refused = {k: v for k, v in diff.items() if not _covered(k, allowed)}
    if refused:
        listed = "; ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in refused.items())
        keys = ",".join(refused)
        raise ConfigChanged(f"the new config differs from {what} in {len(refused)} key(s): {listed}. Continuing "
                            f"would mix two experiments in one folder: use a new folder, or name the keys you mean "
                            f"to change with {how_to_allow}=[{keys}]")
    return {k: v for k, v in diff.items() if _covered(k, allowed)}
