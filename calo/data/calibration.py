"""The real EleEscan sample's published statistics, and how the simulator reproduces them.

    python -m calo.data.calibration [--showers 4000]

prints the achieved values beside the targets (the table in the README).
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.typing import NDArray

__all__ = ["PUBLISHED_SHAPES", "calibration_report", "sampling_fraction_fit"]

# The paper's Table 3 (Geant4), energy-weighted moments of the average profile in cell indices.
PUBLISHED_SHAPES = {"y_mean": 12.00, "y_std": 1.45, "z_mean": 13.85, "z_std": 4.62}

# The public 3DGAN fit of ECAL / Ep for electrons, in percent, of Ep / 100 GeV.
_FIT_COEFFICIENTS = (0.0018, -0.023, 0.11, -0.28, 2.21)


def sampling_fraction_fit(energy: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """ECAL / Ep of the real sample at primary energy Ep (GeV): 2.02 % at 100, 1.81 % at 500."""
    return np.polyval(_FIT_COEFFICIENTS, np.asarray(energy, dtype=np.float64) / 100.0) / 100.0


def calibration_report(n_showers: int = 4000, seed: int = 11) -> list[tuple[str, float, float]]:
    """(quantity, published, simulated) for the shapes over 100-500 GeV and the sampling
    fraction at 100, 300 and 500 GeV."""
    from calo.data.reference import simulate_reference
    from calo.data.simulator import ShowerParameters, simulate_showers
    from calo.physics.shapes import sampling_fraction, shape_summary

    sample = simulate_reference(n_showers, 100.0, 500.0, seed, progress=False)
    shapes = shape_summary(sample.ecal)
    rows = [(key, target, shapes[key]) for key, target in PUBLISHED_SHAPES.items()]
    for energy in (100.0, 300.0, 500.0):
        energies = np.full(n_showers // 10, energy)
        ecal = simulate_showers(energies, ShowerParameters(), seed)
        rows.append((f"sf_{energy:g}", float(sampling_fraction_fit(energy)),
                     float(sampling_fraction(ecal, energies).mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m calo.data.calibration")
    parser.add_argument("--showers", type=int, default=4000)
    args = parser.parse_args()
    print(f"{'quantity':<10} {'published':>10} {'simulated':>10} {'deviation':>10}")
    for key, target, achieved in calibration_report(args.showers):
        print(f"{key:<10} {target:>10.4g} {achieved:>10.4g} {achieved / target - 1:>+10.2%}")


if __name__ == "__main__":
    main()
