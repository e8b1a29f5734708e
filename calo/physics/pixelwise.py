"""Pixel-wise comparison (the paper's Table 5): the same latents and energies through the fp32
and the quantized generator, compared cell by cell.

Per event e: D_e = sum over cells |X_fp32 - X_q| in GeV, and D_e / ECAL_fp32,e relative to the
fp32 shower's total energy. The paper reports mean(D) and std(D) over events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calo.data.showers import Showers
from calo.errors import CaloError

__all__ = ["Pixelwise", "check_paired", "pixelwise"]

_CHUNK = 256


@dataclass(frozen=True)
class Pixelwise:
    """Per-event summed absolute cell differences: in GeV and relative to the fp32 ECAL."""

    absolute: NDArray[np.float64]
    relative: NDArray[np.float64]

    def metrics(self) -> dict[str, float]:
        return {
            "pixel_abs_mean": float(self.absolute.mean()),
            "pixel_abs_std": float(self.absolute.std()),
            "pixel_rel_mean": float(np.nanmean(self.relative)),
            "pixel_rel_std": float(np.nanstd(self.relative)),
        }


def check_paired(fp32: Showers, quantized: Showers) -> None:
    """A CaloError unless the two samples can be compared event by event."""
    if len(fp32) != len(quantized):
        raise CaloError(
            f"pixel-wise comparison needs the same events: fp32 has {len(fp32)} showers, "
            f"the engine {len(quantized)}; generate both from the same latents and energies"
        )
    if not np.array_equal(fp32.energy, quantized.energy):
        raise CaloError(
            "pixel-wise comparison needs the same primary energies event by event: "
            "generate both samples from the same latents and energies"
        )


def pixelwise(fp32: Showers, quantized: Showers) -> Pixelwise:
    """Compare showers generated from the same inputs; a CaloError if they cannot be."""
    check_paired(fp32, quantized)
    absolute = np.empty(len(fp32), np.float64)
    total = np.empty(len(fp32), np.float64)
    for start in range(0, len(fp32), _CHUNK):
        reference = fp32.ecal[start : start + _CHUNK]
        difference = np.abs(reference - quantized.ecal[start : start + _CHUNK])
        stop = start + len(reference)
        absolute[start:stop] = difference.sum(axis=(1, 2, 3), dtype=np.float64)
        total[start:stop] = reference.sum(axis=(1, 2, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(total > 0, absolute / total, np.nan)
    return Pixelwise(absolute, relative)
