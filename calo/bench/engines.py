"""Engines saved for the stream workers: one folder per batch size where the engine's batch
size is fixed (TFLite), one folder for all where it is not."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from calo.config import Backend, LatentDistribution, PrecisionConfig
from calo.errors import CaloError
from calo.model.io import NetworkIO
from calo.precision.engine import Engine, folder_size, read_engine_file

__all__ = ["FP32", "SavedEngines", "save_engines"]

log = logging.getLogger(__name__)

FP32 = PrecisionConfig(name="fp32", backend=Backend.fp32)


@dataclass(frozen=True)
class SavedEngines:
    """One precision's engines on disk, by batch size; ``disk_bytes`` is the size of the
    engine as the precision stage built it."""

    precision: str
    folders: dict[int, Path]
    disk_bytes: int

    def check_batch_size(self, batch_size: int) -> None:
        """A one-line error when the engine for ``batch_size`` was built for another one."""
        folder = self.folders.get(batch_size)
        if folder is None:
            raise CaloError(f"precision={self.precision}: no engine saved for batch size "
                            f"{batch_size} (saved: {sorted(self.folders)})")
        fixed = read_engine_file(folder)["fixed_batch_size"]
        if fixed not in (None, batch_size):
            raise CaloError(f"precision={self.precision}: the engine at {folder} was built for "
                            f"batch size {fixed}, not {batch_size}: build one per batch size")


def save_engines(generator, io: NetworkIO, precision: PrecisionConfig, batch_sizes: Iterable[int],
                 folder: Path, engine: Engine | None = None,
                 latent_distribution: LatentDistribution = LatentDistribution.normal
                 ) -> SavedEngines:
    """Save ``engine`` (built from ``generator`` if not given) under ``folder/<precision>``,
    plus an engine per batch size it cannot run (a fixed-batch engine built for another)."""
    from calo.precision import build_engine

    def build(batch_size: int | None) -> Engine:
        log.info("building the %s engine%s", precision.name,
                 "" if batch_size is None else f" for batch size {batch_size}")
        return build_engine(generator, io, precision, batch_size, latent_distribution)

    engine = engine or build(None)
    folder = folder / precision.name
    main = engine.save(folder / "engine")
    folders = {}
    for batch_size in batch_sizes:
        if engine.fixed_batch_size in (None, batch_size):
            folders[batch_size] = main
        else:
            folders[batch_size] = build(batch_size).save(folder / f"b{batch_size}")
    return SavedEngines(precision.name, folders, folder_size(main))
