"""python -m calo.search [model=... hw=... search.study=...] search.save_as=int8_inc_best
[search.save_trial=N]

Writes a trial of a search's study (the chosen point unless search.save_trial names one) as the
precision option conf/precision/<search.save_as>.yaml; ``precision=<that name>`` then runs it.
The study is found as the search found it: search.storage and search.study, or their defaults.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from calo.cli import exit_on_user_error
from calo.config import to_run_config
from calo.paths import CONFIG_DIR
from calo.search.export import save_study_option

__all__ = ["main"]


def save(cfg: DictConfig) -> None:
    path = save_study_option(to_run_config(cfg))
    print(f"wrote {path}: run it with precision={path.stem}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="run")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(save, cfg)


if __name__ == "__main__":
    main()
