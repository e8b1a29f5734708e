"""calo.physics.validate: what it reports, under which names, and how it refuses bad input."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from calo.config import PhysicsConfig
from calo.data import Showers
from calo.errors import CaloError
from calo.physics import measure_reference, validate
from calo.physics.table import render_table

# Samples of a few hundred showers are small on purpose: the warning says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy")

NAMESPACES = ("reference", "fp32", "engine", "floor", "engine_vs_fp32")
KEY = re.compile(rf"physics/(svn|svn_floor|({'|'.join(NAMESPACES)})/[a-z0-9_]+)")


@pytest.fixture(scope="module")
def halves(reference_sample) -> tuple[Showers, Showers]:
    middle = len(reference_sample) // 2
    return (Showers(reference_sample.ecal[:middle], reference_sample.energy[:middle]),
            Showers(reference_sample.ecal[middle:], reference_sample.energy[middle:]))


def blurred(showers: Showers, seed: int) -> Showers:
    """A generator-like sample on the same energies: each cell smeared by 20 %."""
    rng = np.random.default_rng(seed)
    smear = 1 + 0.2 * rng.standard_normal(showers.ecal.shape, dtype=np.float32)
    return Showers(showers.ecal * smear.clip(0), showers.energy)


def test_identical_samples_have_zero_distance(halves) -> None:
    reference, _ = halves
    metrics = validate(reference, reference).metrics()
    for name in ("svn", "svn_xy", "analysis_metric", "sep_mean", "sep_hits", "sep_cell_energy"):
        assert metrics[f"physics/engine/{name}"] == 0.0, name
    assert metrics["physics/svn"] == 0.0
    assert metrics["physics/svn_floor"] > 0.0  # two halves differ by their fluctuations


def test_swapping_samples_keeps_the_symmetric_measures(halves) -> None:
    first, second = halves
    generated = blurred(first, seed=1)
    forward = validate(second, first, fp32=generated).metrics()
    backward = validate(second, generated, fp32=first).metrics()
    for name in ("pixel_abs_mean", "pixel_abs_std", "sep_mean", "sep_etot_ratio", "sep_z_width"):
        assert forward[f"physics/engine_vs_fp32/{name}"] == pytest.approx(
            backward[f"physics/engine_vs_fp32/{name}"], abs=1e-12), name
    swapped = validate(first, second).metrics()
    straight = validate(second, first).metrics()
    assert swapped["physics/engine/sep_mean"] == pytest.approx(
        straight["physics/engine/sep_mean"], abs=1e-12)


def test_a_shifted_shower_moves_the_depth_mean_by_the_shift(halves) -> None:
    reference, _ = halves
    kept = reference.ecal.copy()
    kept[..., -2:] = 0  # the part the shift would push out of the volume
    shifted = np.zeros_like(kept)
    shifted[..., 2:] = kept[..., :-2]
    metrics = validate(Showers(kept, reference.energy),
                       Showers(shifted, reference.energy)).metrics()
    assert metrics["physics/engine/z_mean"] == pytest.approx(
        metrics["physics/reference/z_mean"] + 2, abs=1e-9)
    assert metrics["physics/engine/z_std"] == pytest.approx(
        metrics["physics/reference/z_std"], abs=1e-9)
    assert metrics["physics/engine/y_mean"] == pytest.approx(
        metrics["physics/reference/y_mean"], abs=1e-9)
    assert metrics["physics/engine/svn"] > 10 * metrics["physics/svn_floor"]


def test_metric_names_follow_the_documented_scheme(halves) -> None:
    reference, generated = halves
    fp32 = blurred(generated, seed=2)
    metrics = validate(reference, generated, fp32=fp32).metrics()
    assert all(KEY.fullmatch(key) for key in metrics), [k for k in metrics if not KEY.match(k)]
    for key in ("physics/svn", "physics/svn_floor", "physics/reference/y_mean",
                "physics/fp32/y_mean", "physics/engine/y_mean", "physics/engine/y_mean_err",
                "physics/engine/z_std_err", "physics/engine/sf_100_200",
                "physics/engine/sf_fit_rel_dev", "physics/engine/hits_400_500",
                "physics/engine/z_m2_200_300", "physics/fp32/svn", "physics/floor/sep_mean",
                "physics/engine/moment_rel_error", "physics/engine_vs_fp32/pixel_abs_mean",
                "physics/engine_vs_fp32/pixel_rel_std", "physics/engine_vs_fp32/svn"):
        assert np.isfinite(metrics[key]), key
    assert metrics["physics/svn"] == metrics["physics/engine/svn"]
    assert metrics["physics/svn_floor"] == metrics["physics/floor/svn"]


def test_the_fp32_engine_is_measured_once_under_both_names(halves) -> None:
    reference, generated = halves
    result = validate(reference, generated, fp32=generated)
    assert result.engine_is_fp32 and result.samples["fp32"] is result.samples["engine"]
    assert result.pixelwise is None and "engine_vs_fp32" not in result.comparisons
    metrics = result.metrics()
    assert metrics["physics/fp32/svn"] == metrics["physics/engine/svn"]
    assert not any(key.startswith("physics/engine_vs_fp32/") for key in metrics)


def test_a_float64_fp32_engine_passed_twice_is_measured_once(halves) -> None:
    reference, generated = halves
    sample = (generated.ecal.astype(np.float64), generated.energy)
    result = validate(reference, sample, fp32=sample)
    assert result.engine_is_fp32 and result.samples["fp32"] is result.samples["engine"]
    assert result.pixelwise is None and "engine_vs_fp32" not in result.comparisons


def test_without_fp32_only_the_engine_is_reported(halves) -> None:
    reference, generated = halves
    result = validate(reference, generated)
    assert not result.engine_is_fp32
    metrics = result.metrics()
    assert not any(key.startswith(("physics/fp32/", "physics/engine_vs_fp32/"))
                   for key in metrics)


def test_arrays_work_as_well_as_showers(halves) -> None:
    reference, generated = halves
    from_arrays = validate((reference.ecal, reference.energy), (generated.ecal, generated.energy))
    assert from_arrays.metrics() == validate(reference, generated).metrics()


def test_a_measured_reference_gives_the_same_result(halves) -> None:
    reference, generated = halves
    fp32 = blurred(generated, seed=2)
    settings = PhysicsConfig(floor_seed=3)
    measured = measure_reference(reference, settings)
    for kwargs in ({}, {"fp32": fp32}, {"fp32": generated}):
        again = validate(measured, generated, settings=settings, **kwargs)
        assert again.metrics() == validate(reference, generated, settings=settings,
                                           **kwargs).metrics()
        assert again.samples["reference"] is measured.summary
        assert again.comparisons["floor"] is measured.floor
    with pytest.raises(ValueError, match="other physics settings"):
        validate(measured, generated, settings=PhysicsConfig(floor_seed=4))


def test_the_floor_depends_on_the_split_seed_only(halves) -> None:
    reference, generated = halves
    first = validate(reference, generated, settings=PhysicsConfig(floor_seed=3)).metrics()
    again = validate(reference, generated, settings=PhysicsConfig(floor_seed=3)).metrics()
    other = validate(reference, generated, settings=PhysicsConfig(floor_seed=4)).metrics()
    assert first["physics/svn_floor"] == again["physics/svn_floor"]
    assert first["physics/svn_floor"] != other["physics/svn_floor"]
    assert first["physics/svn"] == other["physics/svn"]


def test_small_samples_warn(halves) -> None:
    reference, generated = halves
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validate(reference, generated)
    assert any("binned physics metrics will be noisy" in str(w.message) for w in caught)


def cube(n: int) -> np.ndarray:
    return np.ones((n, 25, 25, 25), np.float32)


@pytest.mark.parametrize(
    ("generated", "message"),
    [
        ((np.ones((3, 25, 25)), np.full(3, 100.0)), r"ECAL has shape \(3, 25, 25\)"),
        ((np.ones((0, 25, 25, 25)), np.ones(0)), "holds no showers"),
        ((cube(2) * np.array([1, np.nan], np.float32)[:, None, None, None], np.full(2, 100.0)),
         "NaN or infinite"),
        ((cube(2) * np.float32(np.inf), np.full(2, 100.0)), "NaN or infinite"),
        ((cube(2), np.full(3, 100.0)), "2 showers but primary energies of shape"),
        ((cube(2), np.array([100.0, np.nan])), "primary energies must be finite"),
        (cube(2), "expected Showers or an \\(ecal, energy\\) pair"),
    ],
    ids=["shape", "empty", "nan", "inf", "energies", "nan-energy", "not-a-pair"],
)
def test_bad_input_is_a_one_line_error(halves, generated, message: str) -> None:
    reference, _ = halves
    with pytest.raises(CaloError, match=message) as error:
        validate(reference, generated)
    assert "\n" not in str(error.value) and "generated sample" in str(error.value)


def test_mismatched_fp32_events_are_refused_before_any_work(halves) -> None:
    reference, generated = halves
    shorter = Showers(generated.ecal[:-1], generated.energy[:-1])
    with pytest.raises(CaloError, match="pixel-wise comparison needs the same events"):
        validate(reference, generated, fp32=shorter)


def test_table_renders_the_runs_with_the_paper_values(halves) -> None:
    reference, generated = halves
    fp32_run = validate(reference, generated, fp32=generated).metrics()
    int8_run = validate(reference, blurred(generated, seed=3), fp32=generated).metrics()
    table = render_table({"fp32": fp32_run, "int8_tflite": int8_run})
    lines = table.splitlines()
    assert len(lines) == 5 and all(line.count("|") == 12 for line in lines)
    assert "(13.85)" in lines[2] and "(0.061)" in lines[3]  # paper: Geant4 z mean, fp32 SVN
    assert lines[4].startswith("| int8_tflite") and "(4.054 ± 0.721)" in lines[4]
    assert f"{int8_run['physics/engine/svn']:.3g} (0.340)" in lines[4]
    with pytest.raises(ValueError, match="at least one run"):
        render_table({})
