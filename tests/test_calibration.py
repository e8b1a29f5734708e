"""The simulator's calibration can be redone: the least-squares fit recovers constants it did
not start from, and the held-out checks compute, with analytic checks of their parts."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.special import gammainc

from calo.data import calibration
from calo.data.simulator import ShowerParameters, simulate_showers
from calo.data.simulator_checks import heldout_checks, peak_depth, resolution_terms
from calo.data.simulator_fit import (
    FIT_START,
    FITTED,
    CalibrationFit,
    CalibrationSample,
    SimulatedStatistics,
    calibration_targets,
    fit_simulator,
)
from calo.physics.shapes import sampling_fraction, shape_summary

# Low energies keep the showers small: the fit does not care where the targets come from.
SMALL = CalibrationSample(n_showers=40, energy_min=20.0, energy_max=60.0,
                          fixed_energies=(20.0, 40.0, 60.0), n_fixed=10, seed=3)
TRUTH = ShowerParameters(layer_x0=0.70, cell_moliere=0.85, alpha_shift=1.2, response_100=0.025,
                         response_slope=0.08)


def test_the_fit_recovers_the_constants_a_sample_was_simulated_with() -> None:
    targets = {key: value for key, value in SimulatedStatistics(SMALL)(TRUTH).items()
               if key in calibration_targets(SMALL)}
    assert set(targets) == {"y_mean", "y_std", "z_mean", "z_std", "sf_20", "sf_40", "sf_60"}
    fit = fit_simulator(targets, SMALL, start=FIT_START)
    assert fit.converged, fit.message
    for name in FITTED:
        assert getattr(fit.fitted, name) == pytest.approx(getattr(TRUTH, name), rel=3e-3,
                                                          abs=3e-3), name
    assert fit.achieved["z_mean"] == pytest.approx(targets["z_mean"], rel=1e-3)
    assert fit.fitted.spots_per_gev == TRUTH.spots_per_gev  # not fitted: left as it was


def test_the_statistics_are_those_of_the_simulated_showers() -> None:
    sample = replace(SMALL, n_showers=20, n_fixed=5)
    measured = SimulatedStatistics(sample)(TRUTH)
    showers = simulate_showers(sample.range_energies(), TRUTH, sample.seed)
    for key, value in shape_summary(showers).items():
        assert measured[key] == pytest.approx(value, rel=1e-5), key
    energies = np.full(sample.n_fixed, 40.0)
    fixed = sampling_fraction(simulate_showers(energies, TRUTH, sample.seed), energies).mean()
    assert measured["sf_40"] == pytest.approx(fixed, rel=1e-5)


def test_the_response_scales_showers_without_simulating_them_again() -> None:
    statistics = SimulatedStatistics(replace(SMALL, n_showers=20, n_fixed=5))
    first = statistics(TRUTH)
    doubled = statistics(replace(TRUTH, response_100=2 * TRUTH.response_100))
    assert statistics.simulations == 1
    assert doubled["sf_40"] == pytest.approx(2 * first["sf_40"])
    assert doubled["z_std"] == pytest.approx(first["z_std"])
    statistics(replace(TRUTH, layer_x0=0.8))
    assert statistics.simulations == 2


def test_an_unknown_constant_is_refused() -> None:
    with pytest.raises(ValueError, match="not a fitted constant: \\['spots_per_gev'\\]"):
        fit_simulator({"z_mean": 13.85}, SMALL, names=["layer_x0", "spots_per_gev"])


def test_peak_depth_finds_the_maximum_of_a_gamma_profile() -> None:
    alpha, t_max, layer = 6.0, 8.3, 0.745  # dE/dt peaks at t_max = (alpha - 1) / beta
    beta = (alpha - 1) / t_max
    edges = np.arange(26) * layer
    profile = np.diff(gammainc(alpha, beta * edges))
    assert peak_depth(profile, layer) == pytest.approx(t_max, abs=0.05)


def test_resolution_terms_recover_a_stochastic_and_a_constant_term() -> None:
    energies = np.array([10.0, 50.0, 100.0, 500.0])
    resolution = np.hypot(0.17 / np.sqrt(energies), 0.01)
    a, c = resolution_terms(energies, resolution, 0.05 * resolution)
    assert (a, c) == pytest.approx((0.17, 0.01), rel=1e-6)


def test_heldout_checks_compute_on_a_small_sample() -> None:
    checks = heldout_checks(ShowerParameters(), n_showers=20, energies=(10.0, 30.0, 90.0))
    assert [point.energy for point in checks.points] == [10.0, 30.0, 90.0]
    assert 0.6 < checks.peak.slope < 1.4  # PDG: one X0 per unit of ln E
    assert checks.peak.at(30.0) == pytest.approx(checks.points[1].peak_x0, abs=0.5)
    assert checks.expected_peak_x0(100.0) == pytest.approx(math.log(100 / 0.008) - 0.5)
    assert 0.10 < checks.stochastic < 0.30  # 30 spots per GeV: about 18 %
    for point in checks.points:
        assert point.x_std == pytest.approx(point.y_std, rel=0.06)
    assert checks.points[0].z_mean < checks.points[-1].z_mean  # deeper with energy


def test_the_command_shows_and_writes_fitted_and_heldout_tables(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{calibration.BEGIN}\nold\n{calibration.END}\nafter\n")
    calibration.main(["--showers", "40", "--heldout-showers", "8", "--write", str(readme)])
    shown = capsys.readouterr().out
    for text in ("| y mean (cells) | 12.00 |", "| ECAL/Ep at 300 GeV | 1.885 % |",
                 "Held-out checks, not fitted",
                 "| x std (cells), 100-500 GeV | 1.450 | published y (symmetry) |",
                 "| t_max slope (X0 per unit ln E), 10-500 GeV | 1.000 | PDG: ln(E/E_c) - 0.5",
                 "| stochastic term a (sigma/E = a/sqrt(E) (+) c) | 15-20 % |", "| 500 |"):
        assert text in shown, text
    assert "Fit redone" not in shown
    written = readme.read_text()
    assert written.startswith(f"before\n{calibration.BEGIN}\nFitted statistics at the shipped")
    assert "old" not in written and written.endswith(f"{calibration.END}\nafter\n")
    assert shown.removesuffix(f"wrote {readme}\n") in written


def test_a_redone_fit_is_shown_beside_the_shipped_constants() -> None:
    report = calibration.calibration_report(20, n_fixed=2, heldout_showers=4)
    fitted = replace(report.shipped, layer_x0=0.75, alpha_shift=1.5)
    fit = CalibrationFit(FIT_START, fitted, FITTED, {"z_mean": 13.85}, {"z_mean": 13.9}, 1e-6,
                         12, True, "`xtol` termination condition is satisfied.")
    shown = calibration.format_report(replace(report, fit=fit))
    assert "12 samples simulated, converged" in shown
    assert "| layer_x0 | 0.75 | 0.75 | 0.745 | +0.005 |" in shown, shown
    assert "| alpha_shift | 0 | 1.5 | 1.75 | -0.25 |" in shown
