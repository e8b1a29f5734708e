"""TFLite backends, run by the LiteRT interpreter (ai-edge-litert): float16 weights, or full
integer (int8 weights and activations, calibrated on the shared calibration set).

Each model is converted for one fixed batch size: with a dynamic batch the graph gains SHAPE and
PACK ops and XNNPACK no longer takes it whole (stack.md), so a batch of any other size is refused.
The model is a flatbuffer: loading it runs no code from the folder. Its operator codes are read
before the interpreter sees it, and only a model made of the builtin ops calo's engines contain
(:data:`ENGINE_OPS`), with its weights inside it, is loaded.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from calo.errors import CaloError, one_line
from calo.model.io import NetworkIO
from calo.precision.calibration import calibration_batches, require_calibration
from calo.precision.engine import Engine, NodeInfo
from calo.precision.frozen import op_names
from calo.precision.graph import Graph, to_module

__all__ = ["ENGINE_OPS", "FP16TFLiteEngine", "INT8TFLiteEngine", "TFLiteEngine",
           "build_tflite_engine", "check_model", "model_ops"]

MODEL_FILE = "model.tflite"

# Every builtin op in the models calo converts, collected from their operator codes: fp16 and
# int8, precision.rewrite on and off, the tiny and the full generator, with a ReLU or a linear
# output. Any other op is refused, custom ops above all: a Flex op (``Flex*``, a Select
# TensorFlow op) runs a TensorFlow kernel, PrintV2 to a file or ReadFile among them, wherever a
# Flex delegate is linked in, and any other custom op runs whatever kernel is registered under
# its name. A change that makes calo's models use a new builtin op adds it here.
ENGINE_OPS = frozenset({
    "ADD", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "FULLY_CONNECTED",
    "LEAKY_RELU", "MUL", "PAD", "QUANTIZE", "RESHAPE", "TRANSPOSE", "TRANSPOSE_CONV",
})

_REFUSED = "refusing to load it (re-create the engine with calo)"

Kind = Literal["fp16", "int8"]


class TFLiteEngine(Engine):
    """A TFLite flatbuffer for one batch size, run with as many threads as CPUs are pinned."""

    def __init__(self, content: bytes, io: NetworkIO, batch_size: int,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(io, batch_size, details)
        from ai_edge_litert.interpreter import Interpreter

        self._content = content
        try:
            self._interpreter = Interpreter(model_content=content,
                                            num_threads=len(os.sched_getaffinity(0)))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise CaloError(f"not a valid {self.backend} model ({one_line(error)}): "
                            "save the engine again") from error
        (self._input,) = self._interpreter.get_input_details()
        (self._output,) = self._interpreter.get_output_details()
        if tuple(self._input["shape"]) != (batch_size, io.latent_dim):
            raise CaloError(f"the {self.backend} model takes input {tuple(self._input['shape'])},"
                            f" not ({batch_size}, {io.latent_dim}): save the engine again")

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> TFLiteEngine:
        """The saved model, checked by :func:`check_model` before an interpreter reads it."""
        path = folder / MODEL_FILE
        if not path.is_file():
            raise CaloError(f"{folder}: {MODEL_FILE} is missing: save the engine again")
        if not isinstance(meta["fixed_batch_size"], int):
            raise CaloError(f"{folder}: engine.json names no batch size: save the engine again")
        content = path.read_bytes()
        check_model(content, path)
        try:
            return cls(content, meta["io"], meta["fixed_batch_size"], meta["details"])
        except CaloError as error:
            raise CaloError(f"{path}: {error}") from error

    def predict(self, network_input: NDArray[np.float32]) -> NDArray[np.float32]:
        self.check_batch(network_input)
        self._interpreter.set_tensor(self._input["index"],
                                     np.ascontiguousarray(network_input, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"]).copy()

    def _save_model(self, folder: Path) -> None:
        (folder / MODEL_FILE).write_bytes(self._content)

    def nodes(self) -> list[NodeInfo]:
        tensors = {t["index"]: t for t in self._interpreter.get_tensor_details()}
        table = []
        for op in self._interpreter._get_ops_details():  # the only per-op listing LiteRT has
            inputs = [tensors[i] for i in op["inputs"] if i >= 0]
            output = tensors[op["outputs"][0]]
            dtype = inputs[0]["dtype"] if inputs else output["dtype"]
            table.append(NodeInfo(output["name"], op["op_name"], np.dtype(dtype).name))
        return table

    def memory_bytes(self) -> int:
        """The flatbuffer, which holds the weights and stays in memory while the model runs."""
        return len(self._content)


def _root(content: bytes) -> Any:
    """The flatbuffer's Model table, read without an interpreter."""
    from ai_edge_litert import schema_py_generated as schema

    if not schema.Model.ModelBufferHasIdentifier(content, 0):
        raise ValueError("no TFLite file identifier")
    return schema.Model.GetRootAs(content, 0)


