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

Optional physics losses on the generator (``physics_loss_weights``, off in the paper's recipe)
pull batch statistics of the generated showers, as inference makes them (through the ReLU),
towards the real batch's: the mean normalised x, y and z profiles (L1, plus a term that revives
empty z layers, see ``_dead_layers``), each shower's energy against its target sum (relative),
the mean hit multiplicity through a smooth count (relative), and the mean per-shower variance
of the x, y and z profiles (relative; optional fourth weight): the L1 distance of the profiles
hardly sees a faint halo of cells ten cells out, the variance weighs it by the distance
squared; and the mean xy, xz and yz projections as the SVN compares them (relative squared
error; optional fifth weight), which see where the energy sits in two dimensions; and the
mean centre of the x, y and z profiles in cells (optional sixth weight), which the paper's Table
3 compares and the distances above weigh little when a shower is a fraction of a layer early;
and the energy resolution (optional seventh weight): the spread of each shower's sum over its
target, against the real showers' spread (relative), which the energy term's pull of every
shower to its target does not set; the spread (optional eighth weight) of the per-shower
centres, widths and log hit counts, against the real ones' (relative): the means above leave a
generator free to make every shower alike, as deep as the mean shower (which the separation
power of the z centre sees at once); and the cumulative cell-energy spectrum (optional ninth
weight): the mean counts of cells above thresholds from 1e-5 to 0.1 GeV (error relative to the
real count plus one), which sees the haze of tiny cells a ReLU output leaves below the hit
threshold, where the reference has none. With
``physics_energy_groups`` above 1 the generated showers take the real batch's energies, the
batch is ordered by energy and all but the energy term compare each energy group's means, so
that a generator whose showers scale wrongly with Ep (narrow and sparse at 100 GeV, wide at
500) cannot match the batch-wide mean by averaging the two errors away. They read the
generator's output before its activation, which the steps apply themselves. They give the
generator a dense signal from the first step, where the adversarial loss alone needs millions
of showers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from keras import losses, ops
from numpy.typing import NDArray

from calo.config import LatentDistribution, TrainSettings
from calo.data.simulator import CELLS
from calo.model.generator import OutputActivation
from calo.model.io import NetworkIO, sample_latent
from calo.published import sampling_fraction_fit

__all__ = ["GanBatch", "GeneratorLoss", "LOSS_PARTS", "PHYSICS_PARTS", "PhysicsTargets", "Targets",
           "SPREAD_FLOOR", "VARIANCE_FLOOR",
           "activation", "loss_metrics", "make_batch", "physics_loss", "weighted_loss"]

LOSS_PARTS = ("bce", "aux", "ecal")
PHYSICS_PARTS = ("shape", "energy", "hits", "width", "projections", "centre", "resolution",
                 "spread", "spectrum")
CELL_FLOOR = 1e-6  # GeV
LIVE_LAYER_SHARE = 1e-3  # a z layer with more of the real energy must not be empty
VARIANCE_FLOOR = 0.01  # cells squared: a relative width error also where the real width is 0
SPREAD_FLOOR = 0.01  # cells, or relative hit count: the spread loss's error also at 0 spread
SOFT_HIT_WIDTH = 0.25  # of the hit threshold: an empty cell counts exp(-4) ~ 2 % of a hit
# The spectrum loss counts cells above the hit threshold times these: 1e-5 to 0.1 GeV, half
# decades, from far below the threshold (where a ReLU output leaves a haze of tiny cells that
# the hit count does not see) to the hottest cells.
SPECTRUM_STEPS = tuple(10.0 ** (k / 2) for k in range(-3, 7))
HIT_STEP = SPECTRUM_STEPS.index(1.0)  # the spectrum's count at the hit threshold: the hit count


@dataclass(frozen=True)
class Targets:
    """(B, 1) float32 targets of the real/fake, AUX and ECAL heads."""

    label: NDArray[np.float32]
    aux: NDArray[np.float32]
    ecal: NDArray[np.float32]

    def as_tuple(self) -> tuple[NDArray[np.float32], ...]:
        return self.label, self.aux, self.ecal


