"""``python -m bench.train experiment=effopd trainer.lr=3e-5 trainer.seed=1``: one training run (Hydra)."""

import hydra
from omegaconf import DictConfig

from bench import distributed
from bench.train.loop import train
from core.run_lock import FolderInUse


@hydra.main(version_base="1.3", config_path="../../experiments", config_name="config")
def main(cfg: DictConfig) -> None:
    distributed.check_hydra_launch(cfg)  # torchrun: one explicit run folder, no multirun
    try:
        train(cfg)
    except FolderInUse as err:  # another run holds the folder: an expected refusal, so one line, no traceback
        raise SystemExit(f"error: {err}") from None
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
