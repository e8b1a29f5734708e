"""The paper's Conv2D discriminator (about 0.71 M parameters): three permuted paths to (9, 9, 9),
then real/fake, auxiliary Ep regression and ECAL (the image's sum) heads.

    shower (25, 25, 25) -> path(identity) | path(3,1,2) | path(2,3,1)   each -> (9, 9, 9)
        -> concatenate, flatten -> Dense 10 -> LeakyReLU -> BatchNorm
        -> real/fake (sigmoid), AUX Ep / energy_scale (linear); ECAL = sum of the input

A path is Conv2D 64 8x8 same, then 32 6x6, 32 5x5, 32 4x4, 32 3x3, 9 3x3 valid; every
convolution bias-free and followed by LeakyReLU -> BatchNorm -> Dropout.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from calo.config import ModelConfig
from calo.data.simulator import CELLS
from calo.model.generator import PERMUTATIONS, ConvSpec, conv_block

__all__ = ["EcalSum", "build_discriminator"]

PATH = (
    ConvSpec(8),
    ConvSpec(6, padding="valid"),
    ConvSpec(5, padding="valid"),
    ConvSpec(4, padding="valid"),
    ConvSpec(3, padding="valid"),
    ConvSpec(3, padding="valid"),
)


@keras.saving.register_keras_serializable(package="calo")
class EcalSum(layers.Layer):
    """The total energy of each image: a plain sum, as a registered layer (Keras' safe mode
    refuses to deserialize Lambda layers)."""

    def call(self, images):
        return ops.sum(images, axis=tuple(range(1, len(images.shape))))[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


def discriminator_path(shower, permutation: tuple[int, int, int], cfg: ModelConfig, name: str):
    x = shower if permutation == (1, 2, 3) else layers.Permute(permutation, name=f"{name}_in")(
        shower)
    for index, (filters, spec) in enumerate(zip(cfg.discriminator_filters, PATH)):
        x = conv_block(x, filters, spec, cfg, f"{name}{index}",
                       "glorot_uniform" if index == 0 else "he_uniform")
    return x


def build_discriminator(cfg: ModelConfig) -> keras.Model:
    """Shower (N, 25, 25, 25) in GeV * cell_scale -> [real/fake, Ep / energy_scale, ECAL]."""
    shower = keras.Input((CELLS, CELLS, CELLS), name="shower")
    paths = [discriminator_path(shower, perm, cfg, f"d{name}")
             for name, perm in PERMUTATIONS.items()]
    x = layers.Flatten(name="features")(layers.Concatenate(name="d_paths")(paths))
    x = layers.Dense(10, name="d_dense")(x)
    x = layers.LeakyReLU(negative_slope=cfg.leaky_alpha, name="d_dense_lrelu")(x)
    x = layers.BatchNormalization(name="d_dense_bn")(x)
    # The heads in float32 whatever the dtype policy (mixed_bfloat16 training): the losses and
    # the ECAL sum over 15,625 cells need float32's mantissa.
    real = layers.Dense(1, activation="sigmoid", name="real", dtype="float32")(x)
    aux = layers.Dense(1, name="aux_energy", dtype="float32")(x)
    ecal = EcalSum(name="ecal", dtype="float32")(shower)
    return keras.Model(shower, [real, aux, ecal], name="discriminator")
