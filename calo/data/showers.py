"""The shower container every stage relies on, and the checks that keep bad data out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.data.simulator import CELLS
from calo.errors import CaloError

__all__ = ["SHOWER_SHAPE", "Showers", "check_showers"]

SHOWER_SHAPE = (CELLS, CELLS, CELLS)


@dataclass(frozen=True)
class Showers:
    """``ecal``: (N, 25, 25, 25) float32 cell energies in GeV, axes (x, y, z), z the depth;
    ``energy``: (N,) float32 primary energies Ep in GeV."""

    ecal: NDArray[np.float32]
    energy: NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.energy.shape[0])

    def head(self, n: int | None) -> Showers:
        return self if n is None or n >= len(self) else Showers(self.ecal[:n], self.energy[:n])


def check_showers(ecal: NDArray, energy: NDArray, source: str) -> Showers:
    """Validated float32 showers, or a CaloError naming ``source`` and what is wrong."""
    ecal = np.asarray(ecal)
    energy = np.asarray(energy)
    if ecal.ndim != 4 or ecal.shape[1:] != SHOWER_SHAPE:
        raise CaloError(f"{source}: ECAL has shape {ecal.shape}, expected (N, 25, 25, 25) cells")
    if ecal.shape[0] == 0:
        raise CaloError(f"{source}: holds no showers")
    if energy.shape != (ecal.shape[0],):
        raise CaloError(
            f"{source}: {ecal.shape[0]} showers but primary energies of shape {energy.shape}"
        )
    ecal = ecal.astype(np.float32, copy=False)
    energy = energy.astype(np.float32, copy=False)
    if not np.isfinite(ecal).all():
        raise CaloError(f"{source}: ECAL holds NaN or infinite cell energies")
    if (ecal < 0).any():
        raise CaloError(f"{source}: ECAL holds negative cell energies (min {ecal.min():.3g} GeV)")
    if not np.isfinite(energy).all() or (energy <= 0).any():
        raise CaloError(f"{source}: primary energies must be finite and positive")
    return Showers(ecal, energy)
