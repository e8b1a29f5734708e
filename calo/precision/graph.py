"""The generator as a small dataflow graph of numpy weights, so inference rewrites can be done
(and tested) on plain arrays, then emitted as one TensorFlow graph.

Only the layers the 3DGAN generator uses are understood; any other layer is refused with the
layer named. Dropout disappears (inference), BatchNormalization becomes a per-channel
``affine`` node ``a * x + b``; :mod:`calo.precision.rewrite` then folds those away.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from calo.errors import CaloError

__all__ = ["Graph", "Node", "from_keras", "to_module"]

Kind = Literal["input", "dense", "reshape", "permute", "conv", "conv_transpose",
               "depth_to_space", "zero_insert", "leaky_relu", "relu", "affine", "concat"]

# Nodes that act on each channel independently and commute with positive per-channel scaling.
HOMOGENEOUS = ("leaky_relu", "relu")


@dataclass
class Node:
    """One operation. ``params`` holds numpy weights and settings, by kind:

    dense: kernel (in, out), bias; reshape: shape; permute: dims (1-based, batch excluded);
    conv: kernel (kh, kw, cin, cout), bias, strides, padding, input_shape (H, W, C);
    conv_transpose: kernel (kh, kw, cout, cin), strides, padding, input_shape;
    depth_to_space: block; zero_insert: block, phase (input i lands at block * i + phase, zeros
    elsewhere); leaky_relu: alpha; affine: scale, shift (per channel).
    """

    name: str
    kind: Kind
    inputs: list[str]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """Nodes in topological order; one input node and one output node."""

    nodes: list[Node]
    output: str

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def consumers(self, name: str) -> list[Node]:
        return [node for node in self.nodes if name in node.inputs]

    def remove(self, node: Node) -> None:
        """Drop a one-input node, wiring its consumers to its input."""
        (source,) = node.inputs
        self.redirect(node.name, source)
        self.nodes.remove(node)

    def redirect(self, old: str, new: str) -> None:
        """Wire every consumer of ``old`` (and the graph output, if it is ``old``) to ``new``."""
        for consumer in self.consumers(old):
            consumer.inputs = [new if i == old else i for i in consumer.inputs]
        if self.output == old:
            self.output = new

    def count(self, kind: Kind) -> int:
        return sum(node.kind == kind for node in self.nodes)

    def copy(self) -> Graph:
        return Graph([replace(n, inputs=list(n.inputs), params=dict(n.params))
                      for n in self.nodes], self.output)


def _array(variable) -> NDArray[np.float64]:
    """Weights in float64, so that folding adds no rounding of its own."""
    return np.asarray(variable.numpy(), dtype=np.float64)


def _conv_params(layer) -> dict[str, Any]:
    if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1):
        raise CaloError(f"layer {layer.name}: only channels_last, undilated convolutions can be "
                        "rewritten for inference")
    if layer.activation.__name__ != "linear":
        raise CaloError(f"layer {layer.name}: a fused activation cannot be rewritten; "
                        "use a separate activation layer")
    return {"strides": tuple(layer.strides), "padding": layer.padding,
            "input_shape": tuple(layer.input.shape[1:])}


def _layer_node(layer, inputs: list[str]) -> Node | None:
    """The node for one Keras layer (None: the layer does nothing at inference)."""
    kind = type(layer).__name__
    if kind == "Dropout":
        return None
    if kind == "Dense":
        if layer.activation.__name__ != "linear":
            raise CaloError(f"layer {layer.name}: Dense with an activation is not supported")
        bias = _array(layer.bias) if layer.use_bias else np.zeros(layer.units)
        return Node(layer.name, "dense", inputs, {"kernel": _array(layer.kernel), "bias": bias})
    if kind == "Reshape":
        return Node(layer.name, "reshape", inputs, {"shape": tuple(layer.target_shape)})
    if kind == "Permute":
        return Node(layer.name, "permute", inputs, {"dims": tuple(layer.dims)})
    if kind == "Conv2D":
        kernel = _array(layer.kernel)
        bias = _array(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1])
        return Node(layer.name, "conv", inputs,
                    {"kernel": kernel, "bias": bias, **_conv_params(layer)})
    if kind == "Conv2DTranspose":
        if layer.use_bias or layer.output_padding is not None or layer.padding != "same":
            raise CaloError(f"layer {layer.name}: only bias-free, padding='same' "
                            "Conv2DTranspose without output_padding can be rewritten")
        return Node(layer.name, "conv_transpose", inputs,
                    {"kernel": _array(layer.kernel), **_conv_params(layer)})
    if kind == "LeakyReLU":
        return Node(layer.name, "leaky_relu", inputs, {"alpha": float(layer.negative_slope)})
    if kind == "ReLU":
        if layer.max_value is not None or layer.negative_slope or layer.threshold:
            raise CaloError(f"layer {layer.name}: only a plain ReLU is supported")
        return Node(layer.name, "relu", inputs)
    if kind == "BatchNormalization":
        return Node(layer.name, "affine", inputs, _batchnorm_affine(layer))
    if kind == "Concatenate":
        if layer.axis not in (-1, 4):
            raise CaloError(f"layer {layer.name}: only channel concatenation is supported")
        return Node(layer.name, "concat", inputs)
    raise CaloError(f"layer {layer.name} ({kind}) cannot be rewritten for inference: "
                    "calo.precision.graph knows the generator's layer types only")


def _batchnorm_affine(layer) -> dict[str, NDArray[np.float64]]:
    """Inference BatchNorm as y = scale * x + shift."""
    if layer.axis not in (-1, 3) and list(np.atleast_1d(layer.axis)) != [3]:
        raise CaloError(f"layer {layer.name}: only channel-axis BatchNormalization is supported")
    mean, variance = _array(layer.moving_mean), _array(layer.moving_variance)
    gamma = _array(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = _array(layer.beta) if layer.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    return {"scale": scale, "shift": beta - mean * scale}


def from_keras(model) -> Graph:
    """The functional Keras generator as a Graph (each layer must be called once)."""
    nodes: list[Node] = []
    alias: dict[str, str] = {}  # a dropped layer's name -> the node that stands for it
    for layer in model.layers:
        if len(layer._inbound_nodes) != 1:
            raise CaloError(f"layer {layer.name} is called {len(layer._inbound_nodes)} times: "
                            "shared layers cannot be rewritten")
        inputs = [alias.get(p.operation.name, p.operation.name)
                  for p in layer._inbound_nodes[0].parent_nodes]
        if type(layer).__name__ == "InputLayer":
            nodes.append(Node(layer.name, "input", []))
            continue
        node = _layer_node(layer, inputs)
        if node is None:
            (alias[layer.name],) = inputs
        else:
            nodes.append(node)
    (output,) = model.outputs
    last = output._keras_history.operation.name
    return Graph(nodes, alias.get(last, last))


class InferenceModule(tf.Module):
    """A Graph as a TensorFlow module: weights as variables, one traced ``serve`` function."""

    def __init__(self, graph: Graph, batch_size: int | None = None) -> None:
        super().__init__(name="generator")
        self._graph = graph
        self._weights = {
            f"{node.name}/{key}": tf.Variable(np.asarray(value, np.float32), trainable=False,
                                              name=f"{node.name}_{key}")
            for node in graph.nodes for key, value in node.params.items()
            if isinstance(value, np.ndarray)
        }
        (first,) = [node for node in graph.nodes if node.kind == "input"]
        width = graph.consumers(first.name)[0].params["kernel"].shape[0]
        self.serve = tf.function(
            self._forward,
            input_signature=[tf.TensorSpec([batch_size, width], tf.float32, name="scaled_latent")])

    def _forward(self, latent: tf.Tensor) -> tf.Tensor:
        values: dict[str, tf.Tensor] = {}
        for node in self._graph.nodes:
            if node.kind == "input":
                values[node.name] = latent
                continue
            with tf.name_scope(node.name):  # readable node names for keep_fp32 and profiles
                values[node.name] = self._emit(node, [values[name] for name in node.inputs])
        return tf.identity(values[self._graph.output], name="showers")

    def _w(self, node: Node, key: str) -> tf.Variable:
        return self._weights[f"{node.name}/{key}"]

    def _emit(self, node: Node, args: list[tf.Tensor]) -> tf.Tensor:
        x, p = args[0], node.params
        if node.kind == "dense":
            return tf.nn.bias_add(tf.matmul(x, self._w(node, "kernel")), self._w(node, "bias"))
        if node.kind == "reshape":
            return tf.reshape(x, [-1, *p["shape"]])
        if node.kind == "permute":
            return tf.transpose(x, [0, *p["dims"]])
        if node.kind == "conv":
            y = tf.nn.conv2d(x, self._w(node, "kernel"), p["strides"], p["padding"].upper())
            return tf.nn.bias_add(y, self._w(node, "bias"))
        if node.kind == "conv_transpose":
            height, width, _ = p["input_shape"]
            strides = p["strides"]
            shape = [tf.shape(x)[0], height * strides[0], width * strides[1],
                     p["kernel"].shape[2]]
            return tf.nn.conv2d_transpose(x, self._w(node, "kernel"), shape, strides,
                                          p["padding"].upper())
        if node.kind == "depth_to_space":
            return tf.nn.depth_to_space(x, p["block"])
        if node.kind == "zero_insert":  # x in one channel block of block^2, then to space
            block, phase, channels = p["block"], p["phase"], x.shape[-1]
            before = (phase * block + phase) * channels
            after = (block * block - 1) * channels - before
            return tf.nn.depth_to_space(tf.pad(x, [[0, 0], [0, 0], [0, 0], [before, after]]),
                                        block)
        if node.kind == "leaky_relu":
            return tf.nn.leaky_relu(x, p["alpha"])
        if node.kind == "relu":
            return tf.nn.relu(x)
        if node.kind == "affine":
            scaled = x if np.all(p["scale"] == 1.0) else x * self._w(node, "scale")
            return tf.nn.bias_add(scaled, self._w(node, "shift"))
        if node.kind == "concat":
            return tf.concat(args, axis=-1)
        raise ValueError(f"node {node.name}: unknown kind {node.kind}")


def to_module(graph: Graph, batch_size: int | None = None) -> InferenceModule:
    """The graph as a TensorFlow module whose ``serve`` takes (batch, latent) float32."""
    return InferenceModule(graph, batch_size)
