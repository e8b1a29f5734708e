"""make bench: python -m calo.bench [bench.precisions=[fp32,int8_tflite]] [hw=...] [model=...]

Composes conf/bench.yaml once per precision (the command line's overrides plus
``precision=<name>``), benchmarks them all and prints one table.
"""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from calo.bench.suite import run_suite, suite_table
from calo.cli import exit_on_user_error
from calo.errors import one_line
from calo.formatting import markdown_table
from calo.paths import CONFIG_DIR

__all__ = ["compose_variants", "main"]

log = logging.getLogger("calo.bench")


def compose_variants(names: list[str]) -> tuple[dict[str, DictConfig], dict[str, str]]:
    """Each precision's run config, composed as this job's config with ``precision=<name>``;
    and the precisions that did not compose, with Hydra's reason."""
    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("precision=")]
    variants, skipped = {}, {}
    for name in names:
        try:
            cfg = hydra.compose(hydra_cfg.job.config_name, [*overrides, f"precision={name}"])
        except HydraException as error:
            skipped[name] = one_line(error)
            log.warning("skipping precision=%s: %s", name, skipped[name])
            continue
        variants[name] = cfg
    return variants, skipped


def bench(cfg: DictConfig) -> None:
    variants, skipped = compose_variants(list(cfg.bench.precisions))
    rows = run_suite(cfg, variants, skipped)
    print(markdown_table(suite_table(rows, list(cfg.bench.batch_sizes))))


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(bench, cfg)


if __name__ == "__main__":
    main()
