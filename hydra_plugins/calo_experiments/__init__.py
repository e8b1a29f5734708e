"""Hydra finds calo's ready-made experiments and launcher presets (``experiments/``) from any
working directory: ``python -m calo.run +experiment=paper_tables``."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from calo.paths import PROJECT_ROOT

__all__ = ["CaloExperimentsSearchPath"]


class CaloExperimentsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append("calo-experiments", f"file://{PROJECT_ROOT / 'experiments'}")
