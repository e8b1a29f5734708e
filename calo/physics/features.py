"""Per-event quantities that every physics metric is computed from.

The showers are read once, in chunks (a 10,000-shower sample is 625 MB of float32); what is
kept per event is small (about 9 kB), so metrics on energy bins or on halves of a sample are
index subsets, not new passes over the cells.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from calo.data.showers import Showers
from calo.physics.shapes import profile_moments

__all__ = [
    "AXES",
    "CELL_ENERGY_EDGES",
    "PLANES",
    "ShowerFeatures",
    "extract_features",
]

AXES = ("x", "y", "z")
# 2-D projections: the plane's two axes are kept, the third is summed over.
PLANES = ("xy", "xz", "yz")
_PLANE_SUMMED_AXIS = {"xy": 3, "xz": 2, "yz": 1}

# Log-spaced bins of the cell-energy spectrum (GeV), 10 per decade; cells outside the range
# land in the first or last bin; empty cells are not counted.
_SPECTRUM_LOG10_RANGE = (-7.0, 2.0)
_SPECTRUM_BINS_PER_DECADE = 10
CELL_ENERGY_EDGES = np.logspace(
    *_SPECTRUM_LOG10_RANGE,
    int((_SPECTRUM_LOG10_RANGE[1] - _SPECTRUM_LOG10_RANGE[0]) * _SPECTRUM_BINS_PER_DECADE) + 1,
)

_CHUNK = 256


@dataclass(frozen=True)
class ShowerFeatures:
    """Per-event features of N showers.

    ``energy`` (N,) Ep in GeV; ``total`` (N,) ECAL, the summed cell energies in GeV;
    ``projections`` (N, 3, 25, 25) float32 in GeV, planes in :data:`PLANES` order;
    ``profiles`` (N, 3, 25) in GeV along x, y, z; ``m1``/``m2`` (N, 3) the energy-weighted
    mean and central second moment of each profile (NaN for an empty shower); ``hits`` (N,)
    cells above the hit threshold; ``cell_spectrum`` (N, bins) counts of non-empty cells per
    :data:`CELL_ENERGY_EDGES` bin.
    """

    energy: NDArray[np.float64]
    total: NDArray[np.float64]
    projections: NDArray[np.float32]
    profiles: NDArray[np.float64]
    m1: NDArray[np.float64]
    m2: NDArray[np.float64]
    hits: NDArray[np.int64]
    cell_spectrum: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.energy.shape[0])

    def subset(self, index: NDArray[np.integer] | NDArray[np.bool_]) -> ShowerFeatures:
        """The features of the events selected by an index or mask."""
        return ShowerFeatures(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def profile(self, axis: str) -> NDArray[np.float64]:
        """(N, 25) profiles along ``axis``."""
        return self.profiles[:, AXES.index(axis)]


def extract_features(
    showers: Showers, hit_threshold: float, progress: bool = False
) -> ShowerFeatures:
    """Read the cells of ``showers`` once and keep what the metrics need (see the class)."""
    count, cells = len(showers), showers.ecal.shape[1]
    projections = np.empty((count, len(PLANES), cells, cells), np.float32)
    hits = np.empty(count, np.int64)
    spectrum = np.empty((count, len(CELL_ENERGY_EDGES) - 1), np.int64)
    with tqdm(total=count, desc="shower features", unit="shower", disable=not progress) as bar:
        for start in range(0, count, _CHUNK):
            chunk = showers.ecal[start : start + _CHUNK]
            stop = start + len(chunk)
            for plane_index, plane in enumerate(PLANES):
                chunk.sum(axis=_PLANE_SUMMED_AXIS[plane], out=projections[start:stop, plane_index])
            hits[start:stop] = np.count_nonzero(chunk.reshape(len(chunk), -1) > hit_threshold, 1)
            spectrum[start:stop] = _cell_spectrum(chunk)
            bar.update(len(chunk))
    xy, xz = projections[:, 0].astype(np.float64), projections[:, 1].astype(np.float64)
    profiles = np.stack([xy.sum(axis=2), xy.sum(axis=1), xz.sum(axis=1)], axis=1)
    m1, m2 = profile_moments(profiles)
    return ShowerFeatures(
        energy=showers.energy.astype(np.float64),
        total=profiles[:, 0].sum(axis=1),
        projections=projections,
        profiles=profiles,
        m1=m1,
        m2=m2,
        hits=hits,
        cell_spectrum=spectrum,
    )


def _cell_spectrum(chunk: NDArray[np.float32]) -> NDArray[np.int64]:
    """Per-event histogram of log10(cell energy) of the non-empty cells of a chunk."""
    flat = chunk.reshape(len(chunk), -1)
    filled = flat > 0
    values = flat[filled]
    event = np.repeat(np.arange(len(chunk)), np.count_nonzero(filled, axis=1))
    low = _SPECTRUM_LOG10_RANGE[0]
    nbins = len(CELL_ENERGY_EDGES) - 1
    column = ((np.log10(values) - low) * _SPECTRUM_BINS_PER_DECADE).astype(np.int64)
    np.clip(column, 0, nbins - 1, out=column)
    counts = np.bincount(event * nbins + column, minlength=len(chunk) * nbins)
    return counts.reshape(len(chunk), nbins)
