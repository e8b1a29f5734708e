"""The fp32 baseline: the Keras generator traced into one TensorFlow graph (oneDNN kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from calo.errors import CaloError
from calo.model.io import NetworkIO
from calo.precision.engine import Engine, NodeInfo

__all__ = ["FP32Engine", "graph_nodes"]

SAVED_MODEL = "saved_model"

# Graph plumbing that computes nothing worth a row in a dtype table.
_PLUMBING = {"Const", "Identity", "NoOp", "Placeholder", "ReadVariableOp", "VarHandleOp",
             "StatefulPartitionedCall", "PartitionedCall", "Shape", "StridedSlice", "Pack",
             "_Arg", "_Retval", "IdentityN"}


def graph_nodes(graph_def: tf.compat.v1.GraphDef) -> list[NodeInfo]:
    """Compute nodes of a graph and of the functions it calls, with their dtypes."""
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    table = []
    for node in nodes:
        if node.op in _PLUMBING:
            continue
        dtype_attr = next((node.attr[k] for k in ("T", "dtype", "Tinput") if k in node.attr), None)
        dtype = tf.dtypes.as_dtype(dtype_attr.type).name if dtype_attr is not None else "-"
        table.append(NodeInfo(node.name, node.op, dtype))
    return table


class FP32Engine(Engine):
    """The generator's inference graph: traced from Keras, or loaded from its SavedModel."""

    backend = "fp32"

    def __init__(self, function: tf.types.experimental.ConcreteFunction, io: NetworkIO,
                 saveable: tf.Module) -> None:
        super().__init__(io)
        self._function = function
        self._saveable = saveable  # the Keras model or the loaded SavedModel

    @classmethod
    def from_keras(cls, generator, io: NetworkIO) -> FP32Engine:
        signature = tf.TensorSpec([None, io.latent_dim], tf.float32)
        function = tf.function(lambda x: generator(x, training=False)).get_concrete_function(
            signature)
        return cls(function, io, generator)

    @classmethod
    def load(cls, folder: Path, io: NetworkIO) -> FP32Engine:
        try:
            loaded = tf.saved_model.load(str(folder / SAVED_MODEL))
            function = loaded.signatures["serving_default"]
        except (OSError, ValueError, KeyError) as error:
            raise CaloError(f"{folder}: corrupt fp32 SavedModel ({error})") from error
        return cls(function, io, loaded)

    def predict(self, network_input: NDArray[np.float32]) -> NDArray[np.float32]:
        output = self._function(tf.constant(network_input))
        if isinstance(output, dict):  # a SavedModel signature returns {name: tensor}
            output = next(iter(output.values()))
        return output.numpy()

    def _save_model(self, folder: Path) -> None:
        if hasattr(self._saveable, "export"):
            self._saveable.export(str(folder / SAVED_MODEL), verbose=False)
        else:
            tf.saved_model.save(self._saveable, str(folder / SAVED_MODEL),
                                signatures=self._function)

    def nodes(self) -> list[NodeInfo]:
        return graph_nodes(self._function.graph.as_graph_def())

    def memory_bytes(self) -> int:
        return sum(int(np.prod(v.shape)) * v.dtype.size for v in self._function.variables)
