"""The 3DGAN analysis metric: mean relative error of the shower moments and of the average
profiles, over energy bins (after the optimisation metric of the public 3DGAN analysis code).

For each energy bin b that holds events of both samples (G generated, R reference):

* moments: for each axis a and k = 1, 2, <m_k> the mean over the bin's non-empty events of
  the per-event moment (m1 = sum_i i S(i) / E, m2 = sum_i (i - m1)^2 S(i) / E);
  moment_b = 1/6 * sum_a sum_k |<m_k>_G - <m_k>_R| / |<m_k>_R|
* profiles: for each axis, P(i) the bin's mean of the per-event profile S(i) / Ep;
  profile_b = 1/3 * sum_a sum_i |P_G(i) - P_R(i)| / sum_i P_R(i)
  (the energy-weighted mean of the per-cell relative error: cells the reference barely fills
  do not dominate it, as a plain per-cell ratio would).

moment_rel_error and profile_rel_error are the means over bins; analysis_metric is their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.physics.binning import binned_mean, means_in_shared_bins
from calo.physics.features import ShowerFeatures

__all__ = ["AnalysisMetric", "analysis_metric"]


@dataclass(frozen=True)
class AnalysisMetric:
    moment_rel_error: float
    profile_rel_error: float

    @property
    def value(self) -> float:
        return self.moment_rel_error + self.profile_rel_error


def analysis_metric(
    reference: ShowerFeatures, generated: ShowerFeatures, energy_edges: NDArray[np.floating]
) -> AnalysisMetric:
    """The 3DGAN analysis metric of ``generated`` against ``reference`` (see the module)."""
    bins, reference_profiles, generated_profiles = means_in_shared_bins(
        reference.profiles, reference.energy, generated.profiles, generated.energy, energy_edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile_error = (np.abs(generated_profiles - reference_profiles).sum(axis=2)
                         / reference_profiles.sum(axis=2))  # (bins, axes)
        reference_moments = _binned_moments(reference, energy_edges)[bins]
        generated_moments = _binned_moments(generated, energy_edges)[bins]
        moment_error = np.abs(generated_moments - reference_moments) / np.abs(reference_moments)
    return AnalysisMetric(
        moment_rel_error=float(np.nanmean(moment_error)),
        profile_rel_error=float(np.nanmean(profile_error)),
    )


def _binned_moments(
    features: ShowerFeatures, energy_edges: NDArray[np.floating]
) -> NDArray[np.float64]:
    """(bins, axes, 2): per bin and axis, the mean per-event m1 and m2."""
    return np.stack([
        np.stack([binned_mean(moment[:, axis], features.energy, energy_edges).mean
                  for moment in (features.m1, features.m2)], axis=-1)
        for axis in range(features.m1.shape[1])
    ], axis=1)
