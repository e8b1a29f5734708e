"""Profiles, their moments and the sampling fraction on inputs whose answers are known by
construction."""

from __future__ import annotations

import numpy as np
import pytest

from calo.physics.binning import bin_counts, bin_index, binned_mean, binned_mean_per_ep
from calo.physics.shapes import (
    average_profile_moments,
    mean_profile,
    profile_moments,
    sampling_fraction,
    sampling_fraction_fit,
    shape_summary,
)

CELLS = 25


def point_profiles(positions: list[int], energy: float = 2.0) -> np.ndarray:
    profiles = np.zeros((len(positions), CELLS))
    profiles[np.arange(len(positions)), positions] = energy
    return profiles


def test_point_deposit_has_its_position_and_zero_width() -> None:
    mean, second = profile_moments(point_profiles([4, 12, 20]))
    np.testing.assert_array_equal(mean, [4.0, 12.0, 20.0])
    np.testing.assert_array_equal(second, 0.0)


def test_uniform_profile_has_the_uniform_moments() -> None:
    mean, second = profile_moments(np.ones(CELLS))
    assert mean == pytest.approx(12.0)
    assert second == pytest.approx((CELLS**2 - 1) / 12)
    moments = average_profile_moments(np.ones((5, CELLS)))
    assert (moments.mean, moments.std) == pytest.approx((12.0, np.sqrt((CELLS**2 - 1) / 12)))
    assert moments.mean_error == moments.std_error == 0.0  # identical events: no spread


def test_shift_moves_the_mean_by_the_shift_and_keeps_the_width(rng) -> None:
    profiles = rng.exponential(1.0, (50, CELLS)) * np.exp(-np.arange(CELLS) / 4)
    profiles[:, -3:] = 0  # what the shift would push out of the volume
    shifted = np.roll(profiles, 3, axis=1)
    before, after = average_profile_moments(profiles), average_profile_moments(shifted)
    assert after.mean == pytest.approx(before.mean + 3, abs=1e-12)
    assert after.std == pytest.approx(before.std, abs=1e-12)
    assert after.mean_error == pytest.approx(before.mean_error, abs=1e-12)


def test_average_moment_error_is_the_standard_error_for_equal_energies(rng) -> None:
    positions = rng.integers(5, 20, 400)
    moments = average_profile_moments(point_profiles(list(positions)))
    assert moments.mean == pytest.approx(positions.mean())
    assert moments.mean_error == pytest.approx(positions.std(ddof=1) / np.sqrt(400))


def test_average_moment_error_matches_the_spread_of_repeated_samples(rng) -> None:
    """The delta-method errors agree with the scatter over independent samples."""
    index = np.arange(CELLS)

    def sample() -> np.ndarray:
        centre = rng.normal(12.0, 1.5, (300, 1))
        width = rng.uniform(1.0, 3.0, (300, 1))
        return rng.exponential(1.0, (300, 1)) * np.exp(-0.5 * ((index - centre) / width) ** 2)

    repeats = [average_profile_moments(sample()) for _ in range(200)]
    assert np.std([m.mean for m in repeats]) == pytest.approx(repeats[0].mean_error, rel=0.25)
    assert np.std([m.std for m in repeats]) == pytest.approx(repeats[0].std_error, rel=0.25)


def test_shape_summary_of_raw_showers() -> None:
    ecal = np.zeros((3, CELLS, CELLS, CELLS), np.float32)
    ecal[:, 4, 12, 20] = 2.0
    summary = shape_summary(ecal)
    assert (summary["x_mean"], summary["y_mean"], summary["z_mean"]) == (4.0, 12.0, 20.0)
    assert summary["x_std"] == summary["y_std"] == summary["z_std"] == 0.0
    np.testing.assert_allclose(sampling_fraction(ecal, np.full(3, 100.0)), 0.02)


def test_empty_profile_gives_nan() -> None:
    mean, second = profile_moments(np.zeros(CELLS))
    assert np.isnan(mean) and np.isnan(second)
    assert np.isnan(average_profile_moments(np.zeros((3, CELLS))).mean)


def test_mean_profile_and_its_error() -> None:
    profiles = np.array([[1.0, 2.0], [3.0, 2.0]])
    mean, error = mean_profile(profiles)
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(error, [np.sqrt(2) / np.sqrt(2), 0.0])


def test_sampling_fraction_and_binning() -> None:
    energy = np.array([100.0, 100.0, 300.0, 500.0])
    fraction = sampling_fraction(np.array([2.0, 2.0, 6.0, 10.0]), energy)
    np.testing.assert_allclose(fraction, 0.02)
    binned = binned_mean(fraction, energy, np.array([100, 200, 300, 500]))
    np.testing.assert_allclose(binned.mean[[0, 2]], 0.02)
    assert np.isnan(binned.mean[1]) and list(binned.count) == [2, 0, 2]
    np.testing.assert_allclose(binned.error[[0, 2]], 0.0, atol=1e-12)


def test_bin_index_edges_and_outside() -> None:
    edges = np.array([100.0, 200.0, 300.0])
    index = bin_index(np.array([99.0, 100.0, 199.9, 200.0, 300.0, 300.1]), edges)
    assert list(index) == [-1, 0, 0, 1, 1, -1]
    assert list(bin_counts(np.array([99.0, 100.0, 199.9, 200.0, 300.0, 300.1]), edges)) == [2, 2]


def test_binned_mean_per_ep_divides_each_event_by_its_energy() -> None:
    values = np.array([[2.0, 4.0], [6.0, 6.0], [10.0, 0.0]])
    means, count = binned_mean_per_ep(values, np.array([100.0, 300.0, 500.0]),
                                      np.array([100.0, 200.0, 500.0]))
    np.testing.assert_allclose(means, [[0.02, 0.04], [0.02, 0.01]])
    assert list(count) == [1, 2]


def test_sampling_fraction_fit_is_the_public_one() -> None:
    np.testing.assert_allclose(sampling_fraction_fit([100.0, 500.0]), [0.0202, 0.0181],
                               atol=2e-5)
