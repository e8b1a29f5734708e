"""Held-out checks of the simulator: what its calibration did not fit, against physics it must
still follow (``python -m calo.data.calibration`` shows them).

The fit (``calo.data.simulator_fit``) used only the y and z moments of the average profile over
100-500 GeV and ECAL / Ep at 100, 300 and 500 GeV. Not fitted, and checked here:

* the x profile: the real sample is symmetric about the beam axis, so its x moments are the
  published y moments;
* the shapes at fixed energies from 10 to 500 GeV (the fit saw only their 100-500 GeV mix);
* the depth of the average longitudinal profile's maximum against ln E: for electron showers
  t_max = ln(E / E_c) - 0.5 radiation lengths (Rossi; the PDG's review of passage of particles
  through matter), a slope of one X0 per unit of ln E;
* the energy resolution sigma(ECAL) / ECAL = a / sqrt(E) (+) c: showers.md expects a stochastic
  term a of 15-20 % for silicon-tungsten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.data.simulator import ShowerParameters, simulate_showers

__all__ = ["HELD_OUT_ENERGIES", "PDG_ELECTRON_OFFSET_X0", "STOCHASTIC_RANGE", "EnergyPoint",
           "HeldOutChecks", "LineFit", "heldout_checks", "peak_depth", "resolution_terms"]

HELD_OUT_ENERGIES = (10.0, 20.0, 50.0, 100.0, 200.0, 300.0, 500.0)
PDG_ELECTRON_OFFSET_X0 = -0.5  # t_max = ln(E / E_c) + C_e with C_e = -0.5 for electrons
STOCHASTIC_RANGE = (0.15, 0.20)  # showers.md: silicon-tungsten, per sqrt(E / GeV)


@dataclass(frozen=True)
class EnergyPoint:
    """The showers at one fixed primary energy (GeV): shapes in cells, the depth of the
    average longitudinal profile's maximum in X0 and the relative spread of ECAL."""

    energy: float
    n_showers: int
    x_std: float
    y_std: float
    z_mean: float
    z_std: float
    peak_x0: float
    resolution: float
    resolution_error: float


@dataclass(frozen=True)
class LineFit:
    """y = intercept + slope * ln(E / GeV), with standard errors."""

    slope: float
    slope_error: float
    intercept: float
    intercept_error: float

    def at(self, energy: float) -> float:
        return self.intercept + self.slope * math.log(energy)


@dataclass(frozen=True)
class HeldOutChecks:
    """The held-out checks (module docstring) of one set of constants."""

    params: ShowerParameters
    points: list[EnergyPoint]
    peak: LineFit  # peak depth (X0) against ln E
    stochastic: float  # a of sigma / E = a / sqrt(E) (+) c, E in GeV
    constant: float  # c

    def expected_peak_x0(self, energy: float) -> float:
        """t_max of an electron shower (PDG) with the simulated material's critical energy."""
        return math.log(energy / self.params.critical_energy_gev) + PDG_ELECTRON_OFFSET_X0


def peak_depth(mean_profile: NDArray[np.floating], layer_x0: float) -> float:
    """Depth (X0) of the maximum of an average longitudinal profile (energy per layer): the
    vertex of the parabola through the logarithms of the hottest layer and its neighbours,
    layer i spanning [i, i + 1) layers."""
    profile = np.asarray(mean_profile, dtype=np.float64)
    hottest = int(np.clip(profile.argmax(), 1, len(profile) - 2))
    before, at, after = np.log(np.maximum(profile[hottest - 1 : hottest + 2], 1e-300))
    curvature = before - 2.0 * at + after
    offset = 0.0 if curvature >= 0 else 0.5 * (before - after) / curvature
    return (hottest + 0.5 + float(np.clip(offset, -1.0, 1.0))) * layer_x0


def resolution_terms(energies: Sequence[float], resolutions: Sequence[float],
                     errors: Sequence[float]) -> tuple[float, float]:
    """(a, c) of sigma / E = a / sqrt(E) (+) c: weighted non-negative least squares of
    (sigma / E)^2 = a^2 / E + c^2."""
    from scipy.optimize import nnls

    energy, value, error = (np.asarray(v, dtype=np.float64)
                            for v in (energies, resolutions, errors))
    weight = 1.0 / np.maximum(2.0 * value * error, 1e-12)  # the error of (sigma / E)^2
    design = np.column_stack([1.0 / energy, np.ones_like(energy)]) * weight[:, None]
    (a2, c2), _ = nnls(design, value**2 * weight)
    return math.sqrt(a2), math.sqrt(c2)


def _line(energies: Sequence[float], values: Sequence[float]) -> LineFit:
    """Ordinary least squares against ln E; errors from the scatter (NaN for two points)."""
    x, y = np.log(np.asarray(energies, dtype=np.float64)), np.asarray(values, dtype=np.float64)
    design = np.column_stack([x, np.ones_like(x)])
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(x) - 2
    scatter = float(((y - design @ (slope, intercept)) ** 2).sum() / dof) if dof else math.nan
    cov = scatter * np.linalg.inv(design.T @ design)
    return LineFit(float(slope), math.sqrt(cov[0, 0]), float(intercept), math.sqrt(cov[1, 1]))


def _point(energy: float, ecal: NDArray[np.float32], params: ShowerParameters) -> EnergyPoint:
    from calo.physics.shapes import average_profile_moments, profiles

    per_event = profiles(ecal)
    moments = {axis: average_profile_moments(profile) for axis, profile in per_event.items()}
    total = per_event["z"].sum(axis=1)
    resolution = float(total.std(ddof=1) / total.mean())
    return EnergyPoint(energy, len(ecal), moments["x"].std, moments["y"].std, moments["z"].mean,
                       moments["z"].std, peak_depth(per_event["z"].mean(axis=0), params.layer_x0),
                       resolution, resolution / math.sqrt(2.0 * (len(ecal) - 1)))


def heldout_checks(params: ShowerParameters, n_showers: int = 200,
                   energies: Sequence[float] = HELD_OUT_ENERGIES, seed: int = 23,
                   workers: int = 1) -> HeldOutChecks:
    """Simulate ``n_showers`` at each energy (GeV; seed + i for the i-th) and measure what the
    calibration did not fit."""
    if len(energies) < 2 or n_showers < 2:
        raise ValueError("the held-out checks need two energies or more, two showers or more")
    points = [_point(energy, simulate_showers(np.full(n_showers, energy), params, seed + i,
                                              workers=workers), params)
              for i, energy in enumerate(energies)]
    peak = _line([p.energy for p in points], [p.peak_x0 for p in points])
    stochastic, constant = resolution_terms([p.energy for p in points],
                                            [p.resolution for p in points],
                                            [p.resolution_error for p in points])
    return HeldOutChecks(params, points, peak, stochastic, constant)
