"""Time the physics validation on full-size samples.

    python -m calo.physics --benchmark --showers 10000 [--figures]

The reference is the run's cached simulated sample (simulated once if absent). The fp32 and
engine samples are derived from it the way a generator's output looks to the metrics: every
cell filled (a ReLU network leaves few exact zeros), and the engine is the fp32 sample rounded
to a coarse grid, as a quantized network would leave it. Only the timing means anything here.
"""

from __future__ import annotations

import argparse
import io
import logging
import resource
import sys
import time

import numpy as np

from calo.cli import exit_on_user_error
from calo.config import DataConfig, PhysicsConfig
from calo.data import Showers, load_reference
from calo.physics.validate import validate

_CHUNK = 256
_NOISE_GEV = 1e-5  # mean energy a generator leaves in cells the shower does not reach
_GRID_GEV = 1e-4  # the engine's cell-energy resolution


def generator_like(reference: Showers, seed: int) -> tuple[Showers, Showers]:
    """(fp32, engine) samples with the reference's energies and every cell filled."""
    rng = np.random.default_rng(seed)
    fp32 = np.empty_like(reference.ecal)
    engine = np.empty_like(reference.ecal)
    grid = np.float32(_GRID_GEV)
    for start in range(0, len(reference), _CHUNK):
        cells = reference.ecal[start : start + _CHUNK]
        stop = start + len(cells)
        smear = rng.standard_normal(cells.shape, dtype=np.float32) * np.float32(0.05)
        noise = rng.standard_exponential(cells.shape, dtype=np.float32) * np.float32(_NOISE_GEV)
        fp32[start:stop] = cells * (1 + smear).clip(0) + noise
        engine[start:stop] = np.round(fp32[start:stop] / grid) * grid
    return Showers(fp32, reference.energy), Showers(engine, reference.energy)


def benchmark(showers: int, figures: bool) -> None:
    reference = load_reference(DataConfig(name="reference", n_showers=showers))
    fp32, engine = generator_like(reference, seed=1)
    start = time.perf_counter()
    result = validate(reference, engine, fp32=fp32, settings=PhysicsConfig())
    elapsed = time.perf_counter() - start
    print(f"validate: {len(reference)} reference + {len(fp32)} fp32 + {len(engine)} engine "
          f"showers, {len(result.metrics())} metrics in {elapsed:.1f} s")
    if figures:
        from calo.physics.plots import validation_figures

        start = time.perf_counter()
        drawn = validation_figures(result, "engine")
        for figure in drawn.values():
            figure.savefig(io.BytesIO(), format="png")
        print(f"figures: {len(drawn)} drawn and rendered in {time.perf_counter() - start:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory: {peak:.2f} GiB (the three samples alone: "
          f"{3 * reference.ecal.nbytes / 2**30:.2f} GiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calo.physics",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", action="store_true", help="time validate() (required)")
    parser.add_argument("--showers", type=int, default=10_000, help="showers per sample")
    parser.add_argument("--figures", action="store_true", help="also time the figures")
    args = parser.parse_args(argv)
    if not args.benchmark:
        parser.print_help()
        return 2
    if args.showers < 2:
        parser.error(f"--showers must be at least 2, got {args.showers}")
    exit_on_user_error(benchmark, args.showers, args.figures)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sys.exit(main())
