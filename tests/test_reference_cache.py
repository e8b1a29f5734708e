"""data=reference simulates once into a cache keyed by its parameters, written atomically."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from calo.config import DataConfig
from calo.data import load_reference
from calo.data import reference as reference_module
from calo.data.reference import reference_cache_path


def config(tmp_path: Path, **changes) -> DataConfig:
    return DataConfig(**{"name": "reference", "n_showers": 30, "cache_dir": str(tmp_path),
                         **changes})


def test_second_load_reuses_the_cache(tmp_path: Path, monkeypatch) -> None:
    first = load_reference(config(tmp_path))
    assert reference_cache_path(config(tmp_path)).exists()

    def forbidden(*args, **kwargs):
        raise AssertionError("simulated again despite a valid cache")

    monkeypatch.setattr(reference_module, "simulate_reference", forbidden)
    second = load_reference(config(tmp_path))
    np.testing.assert_array_equal(first.ecal, second.ecal)


def test_cache_key_changes_with_every_parameter(tmp_path: Path) -> None:
    base = reference_cache_path(config(tmp_path))
    for change in ({"seed": 3}, {"n_showers": 31}, {"energy_min": 150.0},
                   {"energy_max": 400.0}):
        assert reference_cache_path(config(tmp_path, **change)) != base


def test_interrupted_generation_leaves_no_file_that_is_trusted(tmp_path: Path,
                                                               monkeypatch) -> None:
    real_create = h5py.Group.create_dataset

    def crash_on_target(self, name, *args, **kwargs):
        if name == "target":
            raise KeyboardInterrupt
        return real_create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", crash_on_target)
    with pytest.raises(KeyboardInterrupt):
        load_reference(config(tmp_path))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert len(load_reference(config(tmp_path))) == 30
