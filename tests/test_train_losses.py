"""The generator's physics losses and the batch-norm recalibration, on analytic cases."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from calo.config import LatentDistribution, ModelConfig, TrainSettings
from calo.model.generator import build_generator
from calo.model.io import NetworkIO
from calo.train.batch_norm import recalibrate_batch_norm
from calo.train.recipe import SPREAD_FLOOR, VARIANCE_FLOOR, make_batch, physics_loss

THRESHOLD = 3e-4


def _showers(rng: np.random.Generator, n: int = 8) -> np.ndarray:
    """Gaussian blobs of a few GeV around the calorimeter's centre."""
    axis = np.arange(25)
    blob = np.exp(-((axis[:, None, None] - 12) ** 2 + (axis[None, :, None] - 12) ** 2) / 4
                  - (axis[None, None, :] - 10) ** 2 / 30)
    showers = rng.uniform(1, 5, n)[:, None, None, None] * blob / blob.sum()
    return np.where(showers < 1e-6, 0.0, showers).astype(np.float32)  # as make_batch floors


def _batch(real: np.ndarray, rng: np.random.Generator):
    return make_batch(real, np.full(len(real), 200.0, np.float32), NetworkIO(),
                      TrainSettings(), (100.0, 500.0), LatentDistribution.normal, rng, THRESHOLD)


def test_physics_losses_vanish_for_the_real_showers_and_grow_with_the_mismatch() -> None:
    rng = np.random.default_rng(0)
    real = _showers(rng)
    batch = _batch(real, rng)
    sums = real.sum(axis=(1, 2, 3))[:, None]
    targets = (*batch.physics.as_tuple(), sums)
    same = [float(part) for part in physics_loss(real, targets, THRESHOLD, len(real))]
    assert same[:6] == pytest.approx([0.0] * 6, abs=1e-5)  # resolution: its own test
    assert same[7:] == pytest.approx([0.0] * 2, abs=1e-5)  # spread and spectrum

    hot = [float(part) for part in physics_loss(3 * real, targets, THRESHOLD, len(real))]
    assert hot[1] == pytest.approx(2.0, rel=1e-4)  # every shower 3x its target sum
    assert hot[0] == pytest.approx(0.0, abs=1e-5)  # the same shapes
    assert hot[3] == pytest.approx(0.0, abs=1e-5)  # and widths
    assert hot[4] == pytest.approx(0.0, abs=1e-5)  # and projections
    assert hot[5] == pytest.approx(0.0, abs=1e-4)  # and centres
    assert hot[2] > 0.01  # cells near the threshold cross it

    shifted = np.roll(real, 5, axis=3)  # five layers deeper
    deeper = [float(part) for part in physics_loss(shifted, targets, THRESHOLD, len(real))]
    assert deeper[0] > 0.2
    z = np.arange(25)
    centre = [(showers.sum(axis=(1, 2)) @ z / showers.sum(axis=(1, 2, 3))).mean()
              for showers in (shifted, real)]  # the roll wraps the deepest layers round
    assert deeper[5] == pytest.approx(abs(centre[0] - centre[1]) / 3, rel=1e-4)  # x, y: 0


def _blob(width: float) -> np.ndarray:
    axis = (np.arange(25) - 12.0) ** 2
    blob = np.exp(-(axis[:, None, None] + axis[None, :, None]) / width - axis[None, None, :] / 8)
    return (blob / blob.sum()).astype(np.float32)


