"""The inference rewrites are exact: same outputs as Keras to float tolerance.

Tolerance: float32 rounding only, max |difference| <= 1e-5 x max |output| (the rewrites are
computed in float64, then run in float32 in a different order).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from calo.errors import CaloError
from calo.model.generator import build_generator
from calo.precision.graph import from_keras, to_module
from calo.precision.rewrite import (
    fold_batchnorm,
    optimize,
    subpixel_kernel,
    transposed_to_conv,
    zero_insertion_phase,
)

from .conftest import TINY_MODEL

RELATIVE = 1e-5


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Trained-looking BatchNorm statistics: shifts, spreads and some negative gammas."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(-1.5, 1.5, channels))
            layer.beta.assign(rng.normal(0.0, 0.5, channels))
            layer.moving_mean.assign(rng.normal(0.0, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, channels))


@pytest.fixture(scope="module")
def generator() -> keras.Model:
    keras.utils.set_random_seed(3)
    model = build_generator(TINY_MODEL)
    randomize_batchnorm(model)
    return model


@pytest.fixture(scope="module")
def latent() -> np.ndarray:
    return (np.random.default_rng(1).standard_normal((6, 200)) * 3).astype(np.float32)


def run(graph, latent: np.ndarray) -> np.ndarray:
    return to_module(graph).serve(tf.constant(latent)).numpy()


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert np.abs(actual - expected).max() <= RELATIVE * np.abs(expected).max()


def transposed(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    batch, height, width, _ = x.shape
    shape = [batch, height * stride, width * stride, kernel.shape[2]]
    return tf.nn.conv2d_transpose(x, kernel, shape, stride, "SAME").numpy()


@pytest.mark.parametrize(("size", "stride"), [(5, 3), (5, 2), (4, 2), (3, 2), (2, 2)])
def test_subpixel_convolution_equals_transposed_convolution(size: int, stride: int) -> None:
    rng = np.random.default_rng(size * 10 + stride)
    x = rng.standard_normal((2, 6, 6, 3))
    kernel = rng.standard_normal((size, size, 4, 3))  # (k, k, cout, cin)
    expected = transposed(x, kernel, stride)
    sub = tf.nn.conv2d(x, subpixel_kernel(kernel, (stride, stride)), 1, "SAME")
    np.testing.assert_allclose(tf.nn.depth_to_space(sub, stride).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize(("size", "stride"), [(5, 3), (5, 2), (4, 2), (3, 2)])
def test_zero_insertion_convolution_equals_transposed_convolution(size: int,
                                                                   stride: int) -> None:
    rng = np.random.default_rng(size * 10 + stride)
    x = rng.standard_normal((2, 5, 5, 3))
    kernel = rng.standard_normal((size, size, 4, 3))
    phase = zero_insertion_phase(size, stride)
    spread = np.zeros((2, 5 * stride, 5 * stride, 3))
    spread[:, phase::stride, phase::stride] = x
    flipped = np.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    actual = tf.nn.conv2d(spread, flipped, 1, "SAME").numpy()
    np.testing.assert_allclose(actual, transposed(x, kernel, stride), atol=1e-10)


def test_graph_import_reproduces_keras(generator, latent) -> None:
    assert_same(run(from_keras(generator), latent), generator(latent, training=False).numpy())


def test_transposed_convolutions_become_convolutions(generator, latent) -> None:
    graph = transposed_to_conv(from_keras(generator))
    assert graph.count("conv_transpose") == 0 and graph.count("conv") == 28
    assert graph.count("depth_to_space") == 3  # the stride-2 ones; stride 3 inserts zeros
    assert graph.count("zero_insert") == 3
    assert_same(run(graph, latent), generator(latent, training=False).numpy())


def test_batchnorm_folding_is_exact(generator, latent) -> None:
    graph = fold_batchnorm(from_keras(generator))
    assert_same(run(graph, latent), generator(latent, training=False).numpy())


def test_both_rewrites_are_exact_and_fold_most_batchnorms(generator, latent) -> None:
    original = from_keras(generator)
    graph = optimize(original)
    assert_same(run(graph, latent), generator(latent, training=False).numpy())
    # per path 9 BatchNorms; left: the shifts before 6 'same' convolutions (one of them behind
    # zero insertion) and the last block's, before the permutation
    assert original.count("affine") == 27
    assert graph.count("affine") == 21
    scales = [n.params["scale"] for n in graph.nodes if n.kind == "affine"]
    assert sum(np.any(s != 1.0) for s in scales) == 3  # signs, only where no conv follows


def test_untrained_batchnorm_folds_away_entirely(latent) -> None:
    keras.utils.set_random_seed(4)
    model = build_generator(TINY_MODEL)
    graph = optimize(from_keras(model))
    assert graph.count("affine") == 0
    assert_same(run(graph, latent), model(latent, training=False).numpy())


def test_unknown_layer_is_a_clear_error() -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.GaussianNoise(0.1, name="noise")(inputs))
    with pytest.raises(CaloError, match="noise"):
        from_keras(model)
