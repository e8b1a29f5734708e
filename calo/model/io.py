"""The one place that says how (latent, Ep) becomes the generator's input and how its output
becomes showers in GeV. Every engine, the trainer and the validation go through it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from calo.config import LatentDistribution, ModelConfig

__all__ = ["NetworkIO", "sample_latent"]


@dataclass(frozen=True)
class NetworkIO:
    """Scales between physics units and network units.

    The generator sees ``latent * Ep / energy_scale`` and produces cells in
    ``GeV * cell_scale`` (the 3DGAN "xscale" preprocessing; the Conv2D model works in GeV).
    """

    latent_dim: int = 200
    energy_scale: float = 100.0
    cell_scale: float = 1.0

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> NetworkIO:
        return cls(cfg.latent_dim, cfg.energy_scale, cfg.cell_scale)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def network_input(
        self, latent: NDArray[np.floating], energy: NDArray[np.floating]
    ) -> NDArray[np.float32]:
        """(N, latent_dim) latent and (N,) Ep in GeV -> (N, latent_dim) generator input."""
        latent = np.asarray(latent, dtype=np.float32)
        energy = np.asarray(energy, dtype=np.float32).reshape(-1, 1)
        if latent.ndim != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"latent must be (N, {self.latent_dim}), got {latent.shape}")
        if energy.shape[0] != latent.shape[0]:
            raise ValueError(f"{latent.shape[0]} latents but {energy.shape[0]} energies")
        return latent * (energy / np.float32(self.energy_scale))

    def showers(self, network_output: NDArray[np.floating]) -> NDArray[np.float32]:
        """Generator output -> (N, 25, 25, 25) cell energies in GeV."""
        return np.asarray(network_output, dtype=np.float32) / np.float32(self.cell_scale)


def sample_latent(
    n: int, latent_dim: int, distribution: LatentDistribution, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Latent noise: standard normal (public 3DGAN code), uniform in [-1, 1) (the paper), or
    standard normal directions of norm sqrt(latent_dim) (sphere).

    The generator sees ``latent * Ep`` and can read Ep only off that product: a normal latent's
    norm varies by 1/sqrt(2 latent_dim) (5 % at 200), which a generator that scales its showers
    with the input's norm passes on to the shower's energy, on top of the real spread of about
    3 %. On the sphere the norm is exact, so the energy resolution is the network's own.
    """
    if distribution is LatentDistribution.uniform:
        return rng.uniform(-1.0, 1.0, size=(n, latent_dim)).astype(np.float32)
    latent = rng.standard_normal((n, latent_dim), dtype=np.float32)
    if distribution is LatentDistribution.sphere:
        latent *= np.sqrt(np.float32(latent_dim)) / np.linalg.norm(latent, axis=1, keepdims=True)
    return latent
