"""The engine registry: ``rollout.engine=<name>`` looks a builder up here, with its settings block.

Adding an engine is one file plus a registration::

    @dataclass
    class MySettings:  # the engine's options: the config block rollout.my (bench/config.py's RolloutConfig)
        width: int = 4  # what width does

    @register_engine("my", MySettings)
    def build_my_engine(model, tokenizer, settings: MySettings, seed: int = 0) -> RolloutEngine:
        return MyEngine(model, tokenizer, width=settings.width)

The builder gets the trainer's model and tokenizer, the engine's settings as an instance of its dataclass
(validated by the dataclass itself, e.g. in ``__post_init__``) and the run's seed. An engine without options
registers ``settings_cls=None`` and gets ``settings=None``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.rollout.base import RolloutEngine

# build(model, tokenizer, settings, seed) -> RolloutEngine
EngineBuilder = Callable[..., RolloutEngine]


@dataclass(frozen=True)
class EngineEntry:
    name: str
    build: EngineBuilder
    settings_cls: type | None  # the dataclass of the engine's options (its config block); None = no options


ENGINES: dict[str, EngineEntry] = {}


def register_engine(name: str, settings_cls: type | None = None):
    """Register ``build(model, tokenizer, settings, seed=0) -> RolloutEngine`` as ``rollout.engine=name``.

    ``settings_cls``: the dataclass of the engine's options, whose config block is ``rollout.<name>``
    (``None``: the engine has no options)."""
    if settings_cls is not None and not dataclasses.is_dataclass(settings_cls):
        raise TypeError(f"engine {name!r}: settings_cls must be a dataclass, got {settings_cls!r}")

    def deco(build: EngineBuilder) -> EngineBuilder:
        if name in ENGINES:
            raise ValueError(f"rollout engine {name!r} registered twice")
        ENGINES[name] = EngineEntry(name, build, settings_cls)
        return build

    return deco


def registered_engines() -> tuple[str, ...]:
    return tuple(ENGINES)


def get_engine(name: str) -> EngineEntry:
    if name not in ENGINES:
        raise ValueError(f"unknown rollout.engine={name!r}; available: {registered_engines()}")
    return ENGINES[name]


def engine_settings(name: str, settings: Any = None):
    """Engine ``name``'s settings as an instance of its dataclass: ``settings`` may be ``None`` (the defaults),
    an instance already, or a mapping of fields (a plain dict, or the config block ``rollout.<name>``)."""
    cls = get_engine(name).settings_cls
    if cls is None:
        if settings:
            raise ValueError(f"rollout.engine={name!r} takes no settings, got {settings!r}")
        return None
    if settings is None:
        return cls()
    if isinstance(settings, cls):
        return settings
    if not isinstance(settings, Mapping):
        raise TypeError(f"rollout.{name}: settings must be a {cls.__name__} or a mapping, got {type(settings)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"rollout.{name} has no option(s) {unknown}; options: {sorted(known)}")
    return cls(**{k: settings[k] for k in settings})


def make_engine(name: str, model, tokenizer, settings: Any = None, *, seed: int = 0) -> RolloutEngine:
    """The rollout engine ``name`` over the trainer's ``model``, built from its ``settings`` (see
    ``engine_settings``; the trainer passes the config block ``rollout.<name>``) and the run's ``seed``."""
    entry = get_engine(name)
    return entry.build(model, tokenizer, engine_settings(name, settings), seed=seed)
