"""Numbers published elsewhere that this project compares with, in one place: the paper's
Tables 1, 3, 4 and 5 (Rehm et al., reduced-precision 3DGAN) and the public 3DGAN's fit of the
sampling fraction. Constants only (and the fit's polynomial): every layer may import this.

The paper measured speed for fp32 and its int8 model (Intel's low precision tool, the ancestor
of Neural Compressor) only: TFLite "only for measuring the accuracy ... and not inference
speed-up".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["PAPER", "PAPER_MACHINE", "PAPER_SPEED", "PAPER_TOPOLOGY", "PUBLISHED_SHAPES",
           "sampling_fraction_fit"]

# The paper's Table 3 (Geant4), energy-weighted moments of the average profile in cell indices.
PUBLISHED_SHAPES = {"y_mean": 12.00, "y_std": 1.45, "z_mean": 13.85, "z_std": 4.62}

# The paper's values: Table 3 (energy-weighted mean and std of the average profile, cells),
# Table 4 (MSE-based single validation number: the paper's own definition, not ours) and
# Table 5 (pixel-wise mean and std, units not stated).
PAPER: dict[str, dict[str, float]] = {
    "reference": dict(PUBLISHED_SHAPES),
    "fp32": {"y_mean": 12.02, "y_std": 1.46, "z_mean": 13.81, "z_std": 4.50, "svn": 0.061},
    "int8_inc": {"y_mean": 12.03, "y_std": 1.45, "z_mean": 13.91, "z_std": 4.48, "svn": 0.053,
                 "pixel_abs_mean": 1.550, "pixel_abs_std": 0.191},
    "fp16_tflite": {"y_mean": 12.05, "y_std": 1.13, "z_mean": 13.78, "z_std": 4.50,
                    "svn": 0.254, "pixel_abs_mean": 0.133, "pixel_abs_std": 0.291},
    "int8_tflite": {"y_mean": 12.10, "y_std": 1.19, "z_mean": 14.25, "z_std": 4.62,
                    "svn": 0.340, "pixel_abs_mean": 4.054, "pixel_abs_std": 0.721},
}

PAPER_MACHINE = "Intel Xeon Platinum 8280 (Cascade Lake), 2 sockets x 28 cores"
PAPER_TOPOLOGY = (56, 7)  # threads, streams of the paper's Table 1 (its best Figure 4 cell)

# Table 1: inference time in ms (batch size not stated) and the int8 speed-up over fp32.
PAPER_SPEED: dict[str, dict[str, float]] = {
    "fp32": {"time_ms": 55.7, "speedup": 1.0},
    "int8_inc": {"time_ms": 32.3, "speedup": 1.73},
}

# The public 3DGAN fit of ECAL / Ep for electrons, in percent, of Ep / 100 GeV.
_FIT_COEFFICIENTS = (0.0018, -0.023, 0.11, -0.28, 2.21)


def sampling_fraction_fit(energy: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """ECAL / Ep of the real sample at primary energy Ep (GeV): 2.02 % at 100, 1.81 % at 500."""
    return np.polyval(_FIT_COEFFICIENTS, np.asarray(energy, dtype=np.float64) / 100.0) / 100.0
