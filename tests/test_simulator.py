"""The reference simulator reproduces the real sample's published statistics, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from calo.data.simulator import ShowerParameters, simulate_showers
from calo.physics.shapes import sampling_fraction, shape_summary
from calo.published import PUBLISHED_SHAPES, sampling_fraction_fit


def test_shower_shapes_match_the_real_sample_within_3_percent(reference_sample) -> None:
    summary = shape_summary(reference_sample.ecal)
    for key, target in PUBLISHED_SHAPES.items():
        assert summary[key] == pytest.approx(target, rel=0.03), key
    assert summary["x_mean"] == pytest.approx(summary["y_mean"], abs=0.05)
    assert summary["x_std"] == pytest.approx(summary["y_std"], rel=0.03)


@pytest.mark.parametrize("energy", [100.0, 300.0, 500.0])
def test_sampling_fraction_follows_the_public_fit_within_5_percent(energy: float) -> None:
    energies = np.full(150, energy)
    ecal = simulate_showers(energies, ShowerParameters(), seed=3)
    measured = sampling_fraction(ecal, energies).mean()
    assert measured == pytest.approx(sampling_fraction_fit(energy), rel=0.05)


def test_public_fit_values() -> None:
    assert sampling_fraction_fit(100.0) == pytest.approx(0.020188)
    assert sampling_fraction_fit(500.0) == pytest.approx(0.0181)


def test_sampling_fraction_falls_with_energy() -> None:
    energies = np.repeat([100.0, 500.0], 100)
    fraction = sampling_fraction(simulate_showers(energies, ShowerParameters(), seed=4), energies)
    assert fraction[:100].mean() > fraction[100:].mean() * 1.05


def test_same_seed_same_showers_for_any_number_of_workers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from calo.data import simulator

    monkeypatch.setattr(simulator, "SHOWERS_PER_WORKER", 10)  # two workers for 30 showers
    started, pool = [], simulator._pool
    monkeypatch.setattr(simulator, "_pool",
                        lambda workers: started.append(workers) or pool(workers))
    energies = np.linspace(100, 500, 30)
    serial = simulate_showers(energies, ShowerParameters(), seed=5, chunk_size=10)
    parallel = simulate_showers(energies, ShowerParameters(), seed=5, chunk_size=10, workers=2)
    np.testing.assert_array_equal(serial, parallel)
    other = simulate_showers(energies, ShowerParameters(), seed=6, chunk_size=10)
    assert not np.array_equal(serial, other)
    assert started == [1, 2, 1]


def test_showers_are_centred_and_energy_is_lost_only_by_leakage() -> None:
    energies = np.full(50, 300.0)
    ecal = simulate_showers(energies, ShowerParameters(), seed=8)
    assert ecal.dtype == np.float32 and ecal.shape == (50, 25, 25, 25)
    assert (ecal >= 0).all()
    hottest = np.unravel_index(ecal.sum(axis=0).argmax(), (25, 25, 25))
    assert hottest[:2] == (12, 12)
    params = ShowerParameters()
    visible = 300.0 * params.response_100 * 3.0 ** -params.response_slope
    contained = ecal.sum(axis=(1, 2, 3)).mean() / visible
    assert 0.85 < contained < 1.0
