"""The single validation number (SVN): the paper's "total mean squared error between 2-D
projections of the generated and the reference showers", made precise.

For a sample S, an energy bin b and a projection plane p (xy: summed over z, xz: summed over y,
yz: summed over x), the mean projection per unit primary energy is

    P_S,b,p[i, j] = (1 / N_S,b) * sum over events e of S in bin b of proj_p(X_e)[i, j] / Ep_e

Dividing each event by its Ep removes the energy dependence inside a bin. The SVN of G against
the reference R is the squared error relative to the reference's own size, averaged over the
three planes and the bins B that hold events of both samples:

    SVN = 1 / (3 |B|) * sum_b sum_p  sum_ij (P_G,b,p - P_R,b,p)^2 / sum_ij P_R,b,p^2

It is 0 for identical samples, eps^2 when G is R scaled by (1 + eps), and 1 for an empty G.
It is not symmetric: the reference sets the scale. Its statistical floor is the same number
between two independent halves of the reference (each half has half the events, so the floor
is about twice the noise of a comparison of two full-size samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.physics.binning import means_in_shared_bins
from calo.physics.features import PLANES, ShowerFeatures

__all__ = ["SvnResult", "single_validation_number"]


@dataclass(frozen=True)
class SvnResult:
    """The SVN, its three per-plane terms (averaged over bins) and the bins it used."""

    value: float
    planes: dict[str, float]
    bins: tuple[int, ...]


def single_validation_number(
    reference: ShowerFeatures, generated: ShowerFeatures, energy_edges: NDArray[np.floating]
) -> SvnResult:
    """SVN of ``generated`` against ``reference`` (see the module docstring for the formula)."""
    bins, reference_mean, generated_mean = means_in_shared_bins(
        reference.projections, reference.energy, generated.projections, generated.energy,
        energy_edges)
    error = ((generated_mean - reference_mean) ** 2).sum(axis=(2, 3))
    scale = (reference_mean ** 2).sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = (error / scale).mean(axis=0)  # (planes,), averaged over bins
    planes = {plane: float(value) for plane, value in zip(PLANES, relative)}
    return SvnResult(float(relative.mean()), planes, tuple(int(b) for b in bins))
