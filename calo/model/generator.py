"""The paper's Conv2D generator: a 200-d input to a (25, 25, 25) shower, through three paths
that each see the 5^3 seed cube with its axes permuted.

    z (200) -> Dense(125) -> (5, 5, 5)
        -> path(identity) | path(3,1,2) | path(2,3,1)      each (5,5,5) -> (25,25,25)
        -> permute back, concatenate (25, 25, 75) -> Conv2D 25 3x3 -> ReLU -> (25, 25, 25)

A path is Conv2D 32 5x5, Conv2DTranspose 64 5x5 /3, Conv2D 64 5x5, Conv2DTranspose 64 5x5 /2,
Conv2D 64 8x8, Conv2D 64 5x5 valid, Conv2D 32 4x4, Conv2D 32 3x3, Conv2D 25 2x2 valid; every
convolution bias-free and followed by LeakyReLU -> BatchNorm -> Dropout. As in the public Conv2D
code, the first convolution of a path keeps Keras' Glorot initialiser and every later one (and
the combining convolution) starts from He-uniform.

The output activation is ReLU for inference; training starts with a linear output and switches
to ReLU at ``train.relu_epoch`` (the public recipe: a ReLU from the start leaves whole z layers,
which are output channels here, stuck at zero). The activation has no weights, so the two
generators share one set of weights.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import keras
from keras import layers

from calo.config import ModelConfig
from calo.data.simulator import CELLS

__all__ = ["PERMUTATIONS", "OutputActivation", "build_generator", "with_output"]

OutputActivation = Literal["relu", "linear"]

SEED_SIDE = 5  # the Dense layer's output is a 5^3 cube

# Each path sees the cube with its axes permuted; the inverse puts its output back in (x, y, z).
PERMUTATIONS = {"xy": (1, 2, 3), "zx": (3, 1, 2), "yz": (2, 3, 1)}
_INVERSE = {(1, 2, 3): (1, 2, 3), (3, 1, 2): (2, 3, 1), (2, 3, 1): (3, 1, 2)}


class ConvSpec(NamedTuple):
    kernel: int
    strides: int = 1
    padding: str = "same"
    transposed: bool = False


# The eight configurable convolutions of a path (filters from ModelConfig.path_filters):
# 5 -> 15 -> 15 -> 30 -> 30 -> 26 -> 26 -> 26, then Conv2D 25 2x2 valid -> 25.
PATH = (
    ConvSpec(5),
    ConvSpec(5, strides=3, transposed=True),
    ConvSpec(5),
    ConvSpec(5, strides=2, transposed=True),
    ConvSpec(8),
    ConvSpec(5, padding="valid"),
    ConvSpec(4),
    ConvSpec(3),
)
LAST = ConvSpec(2, padding="valid")


def conv_block(x, filters: int, spec: ConvSpec, cfg: ModelConfig, name: str,
               initializer: str = "he_uniform"):
    """Bias-free (transposed) convolution -> LeakyReLU -> BatchNorm -> Dropout."""
    conv = layers.Conv2DTranspose if spec.transposed else layers.Conv2D
    x = conv(filters, spec.kernel, strides=spec.strides, padding=spec.padding, use_bias=False,
             kernel_initializer=initializer, name=f"{name}_conv")(x)
    x = layers.LeakyReLU(negative_slope=cfg.leaky_alpha, name=f"{name}_lrelu")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Dropout(cfg.dropout, name=f"{name}_drop")(x)


def generator_path(cube, permutation: tuple[int, int, int], cfg: ModelConfig, name: str):
    """One permuted view of the seed cube, upsampled to a (25, 25, 25) image."""
    x = cube if permutation == (1, 2, 3) else layers.Permute(permutation, name=f"{name}_in")(cube)
    for index, (filters, spec) in enumerate(zip(cfg.path_filters, PATH)):
        x = conv_block(x, filters, spec, cfg, f"{name}{index}",
                       "glorot_uniform" if index == 0 else "he_uniform")
    x = conv_block(x, CELLS, LAST, cfg, f"{name}{len(PATH)}")
    inverse = _INVERSE[permutation]
    return x if inverse == (1, 2, 3) else layers.Permute(inverse, name=f"{name}_out")(x)


def build_generator(cfg: ModelConfig, output: OutputActivation = "relu") -> keras.Model:
    """Scaled latent (N, latent_dim) -> cell energies (N, 25, 25, 25) in GeV * cell_scale."""
    latent = keras.Input((cfg.latent_dim,), name="scaled_latent")
    cube = layers.Dense(SEED_SIDE**3, name="seed_dense")(latent)
    cube = layers.Reshape((SEED_SIDE,) * 3, name="seed_cube")(cube)
    paths = [generator_path(cube, perm, cfg, name) for name, perm in PERMUTATIONS.items()]
    x = layers.Concatenate(name="paths")(paths)
    # float32 from the combining convolution on, whatever the dtype policy (mixed_bfloat16
    # training): cell energies span six decades, and the losses read them.
    x = layers.Conv2D(CELLS, 3, padding="same", kernel_initializer="he_uniform",
                      bias_initializer=keras.initializers.Constant(cfg.output_bias_init),
                      name="combine_conv", dtype="float32")(x)
    return keras.Model(latent, _output(x, output), name="generator")


def _output(linear, output: OutputActivation):
    return layers.ReLU(name="showers", dtype="float32")(linear) if output == "relu" else linear


def with_output(generator: keras.Model, output: OutputActivation) -> keras.Model:
    """The same generator (shared layers and weights) with the other output activation."""
    linear = generator.get_layer("combine_conv").output
    return keras.Model(generator.input, _output(linear, output), name="generator")
