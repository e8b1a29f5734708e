"""The generator's physics targets on samples whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from calo.config import PhysicsConfig
from calo.data import Showers
from calo.physics import validate
from calo.physics.targets import generator_targets, targets_table

pytestmark = pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy")


def _checks(reference: Showers, ecal: np.ndarray) -> dict[str, object]:
    result = validate(reference, Showers(ecal, reference.energy),
                      settings=PhysicsConfig(figures=False))
    return {check.measure.split(" (")[0].split(",")[0]: check
            for check in generator_targets(result)}


def test_the_reference_meets_every_target(reference_sample: Showers) -> None:
    checks = _checks(reference_sample, reference_sample.ecal.copy())
    assert all(check.met for check in checks.values()), targets_table(list(checks.values()))
    assert checks["z layer energy"].generated == pytest.approx(1.0)
    assert checks["SVN"].generated == pytest.approx(0.0, abs=1e-12)


def test_showers_two_layers_deeper_miss_the_depth_and_layer_targets(
        reference_sample: Showers) -> None:
    deeper = np.zeros_like(reference_sample.ecal)
    deeper[..., 2:] = reference_sample.ecal[..., :-2]
    checks = _checks(reference_sample, deeper)
    assert not checks["z mean"].met
    assert 1.3 < checks["z mean"].generated - checks["z mean"].reference <= 2  # the tail is cut
    assert checks["y mean"].met and checks["y std"].met  # the transverse shape is untouched


def test_empty_layers_are_the_worst_layer_at_zero(reference_sample: Showers) -> None:
    combed = reference_sample.ecal.copy()
    combed[..., 17] = 0.0
    combed[..., 20] = 0.0
    checks = _checks(reference_sample, combed)
    assert checks["z layer energy"].generated == 0.0 and not checks["z layer energy"].met
    table = targets_table(list(checks.values()))
    assert "| z layer energy" in table and "**no**" in table and "targets met" in table


def test_empty_cells_above_the_threshold_miss_the_hit_target(reference_sample: Showers) -> None:
    noisy = reference_sample.ecal + np.where(reference_sample.ecal > 0, 0.0, 1e-3).astype(
        np.float32)  # every empty cell above the hit threshold
    checks = _checks(reference_sample, noisy)
    assert not checks["hit cells per shower"].met
    assert checks["hit cells per shower"].generated > 5 * checks["hit cells per shower"].reference
