"""The 3DGAN training recipe, backend-neutral: what a batch holds, and the losses.

Per batch the discriminator is updated on the real showers and on generated ones, then the
generator ``generator_steps`` times through the frozen discriminator. Targets for the three
discriminator heads:

=========  ==============================  ======================  ==========================
sample     real/fake                       AUX (Ep / energy_scale)  ECAL (network units)
=========  ==============================  ======================  ==========================
real       real_label (smoothed), flipped  the shower's Ep          the shower's sum
fake       0, flipped                      the sampled Ep           Ep x sampling-fraction fit
generator  real_label, flipped             the sampled Ep           Ep x sampling-fraction fit
=========  ==============================  ======================  ==========================

Losses: binary cross-entropy, MAPE(AUX), MAPE(ECAL), weighted by ``loss_weights``; each summed
over the replica's examples and divided by the GLOBAL batch, so gradients summed across
replicas equal the single-device ones. Real cells below ``CELL_FLOOR`` GeV are set to zero, as the
public code does ("unphysical values").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import losses, ops
from numpy.typing import NDArray

from calo.config import LatentDistribution, TrainSettings
from calo.model.io import NetworkIO, sample_latent
from calo.published import sampling_fraction_fit

__all__ = ["GanBatch", "LOSS_PARTS", "Targets", "loss_metrics", "make_batch", "weighted_loss"]

LOSS_PARTS = ("bce", "aux", "ecal")
CELL_FLOOR = 1e-6  # GeV


@dataclass(frozen=True)
class Targets:
    """(B, 1) float32 targets of the real/fake, AUX and ECAL heads."""

    label: NDArray[np.float32]
    aux: NDArray[np.float32]
    ecal: NDArray[np.float32]

    def as_tuple(self) -> tuple[NDArray[np.float32], ...]:
        return self.label, self.aux, self.ecal


@dataclass(frozen=True)
class GanBatch:
    real_images: NDArray[np.float32]  # (B, 25, 25, 25) network units
    real: Targets
    fake_input: NDArray[np.float32]  # (B, latent_dim) generator input
    fake: Targets  # for the discriminator step on generated showers
    generator: Targets  # for the generator step


def _column(values: NDArray) -> NDArray[np.float32]:
    return np.asarray(values, dtype=np.float32).reshape(-1, 1)


def make_batch(
    ecal_gev: NDArray[np.float32],
    energy_gev: NDArray[np.float32],
    io: NetworkIO,
    settings: TrainSettings,
    energy_range: tuple[float, float],
    latent_distribution: LatentDistribution,
    rng: np.random.Generator,
) -> GanBatch:
    """One global batch from real showers (GeV) and freshly drawn fakes; all randomness from
    ``rng``, so a step's batch is reproducible from its seed (exact resume, equal replicas)."""
    size = len(energy_gev)
    fake_energy = rng.uniform(*energy_range, size).astype(np.float32)
    latent = sample_latent(size, io.latent_dim, latent_distribution, rng)
    fake_ecal = _column(fake_energy * sampling_fraction_fit(fake_energy) * io.cell_scale)
    flip_real = rng.uniform(size=size) < settings.label_flip
    flip_fake = rng.uniform(size=size) < settings.label_flip
    flip_generator = rng.uniform(size=size) < settings.label_flip
    real_images = np.where(ecal_gev < CELL_FLOOR, 0.0, ecal_gev * io.cell_scale).astype(np.float32)
    return GanBatch(
        real_images=real_images,
        real=Targets(
            label=_column(np.where(flip_real, 0.0, settings.real_label)),
            aux=_column(energy_gev / io.energy_scale),
            ecal=_column(real_images.sum(axis=(1, 2, 3))),
        ),
        fake_input=io.network_input(latent, fake_energy),
        fake=Targets(
            label=_column(np.where(flip_fake, settings.real_label, 0.0)),
            aux=_column(fake_energy / io.energy_scale),
            ecal=fake_ecal,
        ),
        generator=Targets(
            label=_column(np.where(flip_generator, 0.0, settings.real_label)),
            aux=_column(fake_energy / io.energy_scale),
            ecal=fake_ecal,
        ),
    )


def weighted_loss(outputs, targets, weights, global_batch: int):
    """Total loss and its (BCE, AUX, ECAL) parts for one replica's examples, each summed over
    examples and divided by the global batch size."""
    real_pred, aux_pred, ecal_pred = outputs
    label, aux, ecal = targets
    parts = (
        losses.binary_crossentropy(label, real_pred),
        losses.mean_absolute_percentage_error(aux, aux_pred),
        losses.mean_absolute_percentage_error(ecal, ecal_pred),
    )
    parts = tuple(ops.sum(part) / global_batch for part in parts)
    total = sum(weight * part for weight, part in zip(weights, parts))
    return total, parts


def loss_metrics(prefix: str, losses) -> dict[str, float]:
    """(total, bce, aux, ecal) -> {"d_loss": ..., "d_bce": ..., ...} as floats."""
    total, *parts = (float(loss) for loss in losses)
    return {f"{prefix}_loss": total, **{f"{prefix}_{n}": v for n, v in zip(LOSS_PARTS, parts)}}
