"""python -m calo.train [model=tiny] [train.epochs=N] [train.resume=true] [train.strategy=...]"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from calo.cli import exit_on_user_error
from calo.paths import CONFIG_DIR
from calo.train.loop import train


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    result = exit_on_user_error(train, cfg)
    print(f"trained {result.steps} steps ({result.showers_per_s:.1f} showers/s); best epoch "
          f"{result.best_epoch} (validation score {result.best_score:.4f}); weights in "
          f"{result.folder}")


if __name__ == "__main__":
    main()
