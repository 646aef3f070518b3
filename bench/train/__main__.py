"""``python -m bench.train experiment=effopd trainer.lr=3e-5 trainer.seed=1``: one training run (Hydra)."""

import sys

import hydra
from omegaconf import DictConfig

from bench import distributed
from bench.config_ranges import ConfigError
from bench.train.checkpoint import CheckpointError
from bench.train.loop import train
from core.config_diff import ConfigChanged
from core.run_lock import FolderInUse

BAD_CONFIG_EXIT = 2  # a value out of range: the usage-error code, like argparse's


@hydra.main(version_base="1.3", config_path="../../experiments", config_name="config")
def main(cfg: DictConfig) -> None:
    distributed.check_hydra_launch(cfg)  # torchrun: one explicit run folder, no multirun
    try:
        train(cfg)  # validates every range first, before the world or any model loads (bench/config_ranges.py)
    except (FolderInUse, CheckpointError) as err:  # another run holds the folder, or a checkpoint fails its
        raise SystemExit(f"error: {err}") from None  # check: expected refusals, so one line, no traceback
    except (ConfigError, ConfigChanged) as err:  # a value out of range, or a resume over another config: usage
        print(f"error: {err}", file=sys.stderr)  # errors, one line and argparse's exit code
        raise SystemExit(BAD_CONFIG_EXIT) from None
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
