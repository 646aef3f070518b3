"""All start-up checks of a training config, before the world or any model loads (``validate_config``).

The ranges of single fields and the rules between them live next to the dataclasses (bench/config_ranges.py);
the names that only the registries know (algorithm, engine, extrapolation method, validation signal, schedule,
benchmarks, templates) are checked here, above those registries in the import order.
"""

from __future__ import annotations

from bench.config_ranges import ConfigError, check_ranges


def validate_config(cfg) -> None:
    """All start-up checks of a training config, before the world or any model loads; raises ``ConfigError``."""
    from bench import distributed
    from bench.algorithms.checks import check_algorithm
    from bench.extrapolation import check_extrapolation
    from bench.extrapolation.effopd import is_trigger_step, multiplier
    from bench.train.snapshots import parse_snapshot_steps
    from evals.datasets.registry import get_benchmark
    from evals.datasets.templates import TEMPLATES

    check_ranges(cfg)
    if cfg.data.prompt_template not in TEMPLATES:
        raise ConfigError(f"data.prompt_template={cfg.data.prompt_template!r} is not a template: allowed is one of "
                          + ", ".join(sorted(TEMPLATES)))
    try:
        if cfg.world.kind == "hub":
            get_benchmark(cfg.data.train_benchmark)
            get_benchmark(cfg.data.test_benchmark)
        check_algorithm(cfg)
        check_extrapolation(cfg)
        is_trigger_step(1, cfg.effopd.schedule)  # read by the direction probe and the straightness tracker too
        multiplier(1, cfg.effopd.multipliers)
        distributed.check_config(cfg, world=1)  # the world size's own rules run again once the group is up
    except ConfigError:
        raise
    except (ValueError, KeyError) as err:  # the registries' and parsers' messages already name key and fix
        raise ConfigError(err.args[0] if err.args else repr(err)) from err
    try:
        parse_snapshot_steps(cfg.trainer.snapshot_steps, cfg.trainer.total_steps)
    except ValueError as err:
        raise ConfigError(f"trainer.{err}") from err
