"""How far a bf16 computation of the generator may be from float32 before it is not rounding
but another network: one measure and one bound, for the bf16 training and the bf16 engines.

bf16 keeps 8 bits of mantissa, so rounding moves the generator's output by about 0.3-0.5 % of
its mean magnitude (0.25 % pixel-wise on the full generator's showers). The faults seen are of
another size: on a CPU with AMX, oneDNN's bf16 Conv2D with an 8x8 kernel and 8 or 12 input
channels returns outputs off by about 100 %, in TensorFlow and OpenVINO alike.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BF16_ROUNDING_BOUND", "relative_difference"]

BF16_ROUNDING_BOUND = 0.05


def relative_difference(exact: ArrayLike, approximate: ArrayLike) -> float:
    """Mean |approximate - exact| over mean |exact|: the pixel-wise table's form."""
    exact = np.asarray(exact, dtype=np.float64)
    approximate = np.asarray(approximate, dtype=np.float64)
    return float(np.abs(approximate - exact).mean() / max(np.abs(exact).mean(), 1e-30))