def test_energy_groups_see_showers_that_scale_wrongly_with_energy() -> None:
    """Narrow showers at low Ep and wide ones at high Ep, generated the other way round: the
    batch-wide means agree, the energy groups' do not."""
    rng = np.random.default_rng(4)
    energy = rng.permutation(np.repeat(np.float32([120.0, 480.0]), 4))
    narrow, wide = _blob(2.0), _blob(12.0)
    real = np.stack([narrow if e < 300 else wide for e in energy]) * 300.0
    settings = TrainSettings(batch_size=8, physics_energy_groups=2)
    batch = make_batch(real, energy, NetworkIO(), settings, (100.0, 500.0),
                       LatentDistribution.normal, rng, THRESHOLD)
    fake_energy = batch.fake.aux[:, 0] * NetworkIO().energy_scale
    assert np.allclose(fake_energy, np.sort(energy))  # the fakes take the real energies
    assert np.allclose(batch.real.aux, batch.fake.aux)  # ordered alike
    swapped = batch.real_images[::-1]  # low Ep gets the wide showers, high Ep the narrow
    targets = (*batch.physics.as_tuple(), batch.real.ecal)
    threshold = THRESHOLD * NetworkIO().cell_scale
    whole = physics_loss(swapped, targets, threshold, 8)
    grouped = physics_loss(swapped, targets, threshold, 8, energy_groups=2)
    assert float(whole[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(grouped[0]) > 0.1
    assert float(whole[3]) == pytest.approx(0.0, abs=1e-5)
    assert float(grouped[3]) > 0.5  # each group's variance is several times the other's
    same = physics_loss(batch.real_images, targets, threshold, 8, energy_groups=2)
    assert [float(p) for p in same[:6]] == pytest.approx([0.0] * 6, abs=1e-5)


def test_the_projection_loss_is_the_svn_form_of_the_mean_projections() -> None:
    """One shower moved a cell in y: each plane's sum (G - R)^2 / sum R^2, as the SVN sums it."""
    rng = np.random.default_rng(6)
    real = _showers(rng, 4)
    batch = _batch(real, rng)
    moved = np.roll(real, 1, axis=2)
    targets = (*batch.physics.as_tuple(), real.sum(axis=(1, 2, 3))[:, None])
    planes = float(physics_loss(moved, targets, THRESHOLD, 4)[4])

    def mean_projections(showers):
        unit = showers / showers.sum(axis=(1, 2, 3), keepdims=True)
        return [unit.sum(axis=3).mean(0), unit.sum(axis=2).mean(0), unit.sum(axis=1).mean(0)]

    expected = np.mean([((g - r) ** 2).sum() / (r ** 2).sum() for g, r in
                        zip(mean_projections(moved), mean_projections(real))])
    assert planes == pytest.approx(expected, rel=1e-4)
    assert 0.1 < planes < 2  # xy and yz see the move, xz does not


def test_the_resolution_loss_compares_the_spread_of_the_responses() -> None:
    """Generated showers whose sums over their targets spread twice as far as the real showers'
    responses score 1; the same spread scores 0, whatever the mean response."""
    rng = np.random.default_rng(7)
    real = _showers(rng, 8)
    batch = _batch(real, rng)
    real_response = batch.physics.response[:, 0]
    assert np.std(real_response) > 0.1  # _showers: energies 1-5 GeV against one target
    target = real.sum(axis=(1, 2, 3)) / real_response
    centred = real_response - real_response.mean()
    for spread, expected in ((1.0, 0.0), (2.0, 1.0)):
        response = 3.0 + spread * centred  # positive: the ReLU would cut the rest
        showers = real * (response * target / real.sum(axis=(1, 2, 3)))[:, None, None, None]
        targets = (*batch.physics.as_tuple(), target[:, None])
        resolution = float(physics_loss(showers, targets, THRESHOLD, 8)[6])
        assert resolution == pytest.approx(expected, abs=1e-4)


def _points(depths) -> np.ndarray:
    """One 1 GeV cell per shower, on the axis, at the given z layers."""
    showers = np.zeros((len(depths), 25, 25, 25), np.float32)
    showers[np.arange(len(depths)), 12, 12, depths] = 1.0
    return showers


def test_the_spread_loss_compares_the_spread_of_per_shower_features() -> None:
    """Real showers at depths 8 to 14: the z centre spreads, x, y, the widths and hit counts do
    not. Generated ones all at one depth, or spread twice as far, miss one of the seven
    features' spread by 100 % (less its floor): 1/7, whatever their mean depth."""
    rng = np.random.default_rng(3)
    depths = np.array([8, 10, 12, 14] * 2)
    real = _points(depths)
    batch = _batch(real, rng)
    targets = (*batch.physics.as_tuple(), real.sum(axis=(1, 2, 3))[:, None])
    for generated_depths in (np.full(8, 11), 11 + 2 * (depths - 11), depths + 3):
        showers = _points(generated_depths)
        spread = float(physics_loss(showers, targets, THRESHOLD, 8)[7])
        real_spread = np.std(depths)
        error = abs(np.std(generated_depths) - real_spread) / (real_spread + SPREAD_FLOOR)
        assert spread == pytest.approx(error / 7, abs=1e-4)
        assert error in (0.0, pytest.approx(1.0, abs=0.01))


def test_the_spectrum_loss_sees_a_haze_that_the_hit_count_does_not() -> None:
    """A haze of cells far below the hit threshold in every empty cell leaves the hit count
    (but for its soft tail) as it was and fills the lowest spectrum thresholds."""
    rng = np.random.default_rng(4)
    real = _points(np.full(4, 12))
    batch = _batch(real, rng)
    targets = (*batch.physics.as_tuple(), real.sum(axis=(1, 2, 3))[:, None])
    hazy = np.where(real > 0, real, THRESHOLD * 10**-1.25).astype(np.float32)  # 1.7e-5 GeV
    parts = [float(p) for p in physics_loss(hazy, targets, THRESHOLD, 4)]
    assert parts[8] > 5  # the lowest threshold counts 50x the real showers' cells
    assert parts[8] > 10 * parts[2]  # the hit count: its soft tail alone


def test_the_width_loss_is_the_relative_error_of_the_mean_variance() -> None:
    """A faint halo far from the core barely moves the profiles' L1 distance, but the variance
    grows by the halo's share times its distance squared."""
    rng = np.random.default_rng(5)
    real = np.zeros((4, 25, 25, 25), np.float32)
    real[:, 12, 12, 12] = 100.0  # all the energy in one cell: variance 0 ... plus
    real[:, 11, 12, 12] = real[:, 13, 12, 12] = 1.0  # two cells one step out along x
    batch = _batch(real, rng)
    halo = real.copy()
    halo[:, 2, 12, 12] = halo[:, 22, 12, 12] = 1.0  # and a faint halo ten cells out
    targets = (*batch.physics.as_tuple(), real.sum(axis=(1, 2, 3))[:, None])
    shape, _, _, width, *_ = (float(p) for p in physics_loss(halo, targets, THRESHOLD, 4))
    x_real, x_halo = 2 / 102, (2 + 200) / 104  # the x variances; y and z stay 0
    assert shape < 0.02
    assert width == pytest.approx((x_halo - x_real) / (x_real + VARIANCE_FLOOR) / 3, rel=1e-3)


def test_negative_network_output_counts_as_empty_cells() -> None:
    rng = np.random.default_rng(1)
    real = _showers(rng)
    batch = _batch(real, rng)
    targets = (*batch.physics.as_tuple(), real.sum(axis=(1, 2, 3))[:, None])
    negative = np.where(real > 0, real, -1.0).astype(np.float32)  # empty cells far below zero
    parts = physics_loss(negative, targets, THRESHOLD, len(real))
    assert [float(p) for p in parts[:6]] == pytest.approx([0.0] * 6, abs=1e-4)


def test_physics_losses_share_the_global_batch_between_replicas() -> None:
    rng = np.random.default_rng(2)
    real = _showers(rng, 8)
    batch = _batch(real, rng)
    sums = real.sum(axis=(1, 2, 3))[:, None] / 2
    targets = (*batch.physics.as_tuple(), sums)
    whole = np.array([float(p) for p in physics_loss(real, targets, THRESHOLD, 8)])
    halves = [np.array([float(p) for p in physics_loss(
        real[i : i + 4], tuple(t[i : i + 4] for t in targets), THRESHOLD, 8)]) for i in (0, 4)]
    assert (halves[0] + halves[1])[1] == pytest.approx(whole[1], rel=1e-5)  # energy: per shower


def test_recalibrated_batch_norm_makes_inference_match_the_weights() -> None:
    keras.utils.set_random_seed(0)
    generator = build_generator(ModelConfig(name="tiny", path_filters=[4] * 8,
                                            discriminator_filters=[4] * 6, dropout=0.2))
    network_input = np.random.default_rng(0).normal(size=(64, 200)).astype(np.float32)
    for _ in range(3):  # moving statistics of other weights
        generator(network_input * 3, training=True)
    before = np.asarray(generator(network_input, training=False))
    recalibrate_batch_norm(generator, network_input)
    after = np.asarray(generator(network_input, training=False))
    norms = [layer for layer in generator.layers if "bn" in layer.name]
    drops = [layer for layer in generator.layers if "drop" in layer.name]
    assert all(layer.momentum == 0.99 for layer in norms)  # restored
    assert all(layer.rate == 0.2 for layer in drops)
    for layer in drops:
        layer.rate = 0.0
    exact = np.asarray(generator(network_input, training=True))
    assert np.abs(after - exact).max() < 1e-3 * np.abs(exact).max()
    assert np.abs(before - exact).max() > 10 * np.abs(after - exact).max()


def test_an_empty_z_layer_is_pulled_back_through_its_hottest_cell() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    real = _showers(rng)
    batch = _batch(real, rng)
    targets = (*batch.physics.as_tuple(), real.sum(axis=(1, 2, 3))[:, None])
    deep = np.arange(25) >= 18
    lit = batch.physics.projections[:, 1].sum(axis=1).mean(axis=0) > 1e-3  # z profile
    assert (deep & lit).sum() >= 2  # the real showers fill some of the deep layers
    below = -1.0 - rng.uniform(size=real.shape)  # dead deep layers, no ties for the hottest
    linear = tf.Variable(np.where(deep, below, real).astype(np.float32))
    with tf.GradientTape() as tape:
        shape = physics_loss(linear, targets, THRESHOLD, len(real))[0]
    gradient = tape.gradient(shape, linear).numpy()[..., deep]
    assert float(shape) > (deep & lit).sum() * np.log1p(1 / THRESHOLD)
    # through the ReLU alone these layers get nothing; here each lit one gets one cell pulled up
    assert np.count_nonzero(gradient) == (deep & lit).sum()
    assert gradient.max() <= 0 and gradient.min() < 0