def model_ops(content: bytes) -> set[str]:
    """The ops a TFLite flatbuffer's operator codes name: builtin ops by their BuiltinOperator
    name, custom ops as ``Name (custom)``, Select TensorFlow ops as ``FlexName (Flex)``.
    A corrupt flatbuffer raises ValueError, struct.error or IndexError."""
    from ai_edge_litert import schema_py_generated as schema

    model = _root(content)
    count = model.OperatorCodesLength()
    if 4 * count > len(content):  # an entry takes 4 bytes at least: a corrupt length
        raise ValueError(f"{count} operator codes in {len(content)} bytes")
    builtin = {code: name for name, code in vars(schema.BuiltinOperator).items()
               if not name.startswith("_")}
    ops = set()
    for index in range(count):
        operator = model.OperatorCodes(index)
        # As the runtime reads it: the larger of the old int8 code and the new int32 one.
        code = max(operator.BuiltinCode(), operator.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            name = (operator.CustomCode() or b"").decode("utf-8", "replace")
            ops.add(f"{name} ({'Flex' if name.startswith('Flex') else 'custom'})")
        else:
            ops.add(builtin.get(code, f"builtin op {code}"))
    return ops


def check_model(content: bytes, path: Path) -> None:
    """Refuse a model that could do more than compute the generator from its own weights: one
    with an op outside :data:`ENGINE_OPS` (a custom or Flex op above all), or with external
    buffers, weights LiteRT reads from the files the model names (no calo model has either)."""
    try:
        unknown = model_ops(content) - ENGINE_OPS
        model = _root(content)
        external = model.ExternalBufferGroupsLength() + model.ExternalBuffersLength()
    except (ValueError, struct.error, IndexError, TypeError) as error:
        raise CaloError(f"{path}: not a valid TFLite model ({one_line(error)}): "
                        "save the engine again") from error
    if unknown:
        raise CaloError(f"{path} holds {op_names(unknown)} ops, which no calo engine contains: "
                        f"{_REFUSED}")
    if external:
        raise CaloError(f"{path} reads weights from other files (external buffers), which no "
                        f"calo engine does: {_REFUSED}")


class FP16TFLiteEngine(TFLiteEngine):
    backend = "fp16_tflite"


class INT8TFLiteEngine(TFLiteEngine):
    backend = "int8_tflite"


def build_tflite_engine(graph: Graph, io: NetworkIO, kind: Kind, batch_size: int,
                        calibration: NDArray[np.float32] | None = None) -> TFLiteEngine:
    """Convert the inference graph for ``batch_size``: float16 weights, or full integer
    calibrated on ``calibration`` (float32 in and out, int8 everywhere between)."""
    module = to_module(graph, batch_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        require_calibration(calibration)
        converter.representative_dataset = lambda: (
            [batch] for batch in calibration_batches(calibration, batch_size))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = converter.convert()
    engine_class = FP16TFLiteEngine if kind == "fp16" else INT8TFLiteEngine
    engine = engine_class(content, io, batch_size)
    ops = Counter(node.op for node in engine.nodes())
    engine.details = {"counts": {f"ops_{op.lower()}": count for op, count in sorted(ops.items())}}
    return engine