@dataclass(frozen=True)
class PhysicsTargets:
    """Per real shower (the generator step averages them over its batch): normalised xy, xz
    and yz projections (B, 3, 25, 25), from which its profiles follow, soft hit count (B, 1) and
    sum over the sampling-fraction fit's target at its Ep (B, 1), and soft counts of the cells
    above each spectrum threshold (B, len(SPECTRUM_STEPS)). Each generated shower's target sum is
    the generator step's ECAL target."""

    projections: NDArray[np.float32]
    hits: NDArray[np.float32]
    response: NDArray[np.float32]
    spectrum: NDArray[np.float32]

    def as_tuple(self) -> tuple[NDArray[np.float32], ...]:
        return self.projections, self.hits, self.response, self.spectrum


@dataclass(frozen=True)
class GanBatch:
    real_images: NDArray[np.float32]  # (B, 25, 25, 25) network units
    real: Targets
    fake_input: NDArray[np.float32]  # (B, latent_dim) generator input
    fake: Targets  # for the discriminator step on generated showers
    generator: Targets  # for the generator step
    physics: PhysicsTargets  # for the generator step's physics losses


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
    hit_threshold_gev: float,
) -> GanBatch:
    """One global batch from real showers (GeV) and freshly drawn fakes; all randomness from
    ``rng``, so a step's batch is reproducible from its seed (exact resume, equal replicas)."""
    size = len(energy_gev)
    fake_energy = rng.uniform(*energy_range, size).astype(np.float32)
    if settings.physics_energy_groups > 1:  # pairs: group g of generated and real, same Ep
        by_energy = np.argsort(energy_gev, kind="stable")
        ecal_gev, energy_gev = ecal_gev[by_energy], energy_gev[by_energy]
        fake_energy = np.asarray(energy_gev, dtype=np.float32)
    latent = sample_latent(size, io.latent_dim, latent_distribution, rng)
    fake_ecal = _column(_target_sum(fake_energy, io))
    flip_real = rng.uniform(size=size) < settings.label_flip
    flip_fake = rng.uniform(size=size) < settings.label_flip
    flip_generator = rng.uniform(size=size) < settings.label_flip
    real_images = np.where(ecal_gev < CELL_FLOOR, 0.0, ecal_gev * io.cell_scale).astype(np.float32)
    hit_threshold = np.float32(hit_threshold_gev * io.cell_scale)
    spectrum = np.asarray(_spectrum(real_images, hit_threshold, np), dtype=np.float32)
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
        physics=PhysicsTargets(
            projections=np.asarray(_projections(real_images, np), dtype=np.float32),
            hits=_column(spectrum[:, HIT_STEP]),
            response=_column(real_images.sum(axis=(1, 2, 3)) / _target_sum(energy_gev, io)),
            spectrum=spectrum,
        ),
    )


def _target_sum(energy_gev: NDArray, io: NetworkIO) -> NDArray:
    """A shower's expected sum at its Ep (network units): the sampling-fraction fit."""
    return energy_gev * sampling_fraction_fit(energy_gev) * io.cell_scale


def _projections(images, xp):
    """(B, 25, 25, 25) cells (x, y, z) -> (B, 3, 25, 25): each shower's xy, xz and yz
    projections, each summing to 1."""
    total = xp.sum(images, axis=(1, 2, 3))[:, None, None, None] + 1e-12
    return xp.stack([xp.sum(images, axis=3), xp.sum(images, axis=2),
                     xp.sum(images, axis=1)], axis=1) / total


def _profiles(projections, xp):
    """(B, 3, 25, 25) projections -> (B, 75): the x, y and z profiles, each summing to 1."""
    return xp.concatenate([xp.sum(projections[:, 0], axis=2), xp.sum(projections[:, 0], axis=1),
                           xp.sum(projections[:, 1], axis=1)], axis=1)


