"""The fp32 baseline: the generator as one frozen TensorFlow graph run by oneDNN kernels.

With ``rewrite`` (the default) its BatchNorms are folded (:func:`calo.precision.rewrite.
fold_batchnorm`) and its transposed convolutions kept: of the fp32 paths measured here (Keras
``tf.function``, with XLA, the exported SavedModel, oneDNN off, the frozen graph with and
without each rewrite) that is the fastest (docs/precision.md), so that no speed-up
is inflated by a slow baseline.
"""

from __future__ import annotations

from calo.model.io import NetworkIO
from calo.precision.frozen import GraphEngine, freeze_graph
from calo.precision.graph import from_keras
from calo.precision.rewrite import fold_batchnorm

__all__ = ["FP32Engine"]


class FP32Engine(GraphEngine):
    """The generator's fp32 inference graph."""

    backend = "fp32"

    @classmethod
    def from_keras(cls, generator, io: NetworkIO, rewrite: bool = True) -> FP32Engine:
        graph = from_keras(generator)
        if rewrite:
            graph = fold_batchnorm(graph)
        graph_def, inputs, output = freeze_graph(graph)
        return cls(graph_def, io, inputs, output, {"rewrite": rewrite})
