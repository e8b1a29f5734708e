"""CaloChallenge-style histogram separation power on high-level shower features.

For two histograms h_R and h_G with the same bins, each normalised to unit sum,

    S = 1/2 * sum_k (h_R[k] - h_G[k])^2 / (h_R[k] + h_G[k])     (bins with h_R + h_G > 0)

is 0 for identical distributions and 1 for disjoint ones; it is symmetric in the two samples.
Bins are equal-width bins between the 0.5 % and 99.5 % quantiles of the two samples pooled,
the values beyond them counted in the first and last bin, so the binning too is symmetric and
follows the data whatever its scale; a feature with few distinct values (hit counts of small
showers) gets one bin per value. The cell-energy spectrum uses fixed
log-spaced bins (:data:`calo.physics.features.CELL_ENERGY_EDGES`). Empty showers (no moments)
are left out of the moment features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.physics.features import AXES, CELL_ENERGY_EDGES, ShowerFeatures

__all__ = [
    "FEATURES",
    "Histograms",
    "Separation",
    "histogram_pair",
    "separation_power",
    "separation_powers",
]

# The pooled quantiles between which the equal-width bins lie.
_CENTRAL_RANGE = (0.005, 0.995)

# Per-event high-level features: name -> function of the features.
FEATURES: dict[str, Callable[[ShowerFeatures], NDArray[np.floating]]] = {
    "etot_ratio": lambda f: f.total / f.energy,
    **{f"{axis}_centre": (lambda f, i=i: f.m1[:, i]) for i, axis in enumerate(AXES)},
    **{f"{axis}_width": (lambda f, i=i: np.sqrt(f.m2[:, i])) for i, axis in enumerate(AXES)},
    "hits": lambda f: f.hits,
}


@dataclass(frozen=True)
class Histograms:
    """Two samples' histograms of one feature on shared ``edges``, each normalised to 1."""

    edges: NDArray[np.float64]
    reference: NDArray[np.float64]
    generated: NDArray[np.float64]

    @property
    def separation(self) -> float:
        return separation_power(self.reference, self.generated)


@dataclass(frozen=True)
class Separation:
    """Separation power per feature (``values``), the histograms behind the per-event
    features and the cell spectrum, and per z layer of the layer energy / Ep."""

    histograms: dict[str, Histograms]
    layers: NDArray[np.float64]

    @property
    def values(self) -> dict[str, float]:
        values = {name: pair.separation for name, pair in self.histograms.items()}
        values["layer_energy"] = float(np.nanmean(self.layers))
        return values

    @property
    def mean(self) -> float:
        return float(np.nanmean(list(self.values.values())))


def separation_power(first: NDArray[np.floating], second: NDArray[np.floating]) -> float:
    """1/2 sum (h1 - h2)^2 / (h1 + h2) of two histograms after normalising each to unit sum;
    NaN if either is empty."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.sum() <= 0 or second.sum() <= 0:
        return float("nan")
    first, second = first / first.sum(), second / second.sum()
    total = first + second
    filled = total > 0
    return float(0.5 * ((first[filled] - second[filled]) ** 2 / total[filled]).sum())


def histogram_pair(
    reference: NDArray[np.floating], generated: NDArray[np.floating], bins: int
) -> Histograms:
    """Normalised histograms of two samples of one feature on shared pooled-quantile bins."""
    reference = _finite(reference)
    generated = _finite(generated)
    edges = _pooled_edges(np.concatenate([reference, generated]), bins)
    return Histograms(edges, _normalised(reference, edges), _normalised(generated, edges))


def separation_powers(
    reference: ShowerFeatures, generated: ShowerFeatures, bins: int
) -> Separation:
    """Separation power of every high-level feature of ``generated`` against ``reference``."""
    histograms = {name: histogram_pair(feature(reference), feature(generated), bins)
                  for name, feature in FEATURES.items()}
    histograms["cell_energy"] = Histograms(
        CELL_ENERGY_EDGES, _unit_sum(reference.cell_spectrum.sum(axis=0)),
        _unit_sum(generated.cell_spectrum.sum(axis=0)))
    depth = AXES.index("z")
    reference_layers = reference.profiles[:, depth] / reference.energy[:, None]
    generated_layers = generated.profiles[:, depth] / generated.energy[:, None]
    layers = np.array([
        histogram_pair(reference_layers[:, layer], generated_layers[:, layer], bins).separation
        for layer in range(reference_layers.shape[1])
    ])
    return Separation(histograms, layers)


def _finite(values: NDArray[np.floating]) -> NDArray[np.float64]:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _pooled_edges(pooled: NDArray[np.float64], bins: int) -> NDArray[np.float64]:
    """Equal-width edges over the pooled central 99 %, or one bin per value when there are
    few distinct values."""
    if len(pooled) == 0:
        return np.array([0.0, 1.0])
    distinct = np.unique(pooled)
    if len(distinct) > bins:
        low, high = np.quantile(pooled, _CENTRAL_RANGE)
        if high > low:
            return np.linspace(low, high, bins + 1)
        return np.linspace(distinct[0], distinct[-1], bins + 1)
    if len(distinct) == 1:
        return np.array([distinct[0] - 0.5, distinct[0] + 0.5])
    middles = (distinct[1:] + distinct[:-1]) / 2
    first = distinct[0] - (middles[0] - distinct[0])
    last = distinct[-1] + (distinct[-1] - middles[-1])
    return np.concatenate([[first], middles, [last]])


def _normalised(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit-sum histogram, values beyond the edges counted in the first and last bin."""
    return _unit_sum(np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0])


def _unit_sum(counts: NDArray[np.number]) -> NDArray[np.float64]:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts
