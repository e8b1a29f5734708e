"""The generator of the paper's shape, its tiny variant, and weight files good and bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calo.config import LatentDistribution, ModelConfig
from calo.errors import CaloError
from calo.model import NetworkIO, build_generator, sample_latent
from calo.model.weights import load_generator

from .conftest import TINY_MODEL

FULL = ModelConfig(name="full")


def test_full_generator_has_the_papers_size() -> None:
    generator = build_generator(FULL)
    assert generator.count_params() == pytest.approx(2.06e6, rel=0.01)
    assert generator.output_shape == (None, 25, 25, 25)


def test_tiny_generator_has_the_same_topology() -> None:
    full, tiny = build_generator(FULL), build_generator(TINY_MODEL)
    assert [type(layer) for layer in tiny.layers] == [type(layer) for layer in full.layers]
    assert tiny.count_params() < full.count_params() / 10
    output = tiny.predict(np.ones((3, 200), np.float32), verbose=0)
    assert output.shape == (3, 25, 25, 25) and (output >= 0).all()


def test_network_io_scales_latent_by_energy_and_output_to_gev() -> None:
    io = NetworkIO(latent_dim=2, cell_scale=100.0)
    x = io.network_input(np.ones((2, 2)), np.array([100.0, 300.0]))
    np.testing.assert_allclose(x, [[1, 1], [3, 3]])
    np.testing.assert_allclose(io.showers(np.full((1, 2), 50.0)), 0.5)
    with pytest.raises(ValueError, match="latents but"):
        io.network_input(np.ones((2, 2)), np.ones(3))


def test_the_sphere_latent_carries_ep_exactly_in_the_input_norm() -> None:
    """A normal latent's norm spreads by 1/sqrt(2 n) (5 % at 200), which blurs Ep in the
    generator's input; on the sphere the input's norm is Ep / energy_scale x sqrt(n) exactly."""
    io = NetworkIO(latent_dim=200)
    energy = np.full(4000, 300.0, dtype=np.float32)
    spreads = {}
    for distribution in (LatentDistribution.normal, LatentDistribution.sphere):
        latent = sample_latent(len(energy), 200, distribution, np.random.default_rng(1))
        norm = np.linalg.norm(io.network_input(latent, energy), axis=1)
        spreads[distribution] = norm.std() / norm.mean()
        assert norm.mean() == pytest.approx(3.0 * np.sqrt(200), rel=0.01)
    assert spreads[LatentDistribution.normal] == pytest.approx(1 / np.sqrt(400), rel=0.1)
    assert spreads[LatentDistribution.sphere] < 1e-6
    directions = sample_latent(4000, 200, LatentDistribution.sphere, np.random.default_rng(2))
    assert np.abs(directions.mean(axis=0)).max() < 0.1  # still centred: isotropic directions


def test_weights_round_trip(tmp_path: Path) -> None:
    generator = build_generator(TINY_MODEL)
    path = tmp_path / "g.weights.h5"
    generator.save_weights(path)
    loaded, trained = load_generator(ModelConfig(**{**TINY_MODEL.__dict__, "weights": str(path)}))
    assert trained
    x = np.random.default_rng(0).standard_normal((2, 200)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), generator.predict(x, verbose=0))


def test_untrained_generator_is_said_to_be(caplog) -> None:
    _, trained = load_generator(TINY_MODEL)
    assert not trained and "freshly initialised" in caplog.text


@pytest.mark.parametrize("problem", ["missing", "truncated", "other architecture"])
def test_bad_weights_are_one_line_errors(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "g.weights.h5"
    if problem != "missing":
        build_generator(FULL if problem == "other architecture" else TINY_MODEL).save_weights(path)
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CaloError, match=r"g\.weights\.h5") as error:
        load_generator(ModelConfig(**{**TINY_MODEL.__dict__, "weights": str(path)}))
    assert "\n" not in str(error.value)


def test_a_training_checkpoint_as_weights_says_where_it_belongs(tmp_path: Path) -> None:
    path = tmp_path / "step-00000003.ckpt.npz"
    path.write_bytes(b"")
    with pytest.raises(CaloError, match="is a training checkpoint: python -m calo.train starts "
                                        "from it .* best_generator.weights.h5") as error:
        load_generator(ModelConfig(**{**TINY_MODEL.__dict__, "weights": str(path)}))
    assert "\n" not in str(error.value)
