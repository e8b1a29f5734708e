"""HDF5 files in the layout of the Geant4 EleEscan sample: ``ECAL`` (N, 25, 25, 25) GeV and the
primary energy Ep as ``target[:, 1]``, ``energy[:, 0, 1]`` or a 1-D ``energy``."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray

from calo.data.showers import Showers, check_showers
from calo.errors import CaloError
from calo.paths import atomic_path

__all__ = ["ELECTRON_PDG", "find_files", "read_eleescan", "write_eleescan"]

ELECTRON_PDG = 11


def find_files(pattern: str | os.PathLike[str]) -> list[Path]:
    """A file, every ``*.h5`` in a folder, or the files matching a glob, sorted."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
    elif any(ch in str(pattern) for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path)))
    else:
        files = [path] if path.exists() else []
    if not files:
        raise CaloError(f"no HDF5 files found at {pattern}: give a file, a folder or a glob")
    return files


def _primary_energy(h5: h5py.File, source: str) -> NDArray:
    if "target" in h5 and h5["target"].ndim == 2 and h5["target"].shape[1] >= 2:
        return h5["target"][:, 1]
    if "energy" in h5 and h5["energy"].ndim == 3:
        return h5["energy"][:, 0, 1]
    if "energy" in h5 and h5["energy"].ndim == 1:
        return h5["energy"][:]
    found = ", ".join(f"{k} {h5[k].shape}" for k in h5 if isinstance(h5[k], h5py.Dataset))
    raise CaloError(
        f"{source}: no primary energy: expected target[:, 1], energy[:, 0, 1] or a 1-D "
        f"energy; found {found or 'no datasets'}"
    )


def read_file(path: Path, max_showers: int | None = None) -> Showers:
    """One EleEscan file, validated."""
    source = str(path)
    try:
        with h5py.File(path, "r") as h5:
            if "ECAL" not in h5:
                raise CaloError(f"{source}: no ECAL dataset (found: {', '.join(h5) or 'nothing'})")
            count = h5["ECAL"].shape[0] if max_showers is None else max_showers
            ecal = h5["ECAL"][:count]
            energy = _primary_energy(h5, source)[:count]
    except FileNotFoundError as error:
        raise CaloError(f"{source}: file not found") from error
    except OSError as error:
        reason = str(error).split("(")[-1].rstrip(")") if "(" in str(error) else str(error)
        raise CaloError(f"{source}: not a readable HDF5 file ({reason})") from error
    return check_showers(ecal, energy, source)


def read_eleescan(
    pattern: str | os.PathLike[str], max_showers: int | None = None, cell_threshold: float = 0.0
) -> Showers:
    """Read and concatenate EleEscan files until ``max_showers``; cells below the threshold
    (GeV) are zeroed, as the 3DGAN preprocessing does."""
    parts: list[Showers] = []
    remaining = max_showers
    for path in find_files(pattern):
        part = read_file(path, remaining)
        parts.append(part)
        if remaining is not None:
            remaining -= len(part)
            if remaining <= 0:
                break
    ecal = np.concatenate([p.ecal for p in parts]) if len(parts) > 1 else parts[0].ecal
    energy = np.concatenate([p.energy for p in parts])
    if cell_threshold > 0:
        ecal[ecal < cell_threshold] = 0.0
    return Showers(ecal, energy)


def write_eleescan(
    path: str | os.PathLike[str], showers: Showers, attrs: dict | None = None
) -> Path:
    """Write atomically: a temporary file in the same folder, renamed only once complete, so an
    interrupted write never leaves a file that looks whole."""
    path = Path(path)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as h5:
        h5.create_dataset("ECAL", data=showers.ecal, chunks=(1, *showers.ecal.shape[1:]),
                          compression="gzip", compression_opts=1, shuffle=True)
        target = np.stack([np.full(len(showers), ELECTRON_PDG, np.float32), showers.energy], 1)
        h5.create_dataset("target", data=target)
        h5.create_dataset("energy", data=showers.energy)
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
    return path
