"""Shower shapes: per-axis energy profiles, their energy-weighted moments, and the sampling
fraction ECAL / Ep. Showers are (N, 25, 25, 25) arrays in GeV with axes (x, y, z)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AXES",
    "binned_mean",
    "profile_moments",
    "profiles",
    "sampling_fraction",
    "shape_summary",
]

# The cell axes summed over to get the profile along each axis.
AXES: dict[str, tuple[int, int]] = {"x": (2, 3), "y": (1, 3), "z": (1, 2)}


def profiles(ecal: NDArray[np.floating]) -> dict[str, NDArray[np.float64]]:
    """Per-event energy profiles along x, y and z: {axis: (N, 25)} in GeV."""
    return {axis: ecal.sum(axis=summed, dtype=np.float64) for axis, summed in AXES.items()}


def profile_moments(
    profile: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Energy-weighted mean and standard deviation (in cell indices) along the last axis.

    m1 = sum_i i S(i) / E and std = sqrt(sum_i (i - m1)^2 S(i) / E); a profile with no energy
    gives NaN.
    """
    profile = np.asarray(profile, dtype=np.float64)
    index = np.arange(profile.shape[-1], dtype=np.float64)
    total = profile.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (profile * index).sum(axis=-1) / total
        var = (profile * (index - mean[..., None]) ** 2).sum(axis=-1) / total
    return mean, np.sqrt(np.maximum(var, 0.0))


def shape_summary(ecal: NDArray[np.floating]) -> dict[str, float]:
    """Mean and std of the average profile along each axis (the paper's Table 3 layout)."""
    summary: dict[str, float] = {}
    for axis, per_event in profiles(ecal).items():
        mean, std = profile_moments(per_event.sum(axis=0))
        summary[f"{axis}_mean"] = float(mean)
        summary[f"{axis}_std"] = float(std)
    return summary


def sampling_fraction(
    ecal: NDArray[np.floating], energy: NDArray[np.floating]
) -> NDArray[np.float64]:
    """ECAL / Ep per event."""
    return ecal.sum(axis=(1, 2, 3), dtype=np.float64) / np.asarray(energy, dtype=np.float64)


def binned_mean(
    values: NDArray[np.floating], energy: NDArray[np.floating], edges: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Mean of ``values`` in bins of primary energy, its standard error and the bin counts.

    The last bin includes its upper edge; empty bins give NaN.
    """
    edges = np.asarray(edges, dtype=np.float64)
    index = np.clip(np.digitize(energy, edges) - 1, 0, len(edges) - 2)
    inside = (energy >= edges[0]) & (energy <= edges[-1])
    nbins = len(edges) - 1
    count = np.bincount(index[inside], minlength=nbins)
    total = np.bincount(index[inside], weights=values[inside], minlength=nbins)
    square = np.bincount(index[inside], weights=values[inside] ** 2, minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = square / count - mean**2
        error = np.sqrt(np.maximum(variance, 0.0) / np.maximum(count - 1, 1))
    return mean, error, count
