"""The reference sample of a run: simulated once into a cache keyed by its parameters, or read
from real EleEscan files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np

from calo.config import DataConfig, DataSource
from calo.data.eleescan import ELECTRON_PDG, read_eleescan, write_eleescan
from calo.data.showers import SHOWER_SHAPE, Showers, check_showers
from calo.data.simulator import ShowerParameters, simulate_showers
from calo.errors import CaloError, one_line
from calo.paths import resolve

__all__ = ["CHECKSUM_ATTR", "SIMULATOR_VERSION", "load_reference", "reference_cache_path",
           "showers_digest", "simulate_reference", "write_reference_cache"]

log = logging.getLogger(__name__)

# Bump when the simulator's output for the same parameters changes: old caches are then ignored.
SIMULATOR_VERSION = 1
# The cache file's attribute holding showers_digest() of its content, written with it.
CHECKSUM_ATTR = "sha256"


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
    """The run's reference showers (generated and cached on first use for ``data=reference``).

    A cache file is used only when it verifies (``_read_verified``); one that does not is moved
    aside with a warning and simulated afresh, so a damaged file never reaches a run."""
    if cfg.source is DataSource.eleescan:
        log.info("reading EleEscan showers from %s", cfg.path)
        return read_eleescan(cfg.path, cfg.n_showers, cfg.cell_threshold)
    path = reference_cache_path(cfg)
    cached = _cached_showers(path, cfg)
    if cached is not None:
        return cached
    log.info("simulating %d reference showers (%g-%g GeV, seed %d) into %s",
             cfg.n_showers, cfg.energy_min, cfg.energy_max, cfg.seed, path)
    showers = simulate_reference(cfg.n_showers, cfg.energy_min, cfg.energy_max, cfg.seed)
    write_reference_cache(path, showers)
    return showers


def showers_digest(showers: Showers) -> str:
    """SHA-256 over the ECAL and energy arrays with their dtypes and shapes (about 1 GB/s:
    seconds for 60,000 showers, against minutes to simulate them again)."""
    digest = hashlib.sha256()
    for array in (showers.ecal, showers.energy):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def write_reference_cache(path: Path, showers: Showers) -> Path:
    """Write the cache with its checksum, atomically: concurrent writers each write a temporary
    file and rename it into place, so a reader sees one whole file (all of them are equal)."""
    return write_eleescan(path, showers, attrs={"generator": "calo.data.simulator",
                                                "simulator_version": SIMULATOR_VERSION,
                                                CHECKSUM_ATTR: showers_digest(showers)})


class _Untrusted(Exception):
    """Why a cache file is not used; ``kind`` names what it is set aside as."""

    def __init__(self, reason: str, kind: str = "corrupt") -> None:
        super().__init__(reason)
        self.kind = kind


def _cached_showers(path: Path, cfg: DataConfig) -> Showers | None:
    """The verified cache; None when there is none or it was set aside."""
    try:
        identity = _identity(path)
    except FileNotFoundError:
        return None
    try:
        showers = _read_verified(path, cfg)
    except _Untrusted as problem:
        aside = _set_aside(path, identity, problem.kind)
        where = (f"moved it to {aside.name}" if aside
                 else "another process already moved or replaced it")
        what = "is corrupt" if problem.kind == "corrupt" else "cannot be verified"
        log.warning("reference cache %s %s: %s; %s and simulating the showers afresh",
                    path, what, problem, where)
        return None
    log.info("reference showers from cache %s (checksum verified)", path)
    return showers


def _read_verified(path: Path, cfg: DataConfig) -> Showers:
    """The cache's showers if its checksum, shapes, dtypes and energy range are right."""
    count = int(cfg.n_showers or 0)
    try:
        with h5py.File(path, "r") as h5:
            expected = h5.attrs.get(CHECKSUM_ATTR)
            if expected is None:
                raise _Untrusted("it has no checksum (written by an older calo)", "unverified")
            ecal = _dataset(h5, "ECAL", (count, *SHOWER_SHAPE))
            energy = _dataset(h5, "energy", (count,))
            target = _dataset(h5, "target", (count, 2))
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise _Untrusted(f"not a readable HDF5 file ({one_line(error)})") from error
    showers = Showers(ecal, energy)
    _check_energy_range(energy, cfg)
    if showers_digest(showers) != str(expected):
        raise _Untrusted("its ECAL or energy data differ from what was written (SHA-256 "
                         "checksum mismatch)")
    if not (np.array_equal(target[:, 1], energy) and (target[:, 0] == ELECTRON_PDG).all()):
        raise _Untrusted("its target dataset disagrees with its energy dataset")
    try:
        return check_showers(ecal, energy, str(path))
    except CaloError as error:
        raise _Untrusted(str(error)) from error


def _dataset(h5: h5py.File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 dataset of exactly ``shape``, checked before it is read."""
    dataset = h5.get(name)
    if not isinstance(dataset, h5py.Dataset):
        raise _Untrusted(f"it has no {name} dataset")
    if dataset.shape != shape or dataset.dtype != np.float32:
        raise _Untrusted(f"its {name} dataset is {dataset.dtype} of shape {dataset.shape}, "
                         f"expected float32 of shape {shape}")
    return dataset[()]


def _check_energy_range(energy: np.ndarray, cfg: DataConfig) -> None:
    """Energies within [energy_min, energy_max] (bounds rounded to float32 as the data are)."""
    low, high = np.float32(cfg.energy_min), np.float32(cfg.energy_max)
    outside = (energy < low) | (energy > high) | ~np.isfinite(energy)
    if outside.any():
        raise _Untrusted(f"{np.count_nonzero(outside)} primary energies lie outside "
                         f"{cfg.energy_min:g}-{cfg.energy_max:g} GeV (e.g. "
                         f"{energy[outside][0]:.4g} GeV)")


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _set_aside(path: Path, identity: tuple[int, int], kind: str) -> Path | None:
    """Rename the bad file to ``<name>.<kind>-<time>-<pid>``; None when another process got
    there first. Another process may also have written a fresh cache between the check and
    the rename: that file (another inode) is renamed back, never set aside."""
    aside = path.with_name(f"{path.name}.{kind}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CaloError(f"reference cache {path} is unusable and cannot be moved aside "
                        f"({one_line(error)}): delete it or make its folder writable") from error
    if _identity(aside) != identity:
        os.replace(aside, path)
        return None
    return aside