def _relative_squared_error(generated, real):
    """Per group and plane, sum (G - R)^2 / sum R^2 over the cells (the SVN's form), averaged."""
    error = ops.sum((generated - real) ** 2, axis=(2, 3))
    return ops.mean(error / (ops.sum(real ** 2, axis=(2, 3)) + 1e-12))


def _soft_hits(images, threshold, xp):
    """(B,) a differentiable count of the cells above ``threshold``."""
    width = threshold * SOFT_HIT_WIDTH
    return xp.sum(1.0 / (1.0 + xp.exp(-(images - threshold) / width)), axis=(1, 2, 3))


def _spectrum(images, hit_threshold, xp):
    """(B, len(SPECTRUM_STEPS)): soft counts of the cells above each spectrum threshold, the
    cumulative cell-energy spectrum."""
    return xp.stack([_soft_hits(images, hit_threshold * step, xp) for step in SPECTRUM_STEPS],
                    axis=1)


def _dead_layers(images, real_z_profile, hit_threshold: float):
    """For each z layer that holds real energy but where no generated cell of the batch reaches
    the hit threshold, how far its hottest network output is below it (log scale).

    z layers are the generator's output channels: a channel whose every output is below zero
    gets no gradient through the ReLU from any loss and stays empty for good (the shipped
    generator had 11 such layers, its "comb"). This term reaches the channel through its
    hottest cell and lifts it back above the threshold, where the other losses take over."""
    hottest = ops.max(images, axis=(0, 1, 2))
    below = ops.log1p(ops.relu(hit_threshold - hottest) / hit_threshold)
    return ops.sum(ops.where(real_z_profile > LIVE_LAYER_SHARE, below, 0.0))


def activation(output: OutputActivation):
    """The generator's output activation as a function of its linear output."""
    return ops.relu if output == "relu" else (lambda linear: linear)


def _group_means(values, groups: int):
    """(B, ...) -> (groups, ...): the mean of each of ``groups`` consecutive slices."""
    return ops.mean(ops.reshape(values, (groups, -1, *ops.shape(values)[1:])), axis=1)


def _group_stds(values, groups: int):
    """(B, ...) -> (groups, ...): the standard deviation within each of ``groups`` consecutive
    slices."""
    return ops.std(ops.reshape(values, (groups, -1, *ops.shape(values)[1:])), axis=1) + 1e-6


def _shower_features(centre, variance, hits):
    """(B, 7) per-shower centres and widths along x, y, z in cells and log hit counts: the
    spread loss's features, those of the separation power that the means alone do not set."""
    return ops.concatenate([centre, ops.sqrt(variance + VARIANCE_FLOOR),
                            ops.log1p(hits)[:, None]], axis=1)


def _moments(profiles):
    """(B, 75) normalised x, y, z profiles -> (B, 3) centres in cells, (B, 3) variances in
    cells squared."""
    position = ops.cast(ops.arange(CELLS), profiles.dtype)
    per_axis = ops.reshape(profiles, (-1, 3, CELLS))
    centre = ops.sum(per_axis * position, axis=2, keepdims=True)
    return ops.squeeze(centre, 2), ops.sum(per_axis * (position - centre) ** 2, axis=2)


