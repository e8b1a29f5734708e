"""What one sample of showers looks like on its own: shower shapes (the paper's Table 3 and
Figure 5), sampling fraction, moments and hit multiplicity per energy bin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.physics.binning import Binned, binned_mean
from calo.physics.features import AXES, ShowerFeatures
from calo.physics.shapes import (
    Profile,
    WeightedMoments,
    average_profile_moments,
    mean_profile,
    sampling_fraction,
    sampling_fraction_fit,
)

__all__ = ["SampleSummary", "bin_label", "summarize_sample"]


def bin_label(low: float, high: float) -> str:
    """The suffix that names an energy bin in metric keys: ``100_200``."""
    return f"{low:g}_{high:g}"


@dataclass(frozen=True)
class SampleSummary:
    """One sample's shower shapes and per-energy-bin observables.

    ``profiles[axis]`` is the average profile (GeV per cell index) and its standard error;
    ``shapes[axis]`` the energy-weighted mean and std of that average profile (Table 3);
    ``sampling_fraction``, ``hits``, ``m1[axis]`` and ``m2[axis]`` are averages over the
    events of each bin of ``energy_edges``.
    """

    n_showers: int
    energy_edges: NDArray[np.float64]
    profiles: dict[str, Profile]
    shapes: dict[str, WeightedMoments]
    sampling_fraction: Binned
    sampling_fraction_mean: float
    sampling_fraction_fit_deviation: float
    ecal_ep_correlation: float
    hits: Binned
    hits_mean: float
    m1: dict[str, Binned]
    m2: dict[str, Binned]
    empty_fraction: float

    def metrics(self) -> dict[str, float]:
        """Scalar observables under stable names (see the README metric table)."""
        metrics: dict[str, float] = {"n_showers": float(self.n_showers)}
        for axis, shape in self.shapes.items():
            metrics[f"{axis}_peak"] = float(np.argmax(self.profiles[axis][0]))
            metrics[f"{axis}_mean"] = shape.mean
            metrics[f"{axis}_mean_err"] = shape.mean_error
            metrics[f"{axis}_std"] = shape.std
            metrics[f"{axis}_std_err"] = shape.std_error
        metrics["sf_mean"] = self.sampling_fraction_mean
        metrics["sf_fit_rel_dev"] = self.sampling_fraction_fit_deviation
        metrics["ecal_ep_corr"] = self.ecal_ep_correlation
        metrics["hits_mean"] = self.hits_mean
        metrics["empty_fraction"] = self.empty_fraction
        edges = self.energy_edges
        for index, (low, high) in enumerate(zip(edges, edges[1:])):
            label = bin_label(low, high)
            metrics[f"sf_{label}"] = float(self.sampling_fraction.mean[index])
            metrics[f"hits_{label}"] = float(self.hits.mean[index])
            for axis in AXES:
                metrics[f"{axis}_m1_{label}"] = float(self.m1[axis].mean[index])
                metrics[f"{axis}_m2_{label}"] = float(self.m2[axis].mean[index])
        return metrics


def summarize_sample(features: ShowerFeatures, energy_edges: NDArray[np.floating]) -> SampleSummary:
    """The :class:`SampleSummary` of a sample's features, binned by ``energy_edges`` (GeV)."""
    edges = np.asarray(energy_edges, dtype=np.float64)
    energy = features.energy
    fraction = sampling_fraction(features.total, energy)
    fit = sampling_fraction_fit(energy)
    with np.errstate(invalid="ignore"):
        correlation = np.corrcoef(features.total, energy)[0, 1] if len(energy) > 1 else np.nan
    return SampleSummary(
        n_showers=len(features),
        energy_edges=edges,
        profiles={axis: mean_profile(features.profile(axis)) for axis in AXES},
        shapes={axis: average_profile_moments(features.profile(axis)) for axis in AXES},
        sampling_fraction=binned_mean(fraction, energy, edges),
        sampling_fraction_mean=float(fraction.mean()),
        sampling_fraction_fit_deviation=float(np.mean(fraction / fit)) - 1,
        ecal_ep_correlation=float(correlation),
        hits=binned_mean(features.hits, energy, edges),
        hits_mean=float(features.hits.mean()),
        m1={axis: binned_mean(features.m1[:, i], energy, edges) for i, axis in enumerate(AXES)},
        m2={axis: binned_mean(features.m2[:, i], energy, edges) for i, axis in enumerate(AXES)},
        empty_fraction=float(np.mean(features.total <= 0)),
    )
