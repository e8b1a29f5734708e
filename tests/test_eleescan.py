"""EleEscan HDF5 files: round trip, the three known Ep layouts, and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from calo.data import Showers, read_eleescan, write_eleescan
from calo.data.eleescan import read_file
from calo.errors import CaloError


@pytest.fixture
def small(reference_sample) -> Showers:
    return reference_sample.head(20)


def test_round_trip_keeps_every_cell(tmp_path: Path, small: Showers) -> None:
    path = write_eleescan(tmp_path / "EleEscan_1_1.h5", small)
    back = read_eleescan(path)
    np.testing.assert_array_equal(back.ecal, small.ecal)
    np.testing.assert_array_equal(back.energy, small.energy)
    with h5py.File(path) as h5:
        assert h5["ECAL"].dtype == np.float32
        np.testing.assert_array_equal(h5["target"][:, 1], small.energy)
    assert not list(tmp_path.glob(".part-*"))


def _write_raw(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as h5:
        for key, value in datasets.items():
            h5.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize("layout", ["target", "energy_3d", "energy_1d"])
def test_the_three_primary_energy_layouts(tmp_path: Path, small: Showers, layout: str) -> None:
    n = len(small)
    energy = {
        "target": {"target": np.stack([np.full(n, 11.0), small.energy], 1)},
        "energy_3d": {"energy": np.stack([np.zeros(n), small.energy], 1)[:, None, :]},
        "energy_1d": {"energy": small.energy},
    }[layout]
    path = _write_raw(tmp_path / "f.h5", ECAL=small.ecal, **energy)
    np.testing.assert_allclose(read_file(path).energy, small.energy)


def test_glob_folder_and_limit(tmp_path: Path, small: Showers) -> None:
    for i in range(3):
        write_eleescan(tmp_path / f"EleEscan_{i}.h5", small)
    assert len(read_eleescan(tmp_path)) == 60
    assert len(read_eleescan(str(tmp_path / "EleEscan_*.h5"), max_showers=25)) == 25


def test_threshold_zeroes_tiny_cells(tmp_path: Path, small: Showers) -> None:
    ecal = small.ecal.copy()
    ecal[:, 0, 0, 0] = 5e-7
    path = _write_raw(tmp_path / "f.h5", ECAL=ecal, energy=small.energy)
    assert (read_eleescan(path, cell_threshold=1e-6).ecal[:, 0, 0, 0] == 0).all()


def _bad_files(tmp_path: Path, small: Showers) -> dict[str, tuple[Path, str]]:
    good = write_eleescan(tmp_path / "good.h5", small)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    text = tmp_path / "text.h5"
    text.write_text("this is not HDF5\n")
    nan = small.ecal.copy()
    nan[0, 1, 2, 3] = np.nan
    negative = small.ecal.copy()
    negative[1, 12, 12, 3] = -1.0
    return {
        "missing": (tmp_path / "absent.h5", "not found|no HDF5 files"),
        "truncated": (truncated, "not a readable HDF5|truncated"),
        "not hdf5": (text, "not a readable HDF5"),
        "no ECAL": (_write_raw(tmp_path / "noecal.h5", energy=small.energy), "no ECAL"),
        "wrong shape": (_write_raw(tmp_path / "shape.h5", ECAL=np.zeros((4, 25, 25, 24)),
                                   energy=np.full(4, 100.0)), "shape"),
        "no energy": (_write_raw(tmp_path / "noenergy.h5", ECAL=small.ecal),
                      "no primary energy"),
        "NaN": (_write_raw(tmp_path / "nan.h5", ECAL=nan, energy=small.energy), "NaN"),
        "negative": (_write_raw(tmp_path / "neg.h5", ECAL=negative, energy=small.energy),
                     "negative"),
    }


def test_every_bad_file_is_a_one_line_error_naming_it(tmp_path: Path, small: Showers) -> None:
    for case, (path, message) in _bad_files(tmp_path, small).items():
        with pytest.raises(CaloError, match=message) as error:
            read_eleescan(path)
        text = str(error.value)
        assert "\n" not in text, case
        assert path.name in text or "absent" in text, case
