"""Batch-norm statistics that match the weights they are saved with ("precise BN").

A GAN's weights move fast, so the moving averages that inference reads (momentum 0.99: about
the last hundred batches, of older weights, with dropout on) can describe another network: early
in a training the generator's inference showers were several times hotter than the same weights
made in training mode. Before each validation, the generator's moving statistics are set to the
statistics of one large batch through the current weights, with dropout off as at inference.
Training itself never reads them (the generator always trains in training mode).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras
import numpy as np

__all__ = ["recalibrate_batch_norm"]


@contextmanager
def _overridden(layers: list, attribute: str, value: float) -> Iterator[None]:
    previous = [getattr(layer, attribute) for layer in layers]
    for layer in layers:
        setattr(layer, attribute, value)
    try:
        yield
    finally:
        for layer, old in zip(layers, previous):
            setattr(layer, attribute, old)


def recalibrate_batch_norm(model: keras.Model, network_input: np.ndarray) -> None:
    """Set every BatchNormalization's moving mean and variance to its batch statistics over
    ``network_input`` (one batch: a few hundred examples), computed without dropout."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    with _overridden(norms, "momentum", 0.0), _overridden(dropouts, "rate", 0.0):
        model(network_input, training=True)
