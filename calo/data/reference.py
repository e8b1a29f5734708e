"""The reference sample of a run: simulated once into a cache keyed by its parameters, or read
from real EleEscan files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from calo.config import DataConfig, DataSource
from calo.data.eleescan import read_eleescan, read_file, write_eleescan
from calo.data.showers import Showers
from calo.data.simulator import ShowerParameters, simulate_showers
from calo.paths import resolve

__all__ = ["SIMULATOR_VERSION", "load_reference", "reference_cache_path", "simulate_reference"]

log = logging.getLogger(__name__)

# Bump when the simulator's output for the same parameters changes: old caches are then ignored.
SIMULATOR_VERSION = 1


def simulate_reference(
    n_showers: int,
    energy_min: float,
    energy_max: float,
    seed: int,
    params: ShowerParameters | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Showers:
    """Primary energies uniform in [energy_min, energy_max] GeV, one simulated shower each."""
    params = params or ShowerParameters()
    rng = np.random.default_rng(seed)
    energy = rng.uniform(energy_min, energy_max, n_showers).astype(np.float32)
    workers = workers or len(os.sched_getaffinity(0))
    ecal = simulate_showers(energy, params, seed, workers=workers, progress=progress)
    return Showers(ecal, energy)


def reference_cache_path(cfg: DataConfig, params: ShowerParameters | None = None) -> Path:
    """Cache file named by a hash of everything that determines its content."""
    key = {
        "simulator_version": SIMULATOR_VERSION,
        "params": (params or ShowerParameters()).as_dict(),
        "n_showers": cfg.n_showers,
        "energy_min": cfg.energy_min,
        "energy_max": cfg.energy_max,
        "seed": cfg.seed,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return resolve(cfg.cache_dir) / f"reference-{cfg.n_showers}-{digest}.h5"


def load_reference(cfg: DataConfig) -> Showers:
    """The run's reference showers (generated and cached on first use for ``data=reference``)."""
    if cfg.source is DataSource.eleescan:
        log.info("reading EleEscan showers from %s", cfg.path)
        return read_eleescan(cfg.path, cfg.n_showers, cfg.cell_threshold)
    path = reference_cache_path(cfg)
    if path.exists():
        log.info("reference showers from cache %s", path)
        return read_file(path)
    log.info("simulating %d reference showers (%g-%g GeV, seed %d) into %s",
             cfg.n_showers, cfg.energy_min, cfg.energy_max, cfg.seed, path)
    showers = simulate_reference(cfg.n_showers, cfg.energy_min, cfg.energy_max, cfg.seed)
    write_eleescan(path, showers, attrs={"generator": "calo.data.simulator",
                                         "simulator_version": SIMULATOR_VERSION})
    return showers
