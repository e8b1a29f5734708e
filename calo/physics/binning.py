"""Energy binning: per-event quantities averaged over the events of each primary-energy bin.

Bins are given by increasing edges in GeV; the last bin includes its upper edge, and events
outside the edges take part in no binned quantity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.errors import CaloError

__all__ = ["Binned", "bin_counts", "bin_index", "binned_mean", "binned_mean_per_ep",
           "means_in_shared_bins"]


@dataclass(frozen=True)
class Binned:
    """A per-event quantity averaged in bins of primary energy: mean, standard error, count."""

    mean: NDArray[np.float64]
    error: NDArray[np.float64]
    count: NDArray[np.int64]


def bin_index(energy: NDArray[np.floating], edges: NDArray[np.floating]) -> NDArray[np.int64]:
    """The energy bin of each event, -1 outside the edges; the last bin includes its upper edge."""
    energy = np.asarray(energy, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, energy, side="right") - 1, 0, len(edges) - 2)
    return np.where((energy >= edges[0]) & (energy <= edges[-1]), index, -1)


def bin_counts(energy: NDArray[np.floating], edges: NDArray[np.floating]) -> NDArray[np.int64]:
    """The number of events in each energy bin (events outside the edges in none)."""
    index = bin_index(energy, edges)
    return np.bincount(index[index >= 0], minlength=len(edges) - 1)


def binned_mean(
    values: NDArray[np.floating], energy: NDArray[np.floating], edges: NDArray[np.floating]
) -> Binned:
    """Mean of ``values`` in bins of primary energy, its standard error and the bin counts.

    Events outside the edges and NaN values are left out; empty bins give NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    nbins = len(edges) - 1
    index = bin_index(energy, edges)
    keep = (index >= 0) & np.isfinite(values)
    count = np.bincount(index[keep], minlength=nbins)
    total = np.bincount(index[keep], weights=values[keep], minlength=nbins)
    square = np.bincount(index[keep], weights=values[keep] ** 2, minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = (square / count - mean**2) * count / np.maximum(count - 1, 1)
        error = np.sqrt(np.maximum(variance, 0.0) / count)
    return Binned(mean, error, count)


def binned_mean_per_ep(
    values: NDArray[np.floating], energy: NDArray[np.floating], edges: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per bin, the mean over its events of ``values / Ep``: ``(B, ...)`` means (NaN for an
    empty bin) and the ``(B,)`` counts. ``values`` are ``(N, ...)`` per-event arrays in GeV."""
    index = bin_index(energy, edges)
    nbins = len(edges) - 1
    means = np.full((nbins, *values.shape[1:]), np.nan)
    for number in range(nbins):
        selected = index == number
        if selected.any():
            inverse = 1.0 / np.asarray(energy, dtype=np.float64)[selected]
            flat = values[selected].reshape(len(inverse), -1).astype(np.float64)
            means[number] = (inverse @ flat).reshape(values.shape[1:]) / len(inverse)
    return means, bin_counts(energy, edges)


def means_in_shared_bins(
    reference_values: NDArray[np.floating], reference_energy: NDArray[np.floating],
    generated_values: NDArray[np.floating], generated_energy: NDArray[np.floating],
    edges: NDArray[np.floating],
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """The energy bins that hold events of both samples, and each sample's
    :func:`binned_mean_per_ep` in those bins; a CaloError when no bin is shared."""
    reference_means, reference_count = binned_mean_per_ep(reference_values, reference_energy, edges)
    generated_means, generated_count = binned_mean_per_ep(generated_values, generated_energy, edges)
    shared = np.flatnonzero((reference_count > 0) & (generated_count > 0))
    if len(shared) == 0:
        raise CaloError(
            f"no energy bin of {list(np.asarray(edges).tolist())} GeV holds showers of both "
            "samples: check the primary energies or physics.energy_bins"
        )
    return shared, reference_means[shared], generated_means[shared]
