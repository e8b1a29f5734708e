"""Parametrised electromagnetic showers in the 25x25x25 cell layout of the EleEscan sample.

The Grindhammer-Peters ("GFlash") parametrisation for a homogeneous medium (NIM A290 (1990) 469;
hep-ex/0001020), with its sampling-calorimeter corrections used as tuning knobs:

* per shower, (ln T, ln alpha) of the longitudinal Gamma profile are drawn from a correlated
  2-D normal, then shifted (``depth_shift_x0``, ``alpha_shift``);
* the energy is deposited as Poisson-distributed spots of equal energy; each spot gets a depth
  from the shower's Gamma profile and a radius from the core + tail radial profile at that depth;
* spots are binned into cells of ``layer_x0`` radiation lengths along z and ``cell_moliere``
  Moliere radii across; what falls outside the 25^3 volume is lost (leakage);
* the visible energy is ``response_100 * (Ep / 100 GeV) ** -response_slope`` of Ep, and the
  spot count ``spots_per_gev * Ep`` sets the sampling fluctuations (stochastic term
  ``1 / sqrt(spots_per_gev)``).

Calibration of the default knobs against the real sample is in ``calo.data.calibration``.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

__all__ = ["CELLS", "ShowerParameters", "simulate_chunk", "simulate_showers"]

CELLS = 25
_ENTRY = CELLS / 2  # the primary enters at the centre of cell 12 (continuous coordinate 12.5)


@dataclass(frozen=True)
class ShowerParameters:
    """Material (tungsten) and the tuned geometry and response of the simulated calorimeter."""

    atomic_number: float = 74.0
    critical_energy_gev: float = 0.0080
    layer_x0: float = 0.745
    cell_moliere: float = 0.772
    depth_shift_x0: float = 0.0
    alpha_shift: float = 1.75
    response_100: float = 0.02093
    response_slope: float = 0.0442
    spots_per_gev: float = 30.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def simulate_chunk(
    energy: NDArray[np.floating], params: ShowerParameters, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Simulate one shower per primary energy (GeV); returns (N, 25, 25, 25) float32 GeV."""
    energy = np.asarray(energy, dtype=np.float64)
    n_showers = energy.size
    depth_max, alpha = _longitudinal_shape(energy, params, rng)
    beta = (alpha - 1.0) / depth_max

    n_spots = rng.poisson(params.spots_per_gev * energy)
    shower = np.repeat(np.arange(n_showers), n_spots)
    spot_energy = (_response(energy, params) / (params.spots_per_gev * energy))[shower]

    depth = rng.gamma(alpha[shower]) / beta[shower]
    radius = _radial_sample(depth / depth_max[shower], np.log(energy)[shower], params, rng)
    azimuth = rng.uniform(0.0, 2.0 * math.pi, size=radius.size)

    x = np.floor(_ENTRY + radius * np.cos(azimuth) / params.cell_moliere)
    y = np.floor(_ENTRY + radius * np.sin(azimuth) / params.cell_moliere)
    z = np.floor(depth / params.layer_x0)
    inside = (x >= 0) & (x < CELLS) & (y >= 0) & (y < CELLS) & (z < CELLS)
    cell = ((shower * CELLS + x) * CELLS + y) * CELLS + z
    deposits = np.bincount(
        cell[inside].astype(np.int64), weights=spot_energy[inside], minlength=n_showers * CELLS**3
    )
    return deposits.reshape(n_showers, CELLS, CELLS, CELLS).astype(np.float32)


def _response(energy: NDArray[np.float64], params: ShowerParameters) -> NDArray[np.float64]:
    """Visible energy (GeV) before leakage: sampling fraction falling slowly with Ep."""
    return energy * params.response_100 * (energy / 100.0) ** (-params.response_slope)


