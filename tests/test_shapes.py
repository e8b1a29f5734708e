"""Shower-shape moments on showers whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from calo.physics.shapes import binned_mean, profile_moments, sampling_fraction, shape_summary


def test_point_deposit_has_its_position_and_zero_width() -> None:
    ecal = np.zeros((3, 25, 25, 25), np.float32)
    ecal[:, 4, 12, 20] = 2.0
    summary = shape_summary(ecal)
    assert (summary["x_mean"], summary["y_mean"], summary["z_mean"]) == (4.0, 12.0, 20.0)
    assert summary["x_std"] == summary["y_std"] == summary["z_std"] == 0.0


def test_uniform_cube_has_the_uniform_moments() -> None:
    summary = shape_summary(np.ones((2, 25, 25, 25), np.float32))
    for axis in "xyz":
        assert summary[f"{axis}_mean"] == pytest.approx(12.0)
        assert summary[f"{axis}_std"] == pytest.approx(np.sqrt((25**2 - 1) / 12))


def test_shift_moves_the_mean_by_the_shift(reference_sample) -> None:
    ecal = reference_sample.ecal[:50]
    shifted = np.zeros_like(ecal)
    shifted[:, :, :, 3:] = ecal[:, :, :, :-3]
    kept = ecal.copy()
    kept[:, :, :, -3:] = 0  # the part that the shift pushes out of the volume
    before, after = shape_summary(kept), shape_summary(shifted)
    assert after["z_mean"] == pytest.approx(before["z_mean"] + 3, abs=1e-9)
    assert after["z_std"] == pytest.approx(before["z_std"], abs=1e-9)


def test_empty_profile_gives_nan() -> None:
    mean, std = profile_moments(np.zeros(25))
    assert np.isnan(mean) and np.isnan(std)


def test_sampling_fraction_and_binning() -> None:
    ecal = np.zeros((4, 25, 25, 25), np.float32)
    ecal[:, 12, 12, 0] = [2.0, 2.0, 6.0, 10.0]
    energy = np.array([100.0, 100.0, 300.0, 500.0])
    fraction = sampling_fraction(ecal, energy)
    np.testing.assert_allclose(fraction, [0.02, 0.02, 0.02, 0.02])
    mean, error, count = binned_mean(fraction, energy, np.array([100, 200, 300, 500]))
    np.testing.assert_allclose(mean[[0, 2]], 0.02)
    assert np.isnan(mean[1]) and list(count) == [2, 0, 2]
    np.testing.assert_allclose(error[[0, 2]], 0.0, atol=1e-12)