def physics_loss(images, targets, hit_threshold: float, global_batch: int, energy_groups: int = 1):
    """The (shape, energy, hits, width, projections, centre, resolution, spread, spectrum) losses
    of one replica's generated showers (network output before the ReLU), each its share of the
    global batch's value; ``targets`` are the real showers' projections, soft hit counts,
    responses (sum over target) and cumulative spectra, and the generated showers' target sums.
    All but the energy compare the groups' means (or spreads) of ``energy_groups`` consecutive
    groups (the batch ordered by energy)."""
    showers = ops.relu(images)
    projections, hits, real_response, real_spectrum, ecal = targets
    profiles = _profiles(projections, ops)
    share = ops.shape(showers)[0] / global_batch
    real_profiles = _group_means(profiles, energy_groups)
    shower_projections = _projections(showers, ops)
    shower_profiles = _profiles(shower_projections, ops)
    generated_profiles = _group_means(shower_profiles, energy_groups)
    shape = ops.mean(ops.sum(ops.abs(generated_profiles - real_profiles), axis=1)) / 3
    shape = shape + _dead_layers(images, ops.mean(profiles, axis=0)[2 * CELLS :], hit_threshold)
    response = ops.sum(showers, axis=(1, 2, 3)) / ops.squeeze(ecal, 1)
    energy = ops.sum(ops.abs(response - 1.0))
    shower_spectrum = _spectrum(showers, hit_threshold, ops)
    shower_hits = shower_spectrum[:, HIT_STEP]
    soft_hits = _group_means(shower_hits, energy_groups)
    multiplicity = ops.mean(ops.abs(soft_hits / _group_means(ops.squeeze(hits, 1), energy_groups)
                                    - 1.0))
    real_moments, moments = _moments(profiles), _moments(shower_profiles)
    real_centre, real_variance = (_group_means(m, energy_groups) for m in real_moments)
    centre, variance = (_group_means(m, energy_groups) for m in moments)
    width = ops.mean(ops.abs(variance - real_variance) / (real_variance + VARIANCE_FLOOR))
    planes = _relative_squared_error(_group_means(shower_projections, energy_groups),
                                     _group_means(projections, energy_groups))
    offset = ops.mean(ops.abs(centre - real_centre))
    resolution = ops.mean(ops.abs(_group_stds(response, energy_groups)
                                  / _group_stds(ops.squeeze(real_response, 1), energy_groups)
                                  - 1.0))
    real_spread = _group_stds(_shower_features(*real_moments, ops.squeeze(hits, 1)),
                              energy_groups)
    spread = ops.mean(ops.abs(_group_stds(_shower_features(*moments, shower_hits), energy_groups)
                              - real_spread) / (real_spread + SPREAD_FLOOR))
    real_counts = _group_means(real_spectrum, energy_groups)
    counts = _group_means(shower_spectrum, energy_groups)
    spectrum = ops.mean(ops.abs(counts - real_counts) / (real_counts + 1.0))
    return (shape * share, energy / global_batch, multiplicity * share, width * share,
            planes * share, offset * share, resolution * share, spread * share,
            spectrum * share)


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


@dataclass(frozen=True)
class GeneratorLoss:
    """The generator's objective: the weighted adversarial losses, plus the physics losses
    when any of their weights is non-zero (then 13 parts are returned instead of 4; a part
    without its weight, such as the width of a 3-weight recipe, is only logged)."""

    loss_weights: tuple[float, float, float]
    physics_weights: tuple[float, ...]  # shape, energy, hits[, width, ..., spectrum]
    hit_threshold: float  # network units
    global_batch: int
    energy_groups: int = 1

    @property
    def with_physics(self) -> bool:
        return any(self.physics_weights)

    def __call__(self, images, outputs, targets, physics_targets):
        total, parts = weighted_loss(outputs, targets, self.loss_weights, self.global_batch)
        if not self.with_physics:
            return total, parts
        target_sum = targets[2]  # the ECAL target of each generated shower
        physics = physics_loss(images, (*physics_targets, target_sum), self.hit_threshold,
                               self.global_batch, self.energy_groups)
        total = total + sum(weight * part for weight, part in zip(self.physics_weights, physics))
        return total, (*parts, *physics)


def loss_metrics(prefix: str, losses) -> dict[str, float]:
    """(total, bce, aux, ecal[, shape, ..., spectrum]) -> {"d_loss": ..., ...}."""
    total, *parts = (float(loss) for loss in losses)
    names = LOSS_PARTS + PHYSICS_PARTS
    return {f"{prefix}_loss": total, **{f"{prefix}_{n}": v for n, v in zip(names, parts)}}
