"""Shower shapes: energy profiles along one axis, their energy-weighted moments with
statistical errors, and the sampling fraction ECAL / Ep (with the public 3DGAN fit, kept in
calo.data.calibration).

A profile S(i) is the energy (GeV) in the cells with index i along one axis, summed over the
other two; ``(N, 25)`` arrays hold one profile per event. Showers are ``(N, 25, 25, 25)``
arrays in GeV with axes (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.published import sampling_fraction_fit

__all__ = [
    "PROFILE_SUMS",
    "Profile",
    "WeightedMoments",
    "average_profile_moments",
    "mean_profile",
    "profile_moments",
    "profiles",
    "sampling_fraction",
    "sampling_fraction_fit",
    "shape_summary",
]

# The cell axes of a shower array summed over to get the profile along each axis.
PROFILE_SUMS: dict[str, tuple[int, int]] = {"x": (2, 3), "y": (1, 3), "z": (1, 2)}


@dataclass(frozen=True)
class WeightedMoments:
    """Energy-weighted mean and standard deviation (cell indices) with statistical errors."""

    mean: float
    mean_error: float
    std: float
    std_error: float


def profile_moments(
    profile: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Energy-weighted mean m1 and central second moment m2 along the last axis.

    m1 = sum_i i S(i) / E and m2 = sum_i (i - m1)^2 S(i) / E with E = sum_i S(i) (the
    3DGAN definitions); a profile with no energy gives NaN.
    """
    profile = np.asarray(profile, dtype=np.float64)
    index = np.arange(profile.shape[-1], dtype=np.float64)
    total = profile.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (profile @ index) / total
        second = (profile * (index - mean[..., None]) ** 2).sum(axis=-1) / total
    return mean, np.maximum(second, 0.0)


def average_profile_moments(profiles: NDArray[np.floating]) -> WeightedMoments:
    """Mean and std of the average profile of ``(N, C)`` per-event profiles (paper's Table 3).

    Both are ratios of sums over events: m = sum_e A_e / sum_e E_e with A_e = sum_i i S_e(i)
    and E_e = sum_i S_e(i), and v = sum_e B_e / sum_e E_e with B_e = sum_i (i - m)^2 S_e(i).
    Their errors are those of a ratio estimator (delta method):
    err(m) = sqrt(n / (n - 1) * sum_e (A_e - m E_e)^2) / sum_e E_e, the same for v, and
    err(std) = err(v) / (2 std). The uncertainty of m does not enter v at first order.
    """
    profiles = np.asarray(profiles, dtype=np.float64)
    index = np.arange(profiles.shape[-1], dtype=np.float64)
    event_energy = profiles.sum(axis=1)
    total = event_energy.sum()
    if len(profiles) == 0 or total <= 0:
        return WeightedMoments(np.nan, np.nan, np.nan, np.nan)
    correction = len(profiles) / max(len(profiles) - 1, 1)

    def ratio_and_error(numerators: NDArray[np.float64]) -> tuple[float, float]:
        ratio = numerators.sum() / total
        residual = numerators - ratio * event_energy
        return float(ratio), float(np.sqrt(correction * (residual**2).sum()) / total)

    mean, mean_error = ratio_and_error(profiles @ index)
    variance, variance_error = ratio_and_error(profiles @ (index - mean) ** 2)
    std = float(np.sqrt(max(variance, 0.0)))
    std_error = variance_error / (2 * std) if std > 0 else 0.0
    return WeightedMoments(mean, mean_error, std, std_error)


Profile = tuple[NDArray[np.float64], NDArray[np.float64]]  # mean per cell, its error


def mean_profile(profiles: NDArray[np.floating]) -> Profile:
    """Average of ``(N, C)`` per-event profiles per cell index and its standard error."""
    profiles = np.asarray(profiles, dtype=np.float64)
    count = len(profiles)
    mean = profiles.mean(axis=0)
    spread = profiles.std(axis=0, ddof=1) if count > 1 else np.zeros_like(mean)
    return mean, spread / np.sqrt(count)


def profiles(ecal: NDArray[np.floating]) -> dict[str, NDArray[np.float64]]:
    """Per-event profiles of ``(N, 25, 25, 25)`` showers: {axis: (N, 25)} in GeV."""
    return {axis: ecal.sum(axis=summed, dtype=np.float64) for axis, summed in PROFILE_SUMS.items()}


def shape_summary(ecal: NDArray[np.floating]) -> dict[str, float]:
    """``<axis>_mean`` and ``<axis>_std`` of the average profile of showers (Table 3)."""
    summary: dict[str, float] = {}
    for axis, per_event in profiles(ecal).items():
        moments = average_profile_moments(per_event)
        summary[f"{axis}_mean"] = moments.mean
        summary[f"{axis}_std"] = moments.std
    return summary


def sampling_fraction(
    ecal: NDArray[np.floating], energy: NDArray[np.floating]
) -> NDArray[np.float64]:
    """ECAL / Ep per event, from ``(N, 25, 25, 25)`` showers or their ``(N,)`` summed cell
    energies, and the primary energies (GeV)."""
    ecal = np.asarray(ecal)
    total = ecal.sum(axis=(1, 2, 3), dtype=np.float64) if ecal.ndim == 4 else ecal
    return np.asarray(total, dtype=np.float64) / np.asarray(energy, dtype=np.float64)
