"""A damaged or unverifiable reference cache is never used: it is moved aside with a warning
and the showers are simulated afresh into a new, checksummed file."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from calo.config import DataConfig
from calo.data import Showers, load_reference, simulate_reference, write_eleescan
from calo.data import reference as reference_module
from calo.data.reference import (
    CHECKSUM_ATTR,
    reference_cache_path,
    showers_digest,
    write_reference_cache,
)

N_SHOWERS = 30


def config(tmp_path: Path) -> DataConfig:
    return DataConfig(name="reference", n_showers=N_SHOWERS, cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def fresh() -> Showers:
    """What the simulator makes for ``config``: the cache must always hold exactly this."""
    cfg = DataConfig(name="reference", n_showers=N_SHOWERS)
    return simulate_reference(N_SHOWERS, cfg.energy_min, cfg.energy_max, cfg.seed, workers=1,
                              progress=False)


@pytest.fixture
def cache(tmp_path: Path, fresh: Showers) -> Path:
    """A valid cache file for ``config(tmp_path)``, as load_reference writes it."""
    return write_reference_cache(reference_cache_path(config(tmp_path)), fresh)


def overwrite_dataset(path: Path, name: str, index: slice | tuple, value: float) -> None:
    """Change values of an uncompressed dataset in the file's bytes, behind HDF5's back."""
    with h5py.File(path, "r") as h5:
        dataset = h5[name]
        offset = dataset.id.get_offset()
        assert offset is not None, f"{name} is not stored contiguously"
        values = dataset[()]
    values[index] = value
    with open(path, "r+b") as stream:
        stream.seek(offset)
        stream.write(values.astype(values.dtype).tobytes())


def flip_ecal_chunk(path: Path) -> None:
    """Invert bytes in the middle of the first compressed ECAL chunk."""
    with h5py.File(path, "r") as h5:
        info = h5["ECAL"].id.get_chunk_info(0)
    with open(path, "r+b") as stream:
        stream.seek(info.byte_offset + info.size // 2)
        data = stream.read(8)
        stream.seek(info.byte_offset + info.size // 2)
        stream.write(bytes(b ^ 0xFF for b in data))


def assert_regenerated(tmp_path: Path, fresh: Showers, loaded: Showers, kind: str) -> None:
    path = reference_cache_path(config(tmp_path))
    (aside,) = path.parent.glob(f"{path.name}.{kind}-*")
    assert aside.exists() and path.exists()
    np.testing.assert_array_equal(loaded.energy, fresh.energy)
    np.testing.assert_array_equal(loaded.ecal, fresh.ecal)
    assert ((loaded.energy >= 100.0) & (loaded.energy <= 500.0)).all()
    with h5py.File(path, "r") as h5:
        assert h5.attrs[CHECKSUM_ATTR] == showers_digest(fresh)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: overwrite_dataset(p, "energy", slice(0, 16), 12.0),
     "16 primary energies lie outside 100-500 GeV"),
    (lambda p: overwrite_dataset(p, "energy", slice(3, 4), 250.0), "checksum mismatch"),
    (lambda p: overwrite_dataset(p, "target", (slice(0, 16), 1), 12.0),
     "target dataset disagrees"),
    (flip_ecal_chunk, "not a readable HDF5 file|checksum mismatch"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
     "not a readable HDF5 file"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable HDF5 file"),
], ids=["energies-out-of-range", "energy-in-range", "target", "ecal-chunk", "truncated",
        "garbage"])
def test_damaged_cache_is_set_aside_and_simulated_again(tmp_path: Path, cache: Path,
                                                        fresh: Showers, damage, message,
                                                        caplog) -> None:
    damage(cache)
    with caplog.at_level(logging.WARNING, logger="calo.data.reference"):
        loaded = load_reference(config(tmp_path))
    assert_regenerated(tmp_path, fresh, loaded, "corrupt")
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "is corrupt" in record.getMessage() and str(cache) in record.getMessage()
    assert re.search(message, record.getMessage())


def test_cache_without_checksum_is_regenerated(tmp_path: Path, fresh: Showers, caplog) -> None:
    """A file written before checksums existed cannot be verified: it is not trusted."""
    path = reference_cache_path(config(tmp_path))
    write_eleescan(path, fresh, attrs={"generator": "calo.data.simulator"})
    with caplog.at_level(logging.WARNING, logger="calo.data.reference"):
        loaded = load_reference(config(tmp_path))
    assert_regenerated(tmp_path, fresh, loaded, "unverified")
    assert "no checksum" in caplog.text and "cannot be verified" in caplog.text


def test_checksummed_cache_of_the_wrong_shape_is_regenerated(tmp_path: Path,
                                                             fresh: Showers) -> None:
    write_reference_cache(reference_cache_path(config(tmp_path)), fresh.head(N_SHOWERS - 1))
    loaded = load_reference(config(tmp_path))
    assert_regenerated(tmp_path, fresh, loaded, "corrupt")


def test_valid_cache_is_used_without_simulating(tmp_path: Path, cache: Path, fresh: Showers,
                                                monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("simulated again despite a valid cache")

    monkeypatch.setattr(reference_module, "simulate_reference", forbidden)
    loaded = load_reference(config(tmp_path))
    np.testing.assert_array_equal(loaded.ecal, fresh.ecal)
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]


def test_fresh_cache_written_by_another_process_is_not_set_aside(tmp_path: Path, cache: Path,
                                                                 fresh: Showers) -> None:
    """Between this process's check and its rename, another one replaced the bad file with a
    fresh one: the fresh file stays in place."""
    bad_identity = reference_module._identity(cache)
    replacement = cache.with_name("replacement.h5")
    write_reference_cache(replacement, fresh)
    replacement.replace(cache)  # made while the bad file existed: another inode
    assert reference_module._set_aside(cache, bad_identity, "corrupt") is None
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]
    np.testing.assert_array_equal(load_reference(config(tmp_path)).energy, fresh.energy)


LOAD = """
import sys
import numpy as np
from calo.config import DataConfig
from calo.data import load_reference
showers = load_reference(DataConfig(name="reference", n_showers=int(sys.argv[1]),
                                    cache_dir=sys.argv[2]))
np.save(sys.argv[3], showers.energy)
"""


def test_two_processes_regenerating_one_damaged_cache(tmp_path: Path, cache: Path,
                                                      fresh: Showers) -> None:
    overwrite_dataset(cache, "energy", slice(0, 16), 12.0)
    processes = [subprocess.Popen([sys.executable, "-c", LOAD, str(N_SHOWERS),
                                   str(cache.parent), str(tmp_path / f"energy-{i}.npy")],
                                  stderr=subprocess.PIPE, text=True) for i in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    for i in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"energy-{i}.npy"), fresh.energy)
    assert not list(cache.parent.glob(".part-*"))
    asides = list(cache.parent.glob(f"{cache.name}.corrupt-*"))
    assert len(asides) == 1  # the damaged file, set aside once
    with h5py.File(cache, "r") as h5:
        assert h5.attrs[CHECKSUM_ATTR] == showers_digest(fresh)
