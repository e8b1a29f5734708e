"""``python -m calo.search [search.n_trials=30] [model=... hw=... precision.calibration_size=...]``:
the mixed-precision search, composed from ``conf/search.yaml``; a rerun resumes its study."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import calo.search.settings  # noqa: F401  (registers the search_schema the root config names)
from calo.cli import exit_on_user_error
from calo.paths import CONFIG_DIR

__all__ = ["main"]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="search")
def main(cfg: DictConfig) -> None:
    from calo.search.pipeline import run_search

    exit_on_user_error(run_search, cfg)


if __name__ == "__main__":
    main()
