"""The simulator's tuned constants, fitted by least squares to the real sample's published
statistics (``python -m calo.data.calibration --fit``).

The fitted statistics are those the simulator documents as its targets: the energy-weighted
y and z moments of the average profile over 100-500 GeV (the paper's Table 3) and ECAL / Ep at
100, 300 and 500 GeV (the public 3DGAN fit). The constants fitted are the knobs
``ShowerParameters`` calls tuned: cell depth (``layer_x0``) and width (``cell_moliere``), the
Gamma shape shift (``alpha_shift``) and the visible fraction (``response_100``,
``response_slope``). Material constants, the spot density (which sets the energy resolution,
a held-out check) and ``depth_shift_x0`` stay as they are.

Each evaluation simulates the same showers (same energies, same seed), so the residuals move
smoothly with the constants that only place the spots (cell sizes) and scale them (response).
A change of ``alpha_shift`` changes which spot depths numpy's Gamma sampler rejects, and so the
stream of every later spot draw: its residuals carry spot-level noise. The per-shower
fluctuations, which dominate the statistics' errors, are drawn first and stay the same, and the
forward-difference step of 0.1 in ``alpha_shift`` keeps that noise small against the effect
(about -0.17 cells of z std per unit). The response only scales each
shower's deposits by ``response_100 * (Ep / 100) ** -response_slope``, so showers are simulated
once per set of cell sizes and shape with a unit response and scaled for any response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from calo.data.simulator import ShowerParameters, simulate_showers

__all__ = ["FITTED", "FIT_START", "CalibrationFit", "CalibrationSample", "SimulatedStatistics",
           "calibration_targets", "fit_simulator", "sf_key"]

# The tuned knobs, in the order the fit reports them.
FITTED = ("layer_x0", "cell_moliere", "alpha_shift", "response_100", "response_slope")
# Where a redone fit starts: showers.md's first guesses (about 0.75 X0 per layer, 0.75-0.8
# Moliere radii per cell, ECAL / Ep about 0.02) and GFlash's homogeneous shape (no shift).
FIT_START = ShowerParameters(layer_x0=0.75, cell_moliere=0.8, alpha_shift=0.0,
                             response_100=0.02, response_slope=0.0)
# Typical size of each knob (the fit works in knob / size) and its forward-difference step.
_SIZES = {"layer_x0": 0.75, "cell_moliere": 0.8, "alpha_shift": 1.0, "response_100": 0.02,
          "response_slope": 0.05}
_STEPS = {"layer_x0": 0.002, "cell_moliere": 0.002, "alpha_shift": 0.1, "response_100": 1e-4,
          "response_slope": 0.002}
_BOUNDS = {"layer_x0": (0.1, 3.0), "cell_moliere": (0.1, 3.0), "alpha_shift": (-0.5, 10.0),
           "response_100": (1e-4, 1.0), "response_slope": (-1.0, 1.0)}
_RESPONSE = ("response_100", "response_slope")
_AXES = {"x": (2, 3), "y": (1, 3), "z": (1, 2)}


def sf_key(energy: float) -> str:
    """The statistic name of ECAL / Ep at a fixed primary energy (GeV): ``sf_100``."""
    return f"sf_{energy:g}"


@dataclass(frozen=True)
class CalibrationSample:
    """The showers the statistics are measured on: ``n_showers`` with Ep uniform in
    [energy_min, energy_max] GeV for the shapes, ``n_fixed`` at each fixed energy for ECAL / Ep
    (the shapes' energies drawn as ``simulate_reference`` draws them)."""

    n_showers: int = 1500
    energy_min: float = 100.0
    energy_max: float = 500.0
    fixed_energies: tuple[float, ...] = (100.0, 300.0, 500.0)
    n_fixed: int = 150
    seed: int = 11
    workers: int = 1

    def range_energies(self) -> NDArray[np.float32]:
        rng = np.random.default_rng(self.seed)
        return rng.uniform(self.energy_min, self.energy_max, self.n_showers).astype(np.float32)


def calibration_targets(sample: CalibrationSample) -> dict[str, float]:
    """The published statistics the fit aims at: Table 3's shapes and the public ECAL / Ep fit
    at the sample's fixed energies."""
    from calo.published import PUBLISHED_SHAPES, sampling_fraction_fit

    return {**PUBLISHED_SHAPES, **{sf_key(energy): float(sampling_fraction_fit(energy))
                                   for energy in sample.fixed_energies}}


@dataclass(frozen=True)
class _UnitShowers:
    """Profiles {axis: (N, 25)} of showers simulated with a unit response (ECAL about Ep)."""

    energy: NDArray[np.float64]
    profiles: dict[str, NDArray[np.float64]]


def _unit_showers(params: ShowerParameters, energy: NDArray[np.floating], seed: int,
                  workers: int) -> _UnitShowers:
    unit = replace(params, response_100=1.0, response_slope=0.0)
    ecal = simulate_showers(energy, unit, seed, workers=workers)
    return _UnitShowers(np.asarray(energy, dtype=np.float64),
                        {axis: ecal.sum(axis=summed, dtype=np.float64)
                         for axis, summed in _AXES.items()})


def _response(energy: NDArray[np.float64], params: ShowerParameters) -> NDArray[np.float64]:
    """The factor a unit-response shower's deposits are scaled by (the simulator's response)."""
    return params.response_100 * (energy / 100.0) ** -params.response_slope


class SimulatedStatistics:
    """The calibration statistics of the simulator at given constants, measured on one fixed
    sample: ``<axis>_mean``/``<axis>_std`` of the average profile over the energy range (x, y
    and z; x is not fitted) and ``sf_<E>`` at the fixed energies. ``simulations`` counts the
    samples simulated (a change of response alone needs none)."""

    def __init__(self, sample: CalibrationSample,
                 on_simulation: Callable[[], None] | None = None) -> None:
        self.sample = sample
        self.simulations = 0
        self._on_simulation = on_simulation
        self._cache: dict[tuple, tuple[_UnitShowers, dict[float, _UnitShowers]]] = {}

    def _showers(self, params: ShowerParameters) -> tuple[_UnitShowers, dict[float, _UnitShowers]]:
        key = tuple(value for name, value in params.as_dict().items() if name not in _RESPONSE)
        if key not in self._cache:
            sample = self.sample
            spread = _unit_showers(params, sample.range_energies(), sample.seed, sample.workers)
            fixed = {energy: _unit_showers(params, np.full(sample.n_fixed, energy), sample.seed,
                                           sample.workers)
                     for energy in sample.fixed_energies}
            self._cache = {key: (spread, fixed)}  # the last point only: the fit moves on
            self.simulations += 1
            if self._on_simulation is not None:
                self._on_simulation()
        return self._cache[key]

    def __call__(self, params: ShowerParameters) -> dict[str, float]:
        from calo.physics.shapes import average_profile_moments

        spread, fixed = self._showers(params)
        scale = _response(spread.energy, params)[:, None]
        statistics: dict[str, float] = {}
        for axis, profile in spread.profiles.items():
            moments = average_profile_moments(profile * scale)
            statistics[f"{axis}_mean"], statistics[f"{axis}_std"] = moments.mean, moments.std
        for energy, showers in fixed.items():
            ecal = showers.profiles["z"].sum(axis=1) * _response(showers.energy, params)
            statistics[sf_key(energy)] = float((ecal / showers.energy).mean())
        return statistics


@dataclass(frozen=True)
class CalibrationFit:
    """A least-squares fit of the tuned constants: where it started and ended, the statistics
    it aimed at and reached there, and how it went."""

    start: ShowerParameters
    fitted: ShowerParameters
    names: tuple[str, ...]
    targets: dict[str, float]
    achieved: dict[str, float]
    cost: float  # half the sum of squared relative residuals at the end
    simulations: int
    converged: bool
    message: str


def fit_simulator(targets: dict[str, float], sample: CalibrationSample,
                  start: ShowerParameters = FIT_START, names: Sequence[str] = FITTED,
                  *, max_iterations: int = 20, progress: bool = False) -> CalibrationFit:
    """Least squares of the constants ``names`` (from ``start``) so that the statistics of the
    sample's showers match ``targets``: the residuals are relative deviations, one per target,
    minimised by scipy's trust-region reflective method within physical bounds."""
    from scipy.optimize import least_squares

    names = tuple(names)
    unknown = set(names) - set(FITTED)
    if unknown:
        raise ValueError(f"not a fitted constant: {sorted(unknown)}; fitted: {FITTED}")
    keys = list(targets)
    target = np.array([targets[key] for key in keys])
    sizes = np.array([_SIZES[name] for name in names])
    steps = np.array([_STEPS[name] for name in names]) / sizes
    bar = tqdm(desc="fitting the simulator", unit="sample", disable=not progress)
    statistics = SimulatedStatistics(sample, on_simulation=lambda: bar.update(1))

    def params_at(u: NDArray[np.float64]) -> ShowerParameters:
        return replace(start, **{name: float(value) for name, value in zip(names, u * sizes)})

    def relative(u: NDArray[np.float64]) -> NDArray[np.float64]:
        measured = statistics(params_at(u))
        return np.array([measured[key] for key in keys]) / target - 1.0

    def residuals(u: NDArray[np.float64]) -> NDArray[np.float64]:
        values = relative(u)
        bar.set_postfix(cost=f"{0.5 * values @ values:.3g}")
        return values

    def jacobian(u: NDArray[np.float64]) -> NDArray[np.float64]:
        # forward differences, the response columns first: they reuse u's simulated showers
        at = relative(u)
        columns = np.empty((len(keys), len(names)))
        for i in sorted(range(len(names)), key=lambda i: names[i] not in _RESPONSE):
            moved = u.copy()
            moved[i] += steps[i]
            columns[:, i] = (relative(moved) - at) / steps[i]
        return columns

    u0 = np.array([getattr(start, name) for name in names]) / sizes
    lower = np.array([_BOUNDS[name][0] for name in names]) / sizes
    upper = np.array([_BOUNDS[name][1] for name in names]) / sizes
    try:
        result = least_squares(residuals, np.clip(u0, lower, upper), jac=jacobian,
                               bounds=(lower, upper), x_scale=1.0, xtol=1e-3, ftol=1e-6,
                               max_nfev=max_iterations)
    finally:
        bar.close()
    fitted = params_at(result.x)
    return CalibrationFit(start, fitted, names, dict(targets), statistics(fitted),
                          float(result.cost), statistics.simulations, result.status > 0,
                          result.message)
