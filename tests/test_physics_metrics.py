"""Each physics metric on showers whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from calo.data import Showers
from calo.errors import CaloError
from calo.physics.analysis import analysis_metric
from calo.physics.features import CELL_ENERGY_EDGES, extract_features
from calo.physics.pixelwise import pixelwise
from calo.physics.separation import histogram_pair, separation_power, separation_powers
from calo.physics.svn import single_validation_number

CELLS = 25
EDGES = np.array([100.0, 300.0, 500.0])
THRESHOLD = 3e-4
INDEX = np.arange(CELLS, dtype=np.float64)


def gaussian(centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((INDEX - centre) / width) ** 2)


def factorised(energy: np.ndarray, z_profile: np.ndarray, fraction: float = 0.02) -> Showers:
    """Every event the same shape (transverse Gaussians times ``z_profile``), scaled so that
    ECAL = fraction * Ep."""
    cube = np.einsum("i,j,k->ijk", gaussian(12, 1.5), gaussian(12, 1.5), z_profile)
    cube /= cube.sum()
    ecal = (energy[:, None, None, None] * fraction * cube).astype(np.float32)
    return Showers(ecal, energy.astype(np.float32))


@pytest.fixture
def energies(rng) -> np.ndarray:
    return rng.uniform(100.0, 500.0, 60)


def features(showers: Showers):
    return extract_features(showers, THRESHOLD)


# --- per-event features ---------------------------------------------------------------------

def test_point_deposit_features() -> None:
    ecal = np.zeros((1, CELLS, CELLS, CELLS), np.float32)
    ecal[0, 4, 12, 20] = 2.0
    ecal[0, 0, 0, 0] = 1e-4  # below the hit threshold, still in the cell spectrum
    result = features(Showers(ecal, np.array([100.0], np.float32)))
    assert result.projections[0, 0, 4, 12] == result.projections[0, 1, 4, 20] == 2.0
    assert result.projections[0, 2, 12, 20] == 2.0
    assert result.total[0] == pytest.approx(2.0001)
    assert result.hits[0] == 1
    spectrum = result.cell_spectrum[0]
    assert spectrum.sum() == 2
    assert spectrum[np.searchsorted(CELL_ENERGY_EDGES, 2.0) - 1] == 1
    assert spectrum[np.searchsorted(CELL_ENERGY_EDGES, 1e-4 * 1.0001) - 1] == 1


def test_point_deposit_moments() -> None:
    ecal = np.zeros((1, CELLS, CELLS, CELLS), np.float32)
    ecal[0, 4, 12, 20] = 2.0
    result = features(Showers(ecal, np.array([100.0], np.float32)))
    np.testing.assert_array_equal(result.m1[0], [4.0, 12.0, 20.0])
    np.testing.assert_array_equal(result.m2[0], 0.0)


def test_uniform_cube_features() -> None:
    result = features(Showers(np.full((2, CELLS, CELLS, CELLS), 1e-3, np.float32),
                              np.array([100.0, 200.0], np.float32)))
    np.testing.assert_allclose(result.m1, 12.0)
    np.testing.assert_allclose(result.m2, (CELLS**2 - 1) / 12)
    np.testing.assert_allclose(result.profiles, CELLS**2 * 1e-3, rtol=1e-5)
    assert list(result.hits) == [CELLS**3, CELLS**3]
    strict = extract_features(Showers(np.full((1, CELLS, CELLS, CELLS), 1e-3, np.float32),
                                      np.array([100.0], np.float32)), hit_threshold=1e-3)
    assert strict.hits[0] == 0  # a hit is strictly above the threshold


def test_empty_shower_has_no_moments() -> None:
    result = features(Showers(np.zeros((1, CELLS, CELLS, CELLS), np.float32),
                              np.array([100.0], np.float32)))
    assert np.isnan(result.m1).all() and result.hits[0] == 0 and result.total[0] == 0


# --- single validation number ---------------------------------------------------------------

def test_svn_of_identical_samples_is_zero(energies) -> None:
    sample = features(factorised(energies, gaussian(8, 3)))
    result = single_validation_number(sample, sample, EDGES)
    assert result.value == 0.0 and set(result.planes.values()) == {0.0}
    assert result.bins == (0, 1)


def test_svn_ignores_the_energy_spectrum_inside_a_bin(rng) -> None:
    """Each event is divided by its Ep: the same shape at other energies is the same sample."""
    low = features(factorised(rng.uniform(100, 150, 40), gaussian(8, 3)))
    high = features(factorised(rng.uniform(150, 300, 40), gaussian(8, 3)))
    assert single_validation_number(low, high, EDGES).value == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("epsilon", [0.1, -0.3])
def test_svn_of_a_scaled_sample_is_epsilon_squared(energies, epsilon: float) -> None:
    reference = factorised(energies, gaussian(8, 3))
    scaled = factorised(energies, gaussian(8, 3), fraction=0.02 * (1 + epsilon))
    result = single_validation_number(features(reference), features(scaled), EDGES)
    assert result.value == pytest.approx(epsilon**2, rel=1e-4)


def test_svn_of_an_empty_sample_is_one(energies) -> None:
    reference = factorised(energies, gaussian(8, 3))
    empty = Showers(np.zeros_like(reference.ecal), reference.energy)
    assert single_validation_number(features(reference), features(empty), EDGES).value == 1.0


def test_svn_of_a_shower_shifted_beyond_its_extent(energies) -> None:
    """Disjoint longitudinal deposits: xy projections agree, xz and yz differ by 2 |R|^2."""
    point_at = lambda z: np.eye(CELLS)[z]  # noqa: E731
    reference = features(factorised(energies, point_at(3)))
    shifted = features(factorised(energies, point_at(10)))
    result = single_validation_number(reference, shifted, EDGES)
    assert result.planes["xy"] == pytest.approx(0.0, abs=1e-10)
    assert result.planes["xz"] == pytest.approx(2.0) and result.planes["yz"] == pytest.approx(2.0)
    assert result.value == pytest.approx(4 / 3)


def test_svn_without_shared_energy_bins_is_a_clear_error(rng) -> None:
    low = features(factorised(rng.uniform(100, 200, 10), gaussian(8, 3)))
    high = features(factorised(rng.uniform(400, 500, 10), gaussian(8, 3)))
    with pytest.raises(CaloError, match="no energy bin .* holds showers of both samples"):
        single_validation_number(low, high, np.array([100.0, 300.0, 500.0]))


# --- 3DGAN analysis metric ------------------------------------------------------------------

def test_analysis_metric_of_identical_samples_is_zero(energies) -> None:
    sample = features(factorised(energies, gaussian(8, 3)))
    result = analysis_metric(sample, sample, EDGES)
    assert result.moment_rel_error == result.profile_rel_error == result.value == 0.0


def test_analysis_metric_of_a_shifted_shower(energies) -> None:
    """A shift by 3 cells in depth: only <m1_z> changes (one moment out of six), by 3 cells;
    only the z profile changes (one axis out of three)."""
    z_profile = gaussian(8, 1.5)
    shifted_profile = gaussian(11, 1.5)
    reference = features(factorised(energies, z_profile))
    shifted = features(factorised(energies, shifted_profile))
    result = analysis_metric(reference, shifted, EDGES)
    m1 = (INDEX * z_profile).sum() / z_profile.sum()
    assert result.moment_rel_error == pytest.approx(3 / m1 / 6, rel=1e-4)
    unit, unit_shifted = z_profile / z_profile.sum(), shifted_profile / shifted_profile.sum()
    profile_error = np.abs(unit_shifted - unit).sum() / 3
    assert result.profile_rel_error == pytest.approx(profile_error, rel=1e-4)


# --- separation power -----------------------------------------------------------------------

def test_separation_power_known_values() -> None:
    assert separation_power([1, 1, 2], [2, 2, 4]) == 0.0
    assert separation_power([3, 0], [0, 5]) == 1.0
    assert separation_power([1, 1], [1, 0]) == pytest.approx(0.5 * (0.25 / 1.5 + 0.25 / 0.5))
    assert np.isnan(separation_power([0, 0], [1, 0]))


def test_separation_is_zero_for_identical_and_one_for_disjoint(rng) -> None:
    values = rng.normal(0, 1, 500)
    assert histogram_pair(values, values, 30).separation == 0.0
    assert histogram_pair(values, values + 100, 30).separation == pytest.approx(1.0)


def test_separation_is_symmetric(rng) -> None:
    first, second = rng.normal(0, 1, 400), rng.normal(0.3, 1.2, 500)
    forward = histogram_pair(first, second, 30)
    backward = histogram_pair(second, first, 30)
    np.testing.assert_array_equal(forward.edges, backward.edges)
    assert forward.separation == pytest.approx(backward.separation, abs=1e-15)


def test_separation_of_discrete_values_uses_one_bin_per_value() -> None:
    pair = histogram_pair(np.array([1, 1, 2, 2]), np.array([2, 2, 2, 3]), 30)
    np.testing.assert_allclose(pair.reference, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(pair.generated, [0.0, 0.75, 0.25])


def test_separation_of_all_features(energies) -> None:
    reference = features(factorised(energies, gaussian(8, 3)))
    brighter = features(factorised(energies, gaussian(8, 3), fraction=0.05))
    same = separation_powers(reference, reference, 30)
    assert set(same.values.values()) == {0.0} and same.mean == 0.0
    different = separation_powers(reference, brighter, 30).values
    assert different["etot_ratio"] == 1.0  # every event 2 % against 5 % of Ep
    assert different["cell_energy"] > 0.0


def test_separation_of_disjoint_cell_spectra() -> None:
    ecal = np.zeros((2, CELLS, CELLS, CELLS), np.float32)
    ecal[:, 12, 12, 5] = 1.0
    energy = np.array([100.0, 200.0], np.float32)
    soft = features(Showers(ecal * np.float32(0.01), energy))
    hard = features(Showers(ecal, energy))
    assert separation_powers(soft, hard, 30).values["cell_energy"] == 1.0


# --- pixel-wise -----------------------------------------------------------------------------

def test_pixelwise_of_identical_showers_is_zero(energies) -> None:
    sample = factorised(energies, gaussian(8, 3))
    metrics = pixelwise(sample, sample).metrics()
    assert metrics["pixel_abs_mean"] == metrics["pixel_abs_std"] == 0.0
    assert metrics["pixel_rel_mean"] == 0.0


def test_pixelwise_of_a_constant_offset(energies) -> None:
    fp32 = factorised(energies, gaussian(8, 3))
    offset = Showers(fp32.ecal + np.float32(1e-4), fp32.energy)
    result = pixelwise(fp32, offset)
    np.testing.assert_allclose(result.absolute, CELLS**3 * 1e-4, rtol=1e-3)
    np.testing.assert_allclose(result.relative, CELLS**3 * 1e-4 / (0.02 * energies), rtol=1e-3)
    assert result.metrics()["pixel_abs_std"] == pytest.approx(0.0, abs=1e-4)
    assert pixelwise(offset, fp32).metrics()["pixel_abs_mean"] == pytest.approx(
        result.metrics()["pixel_abs_mean"])  # |a - b| is symmetric


def test_pixelwise_needs_the_same_events(energies) -> None:
    sample = factorised(energies, gaussian(8, 3))
    shorter = Showers(sample.ecal[:-1], sample.energy[:-1])
    with pytest.raises(CaloError, match="fp32 has 60 showers, the engine 59"):
        pixelwise(sample, shorter)
    other_energies = Showers(sample.ecal, sample.energy[::-1].copy())
    with pytest.raises(CaloError, match="same primary energies"):
        pixelwise(sample, other_energies)