def _longitudinal_shape(
    energy: NDArray[np.float64], params: ShowerParameters, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-shower depth of maximum T (X0) and Gamma shape alpha, GFlash homogeneous + shifts."""
    ln_y = np.log(energy / params.critical_energy_gev)
    mean_ln_t = np.log(ln_y - 0.812)
    mean_ln_alpha = np.log(0.81 + (0.458 + 2.26 / params.atomic_number) * ln_y)
    sigma_ln_t = 1.0 / (-1.4 + 1.26 * ln_y)
    sigma_ln_alpha = 1.0 / (-0.58 + 0.86 * ln_y)
    rho = 0.705 - 0.023 * ln_y
    u, v = rng.standard_normal((2, energy.size))
    ln_t = mean_ln_t + sigma_ln_t * u
    ln_alpha = mean_ln_alpha + sigma_ln_alpha * (rho * u + np.sqrt(1.0 - rho**2) * v)
    depth_max = np.maximum(np.exp(ln_t) + params.depth_shift_x0, 0.5)
    alpha = np.maximum(np.exp(ln_alpha) + params.alpha_shift, 1.05)
    return depth_max, alpha


def _radial_sample(
    tau: NDArray[np.float64],
    ln_energy: NDArray[np.float64],
    params: ShowerParameters,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Radii in Moliere radii from p f_core + (1 - p) f_tail at reduced depth tau = t / T."""
    z = params.atomic_number
    core_radius = (0.0251 + 0.00319 * ln_energy) + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3 = 0.659 - 0.00309 * z, 0.645, -2.59
    k4 = 0.3585 + 0.0421 * ln_energy
    tail_radius = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2 = 0.2632 - 0.00094 * z, 0.401 + 0.00187 * z
    p3 = 1.313 - 0.0686 * ln_energy
    core_probability = p1 * np.exp((p2 - tau) / p3 - np.exp((p2 - tau) / p3))
    scale = np.where(rng.uniform(size=tau.size) < core_probability, core_radius, tail_radius)
    # f(r) = 2 r R^2 / (r^2 + R^2)^2 has CDF r^2 / (r^2 + R^2): invert it.
    u = rng.uniform(0.0, 0.999999, size=tau.size)
    return scale * np.sqrt(u / (1.0 - u))


# A spawned worker starts Python and imports the program's main module before its first
# shower: about 1.5 s under calo.run (3,000 showers took 4.8 s in one process, 4.1 s in two),
# 6 s where the main module imports TensorFlow (a script: 10.7 s against 3.7 s). So a worker is
# started only for every 2,500 showers.
SHOWERS_PER_WORKER = 2_500


def _simulate_job(job: tuple[NDArray[np.float64], ShowerParameters, int, int]) -> NDArray:
    energy, params, seed, index = job
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    return simulate_chunk(energy, params, rng)


def simulate_showers(
    energy: NDArray[np.floating],
    params: ShowerParameters,
    seed: int,
    *,
    workers: int = 1,
    chunk_size: int = 250,
    progress: bool = False,
) -> NDArray[np.float32]:
    """One shower per primary energy (GeV), as (N, 25, 25, 25) float32 GeV.

    Chunk ``i`` draws from ``SeedSequence(seed, spawn_key=(i,))``, so the result depends on the
    seed and chunk size only, not on how many worker processes share the work.
    """
    energy = np.asarray(energy, dtype=np.float64)
    workers = min(workers, max(1, energy.size // SHOWERS_PER_WORKER))
    starts = range(0, energy.size, chunk_size)
    jobs = [(energy[s : s + chunk_size], params, seed, i) for i, s in enumerate(starts)]
    out = np.empty((energy.size, CELLS, CELLS, CELLS), dtype=np.float32)
    bar = tqdm(total=energy.size, desc="simulating showers", unit="shower", disable=not progress)
    with _pool(workers) as pool:
        for start, chunk in zip(starts, pool.map(_simulate_job, jobs)):
            out[start : start + len(chunk)] = chunk
            bar.update(len(chunk))
    bar.close()
    return out


@contextmanager
def _pool(workers: int) -> Iterator[Executor]:
    """Worker processes started with spawn (safe beside TensorFlow's threads), or none."""
    if workers <= 1:
        yield _Serial()
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield pool


class _Serial(Executor):
    def map(self, fn, *iterables, **_):  # type: ignore[override]
        return map(fn, *iterables)
