"""The calibration set of the int8 backends: real generator inputs, latent x Ep over the energy
range, made in one place so that Neural Compressor and TFLite calibrate on the same inputs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from calo.config import LatentDistribution, PrecisionConfig
from calo.errors import CaloError
from calo.model.io import NetworkIO, sample_latent

__all__ = ["CalibrationLoader", "calibration_batches", "calibration_inputs",
           "require_calibration"]


def require_calibration(inputs: NDArray[np.float32] | None) -> None:
    """A one-line error when there are no calibration inputs to calibrate on."""
    if inputs is None or len(inputs) == 0:
        raise CaloError("the calibration set is empty: give precision.calibration_size > 0")


def calibration_inputs(io: NetworkIO, cfg: PrecisionConfig,
                       distribution: LatentDistribution = LatentDistribution.normal
                       ) -> NDArray[np.float32]:
    """``cfg.calibration_size`` generator inputs: seeded latents times Ep drawn uniformly over
    ``cfg.calibration_energy``, scaled as every engine sees them (NetworkIO)."""
    size = cfg.calibration_size  # positive: PrecisionConfig refuses any other
    rng = np.random.default_rng(cfg.calibration_seed)
    latent = sample_latent(size, io.latent_dim, distribution, rng)
    energy = rng.uniform(*cfg.calibration_energy, size=size)
    return io.network_input(latent, energy)


def calibration_batches(inputs: NDArray[np.float32], batch_size: int
                        ) -> Iterator[NDArray[np.float32]]:
    """Batches of exactly ``batch_size`` (fixed-batch models need that): the last one wraps
    around to the first inputs."""
    require_calibration(inputs)
    count = -(-len(inputs) // batch_size)
    padded = np.resize(inputs, (count * batch_size, inputs.shape[1]))
    for start in range(0, len(padded), batch_size):
        yield padded[start : start + batch_size]


class CalibrationLoader:
    """Neural Compressor's dataloader protocol: a ``batch_size`` and (inputs, label) batches."""

    def __init__(self, inputs: NDArray[np.float32], batch_size: int) -> None:
        self.inputs = inputs
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[NDArray[np.float32], None]]:
        for batch in calibration_batches(self.inputs, self.batch_size):
            yield batch, None
