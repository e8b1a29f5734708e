"""TFLite backends, run by the LiteRT interpreter (ai-edge-litert): float16 weights, or full
integer (int8 weights and activations, calibrated on the shared calibration set).

Each model is converted for one fixed batch size: with a dynamic batch the graph gains SHAPE and
PACK ops and XNNPACK no longer takes it whole (stack.md), so a batch of any other size is refused.
The model is a flatbuffer: loading it runs no code from the folder.
"""

from __future__ import annotations

import os
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
from calo.precision.graph import Graph, to_module

__all__ = ["FP16TFLiteEngine", "INT8TFLiteEngine", "TFLiteEngine", "build_tflite_engine"]

MODEL_FILE = "model.tflite"

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
        path = folder / MODEL_FILE
        if not path.is_file():
            raise CaloError(f"{folder}: {MODEL_FILE} is missing: save the engine again")
        if not isinstance(meta["fixed_batch_size"], int):
            raise CaloError(f"{folder}: engine.json names no batch size: save the engine again")
        try:
            return cls(path.read_bytes(), meta["io"], meta["fixed_batch_size"], meta["details"])
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
