"""The run's first physics summary of a sample: shower shapes and sampling fraction."""

from __future__ import annotations

import numpy as np

from calo.data.showers import Showers
from calo.physics.shapes import binned_mean, sampling_fraction, shape_summary

__all__ = ["summarize"]


def summarize(showers: Showers, energy_bins: list[float]) -> dict[str, float]:
    """x/y/z profile mean and std, ECAL/Ep per energy bin (``sf_<lo>_<hi>``) and the
    correlation of ECAL with Ep."""
    summary = shape_summary(showers.ecal)
    fraction = sampling_fraction(showers.ecal, showers.energy)
    means, _, _ = binned_mean(fraction, showers.energy, np.asarray(energy_bins))
    for low, high, mean in zip(energy_bins, energy_bins[1:], means):
        summary[f"sf_{low:g}_{high:g}"] = float(mean)
    summary["sf_mean"] = float(fraction.mean())
    ecal = fraction * showers.energy
    summary["ecal_ep_corr"] = float(np.corrcoef(ecal, showers.energy)[0, 1])
    return summary
