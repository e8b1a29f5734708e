"""The training's dtype policy, and whether this machine's bf16 arithmetic computes the
generator at all.

Keras' ``mixed_bfloat16`` hands the convolutions to the backend's bf16 kernels, and those can be
wrong, not just rounded (:mod:`calo.model.bf16`: 8 or 12 input channels fail, 4 and 16 or more
do not). A training on such kernels would run for hours on garbage, so before it starts, the
generator in bf16 is compared once with a float32 copy of the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras
import numpy as np

from calo.config import ModelConfig, TrainPrecision
from calo.errors import CaloError
from calo.model.bf16 import BF16_ROUNDING_BOUND, relative_difference
from calo.model.generator import build_generator

__all__ = ["bf16_disagreement", "dtype_policy", "require_faithful_bf16"]


@contextmanager
def dtype_policy(precision: TrainPrecision) -> Iterator[None]:
    """Layers built inside compute in bf16 for ``train.precision=bf16`` (Keras mixed_bfloat16:
    float32 variables, so checkpoints and weights are the same either way)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision is TrainPrecision.bf16
                                  else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def bf16_disagreement(generator: keras.Model, model: ModelConfig, samples: int = 4) -> float:
    """How far ``generator`` (built under mixed_bfloat16, linear output) computes from a
    float32 copy of its weights (:func:`calo.model.bf16.relative_difference`)."""
    with dtype_policy(TrainPrecision.fp32):
        reference = build_generator(model, "linear")
    reference.set_weights(generator.get_weights())
    network_input = np.random.default_rng(0).normal(
        size=(samples, generator.input_shape[-1])).astype(np.float32)
    return relative_difference(reference(network_input, training=False),
                               generator(network_input, training=False))


def require_faithful_bf16(generator: keras.Model, model: ModelConfig) -> None:
    """A one-line error when the bf16 kernels compute a different network than float32."""
    disagreement = bf16_disagreement(generator, model)
    if disagreement > BF16_ROUNDING_BOUND:
        raise CaloError(
            f"train.precision=bf16: this machine's bf16 kernels compute the {model.name} "
            f"generator {disagreement:.0%} away from float32 (rounding alone gives about 0.5 %; "
            "a oneDNN fault seen with 8x8 convolutions of 8 or 12 input channels on AMX): "
            "train in float32 (train.precision=fp32) or with other layer widths")
