"""Engines that run a frozen TensorFlow graph (every weight a constant): the fp32 baseline and
Neural Compressor's int8 and bf16 graphs.

The graph is saved as ``model.pb``, a serialized GraphDef. Loading parses it and imports its
nodes into a graph function: nothing from the folder is executed but the graph itself, and only a
graph made of the op types calo's engines contain (:data:`ENGINE_OPS`) is imported at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from numpy.typing import NDArray
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from calo.errors import CaloError, one_line
from calo.model.io import NetworkIO
from calo.precision.engine import Engine, NodeInfo
from calo.precision.graph import Graph, to_module

__all__ = ["ENGINE_OPS", "MODEL_FILE", "GraphEngine", "check_graph", "freeze", "freeze_graph",
           "graph_nodes", "op_names"]

MODEL_FILE = "model.pb"

# Every op type in the graphs calo builds, collected from their nodes: fp32, Neural Compressor's
# int8 (with and without precision.keep_fp32) and bf16 (forced with FORCE_BF16=1 on a CPU
# without it), precision.rewrite on and off, the tiny and the full generator, with a ReLU or a
# linear output. A saved graph holding any other op is refused: TensorFlow has too many ops
# that read or write files (PrintV2 to a file, summary writers, ImmutableConst, ReadFile...) or
# run Python for a list of the unsafe ones to be complete, and none of these computes or
# touches anything but tensors. A change that makes calo's graphs use a new op adds it here.
ENGINE_OPS = frozenset({
    "BiasAdd", "Cast", "ConcatV2", "Const", "Conv2D", "Conv2DBackpropInput", "DepthToSpace",
    "Dequantize", "HostConst", "Identity", "LeakyRelu", "MatMul", "Mul", "NoOp", "Pack", "Pad",
    "Placeholder", "QuantizeV2", "QuantizedConv2DWithBiasAndReluAndRequantize",
    "QuantizedConv2DWithBiasAndRequantize", "QuantizedMatMulWithBiasAndDequantize", "Relu",
    "Reshape", "Shape", "StridedSlice", "Transpose",
})

_REFUSED = "refusing to load it (re-create the engine with calo)"

# Graph plumbing that computes nothing worth a row in a dtype table.
_PLUMBING = {"Const", "HostConst", "Identity", "NoOp", "Placeholder", "ReadVariableOp",
             "VarHandleOp", "StatefulPartitionedCall", "PartitionedCall", "Shape",
             "StridedSlice", "Pack", "_Arg", "_Retval", "IdentityN"}


def freeze(function: tf.types.experimental.ConcreteFunction
           ) -> tuple[tf.compat.v1.GraphDef, str, str]:
    """A one-input, one-output concrete function as a GraphDef with its weights inlined as
    constants, and the names of its input and output tensors."""
    frozen = convert_variables_to_constants_v2(function)
    (inputs,), (output,) = frozen.inputs, frozen.outputs
    return frozen.graph.as_graph_def(), inputs.name, output.name


def freeze_graph(graph: Graph) -> tuple[tf.compat.v1.GraphDef, str, str]:
    """The inference graph as a frozen GraphDef (see :func:`freeze`)."""
    module = to_module(graph)  # holds the variables until they are inlined
    return freeze(module.serve.get_concrete_function())


def _all_nodes(graph_def: tf.compat.v1.GraphDef) -> Iterator[tf.compat.v1.NodeDef]:
    """The nodes of a graph, then those of the functions in its library."""
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


def op_names(ops: Iterable[str], limit: int = 5) -> str:
    """Op names read from a file, for a one-line message: sorted, at most ``limit`` of them, a
    name with unprintable characters (a line break) escaped, a long one cut."""
    names = sorted(set(ops))
    shown = [(name if name.isprintable() else repr(name))[:80] for name in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more


def check_graph(graph_def: tf.compat.v1.GraphDef, path: Path) -> None:
    """Refuse a graph that could do more than compute the generator: one with an op outside
    :data:`ENGINE_OPS`, or with a function library (no calo graph has one, and a node can call
    a library function by naming it as its op)."""
    library = graph_def.library
    if library.function or library.gradient:
        raise CaloError(f"{path} holds a function library, which no calo engine has: {_REFUSED}")
    unknown = {node.op for node in _all_nodes(graph_def)} - ENGINE_OPS
    if unknown:
        raise CaloError(f"{path} holds {op_names(unknown)} ops, which no calo engine contains: "
                        f"{_REFUSED}")


def graph_nodes(graph_def: tf.compat.v1.GraphDef) -> list[NodeInfo]:
    """Compute nodes of a graph and of the functions it calls, with their dtypes."""
    table = []
    for node in _all_nodes(graph_def):
        if node.op in _PLUMBING:
            continue
        key = next((k for k in ("T", "Tinput", "dtype", "DstT") if k in node.attr), None)
        dtype = tf.dtypes.as_dtype(node.attr[key].type).name if key else "-"
        table.append(NodeInfo(node.name, node.op, dtype))
    return table


def constant_bytes(graph_def: tf.compat.v1.GraphDef) -> int:
    """Bytes held by the graph's constants: its weights, in whatever dtype they are stored."""
    total = 0
    for node in graph_def.node:
        if node.op in ("Const", "HostConst"):
            tensor = node.attr["value"].tensor
            shape = [d.size for d in tensor.tensor_shape.dim]
            total += int(np.prod(shape)) * tf.dtypes.as_dtype(tensor.dtype).size
    return total


def _import(graph_def: tf.compat.v1.GraphDef, inputs: str, output: str
            ) -> tf.types.experimental.ConcreteFunction:
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    return wrapped.prune(graph.get_tensor_by_name(inputs), graph.get_tensor_by_name(output))


class GraphEngine(Engine):
    """A frozen graph from (batch, latent) float32 to the generator output."""

    def __init__(self, graph_def: tf.compat.v1.GraphDef, io: NetworkIO, inputs: str,
                 output: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(io, details={**(details or {}), "inputs": inputs, "output": output})
        self.graph_def = graph_def
        self._function = _import(graph_def, inputs, output)

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> GraphEngine:
        """The saved graph, checked by :func:`check_graph` before TensorFlow imports it."""
        path = folder / MODEL_FILE
        details = meta["details"]
        try:
            graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
        except FileNotFoundError as error:
            raise CaloError(f"{folder}: {MODEL_FILE} is missing: save the engine again") from error
        except DecodeError as error:
            raise cls._invalid(path, error) from error
        check_graph(graph_def, path)
        try:
            return cls(graph_def, meta["io"], details["inputs"], details["output"], details)
        except (KeyError, ValueError, TypeError, tf.errors.OpError) as error:
            raise cls._invalid(path, error) from error

    @classmethod
    def _invalid(cls, path: Path, error: Exception) -> CaloError:
        return CaloError(f"{path} is not a valid {cls.backend} graph ({one_line(error, 200)}): "
                         "save the engine again")

    def predict(self, network_input: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._function(tf.constant(network_input, tf.float32)).numpy()

    def _save_model(self, folder: Path) -> None:
        (folder / MODEL_FILE).write_bytes(self.graph_def.SerializeToString())

    def nodes(self) -> list[NodeInfo]:
        return graph_nodes(self.graph_def)

    def memory_bytes(self) -> int:
        return constant_bytes(self.graph_def)
