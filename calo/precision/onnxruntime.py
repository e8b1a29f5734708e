"""ONNX Runtime int8 (int8_ort): the peer a user would try first off the OpenVINO path,
measured beside calo's own backends by ``make bench``.

The inference graph is converted by tf2onnx's TensorFlow handlers, then quantized by ONNX
Runtime's own static quantization (``quantize_static``): QDQ format, int8 weights per channel,
int8 activations, ranges the min and max over the shared calibration set; ``keep_fp32`` becomes
its ``nodes_to_exclude``. tf2onnx's ONNX optimizer is not run: on the full generator it copies
the whole graph on every pass and had not finished after ten minutes, and ONNX Runtime fuses the
layout transposes and the QDQ pairs itself when it loads the model (its pre-processing step
runs first, as its documentation asks).

The model is one protobuf file (``model.onnx``). Before ONNX Runtime sees it, :func:`check_model`
refuses tensors stored outside it (their location names any file), functions and operator
domains other than the standard one (a custom op runs whatever kernel a library registers), and
any op outside :data:`ENGINE_OPS`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calo.config import PrecisionConfig
from calo.errors import CaloError, one_line
from calo.model.io import NetworkIO
from calo.precision.calibration import calibration_batches, require_calibration
from calo.precision.engine import Engine, NodeInfo
from calo.precision.frozen import freeze_graph, op_names
from calo.precision.graph import Graph
from calo.precision.inc import select_nodes

__all__ = ["ENGINE_OPS", "INT8ORTEngine", "build_ort_engine", "check_model",
           "require_onnxruntime"]

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
ORT_PINS = "onnxruntime==1.32.0 tf2onnx==1.17.0"
OPSET = 17
CALIBRATION_BATCH = 64

# Every op in the models calo saves, collected from them: the tiny and the full generator,
# precision.rewrite on and off, with and without keep_fp32. Any other op is refused; a change
# that makes calo's models use a new op adds it here.
ENGINE_OPS = frozenset({
    "Add", "Concat", "Conv", "ConvTranspose", "DepthToSpace", "DequantizeLinear", "Gemm",
    "LeakyRelu", "MatMul", "Mul", "Pad", "QuantizeLinear", "Relu", "Reshape", "Transpose",
})
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_STANDARD_DOMAINS = ("", "ai.onnx")
_REFUSED = "refusing to load it (re-create the engine with calo)"


def require_onnxruntime() -> None:
    """A one-line error where ONNX Runtime or tf2onnx is not installed."""
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise CaloError(f"precision=int8_ort needs ONNX Runtime and tf2onnx ({one_line(error)}): "
                        f"pip install {ORT_PINS}, or use another precision") from error


def convert(graph: Graph, folder: Path) -> Path:
    """The inference graph as ONNX in ``folder``, pre-processed for quantization (shapes
    inferred, graph optimized by ONNX Runtime)."""
    import tensorflow as tf
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tf2onnx import tfonnx

    graph_def, inputs, output = freeze_graph(graph)
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")
        converted = tfonnx.process_tf_graph(tf_graph=tf_graph, input_names=[inputs],
                                            output_names=[output], opset=OPSET)
    raw, ready = folder / "converted.onnx", folder / "preprocessed.onnx"
    raw.write_bytes(converted.make_model("generator").SerializeToString())
    quant_pre_process(str(raw), str(ready), skip_symbolic_shape=True)
    return ready


def weighted_nodes(model) -> list[tuple[str, str]]:
    """(name, op type) of each convolution and matmul, the nodes keep_fp32 selects from: named
    after the TensorFlow nodes they come from (``xy4_conv/BiasAdd``)."""
    return [(node.name, node.op_type) for node in model.graph.node if node.op_type in _WEIGHTED]


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over the shared calibration batches."""

    def __init__(self, name: str, inputs: NDArray[np.float32]) -> None:
        self._batches: Iterator[NDArray[np.float32]] = calibration_batches(inputs,
                                                                           CALIBRATION_BATCH)
        self._name = name

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


def build_ort_engine(graph: Graph, io: NetworkIO, cfg: PrecisionConfig,
                     calibration: NDArray[np.float32] | None) -> INT8ORTEngine:
    """Convert the inference graph and quantize it with ONNX Runtime, keeping
    ``cfg.keep_fp32`` in float32."""
    require_onnxruntime()
    require_calibration(calibration)
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="calo-ort-") as tmp:
        folder = Path(tmp)
        ready = convert(graph, folder)
        model = onnx.load(str(ready))
        quantizable = weighted_nodes(model)
        kept = select_nodes(cfg.keep_fp32, quantizable)
        log.info("quantizing to int8 with ONNX Runtime (%d calibration inputs, %d of %d weighted "
                 "nodes kept in fp32)", len(calibration), len(kept), len(quantizable))
        quantized = folder / MODEL_FILE
        quantize_static(str(ready), str(quantized),
                        _Calibration(model.graph.input[0].name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept)
        content = quantized.read_bytes()
    return INT8ORTEngine(content, io, {"rewrite": cfg.rewrite,
                                       "quantizable_nodes": [list(p) for p in quantizable],
                                       "kept_fp32": kept})


class INT8ORTEngine(Engine):
    """An ONNX model run by ONNX Runtime's CPU provider, with as many threads as CPUs are
    pinned (a benchmark stream worker's share)."""

    backend = "int8_ort"

    def __init__(self, content: bytes, io: NetworkIO, details: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(io, details=details)
        import onnx
        import onnxruntime as ort

        self._content = content
        self._model = onnx.load_from_string(content)
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # its warnings are about its own fusions
        try:
            self._session = ort.InferenceSession(content, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own exception types
            raise CaloError(f"ONNX Runtime cannot load this {self.backend} model "
                            f"({one_line(error, 200)}): save the engine again") from error
        (self._input,) = self._session.get_inputs()
        shape = self._input.shape
        if len(shape) != 2 or shape[1] != io.latent_dim:
            raise CaloError(f"the {self.backend} model takes input {shape}, not "
                            f"(batch, {io.latent_dim}): save the engine again")
        self.details.setdefault("counts", self._counts())

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> INT8ORTEngine:
        path = folder / MODEL_FILE
        if not path.is_file():
            raise CaloError(f"{folder}: {MODEL_FILE} is missing: save the engine again")
        content = path.read_bytes()
        check_model(content, path)
        try:
            return cls(content, meta["io"], meta["details"])
        except CaloError as error:
            raise CaloError(f"{path}: {error}") from error

    def predict(self, network_input: NDArray[np.float32]) -> NDArray[np.float32]:
        batch = np.ascontiguousarray(network_input, np.float32)
        return self._session.run(None, {self._input.name: batch})[0]

    def _save_model(self, folder: Path) -> None:
        (folder / MODEL_FILE).write_bytes(self._content)

    def nodes(self) -> list[NodeInfo]:
        """Each convolution and matmul, int8 where its weights come through a
        DequantizeLinear (ONNX Runtime runs such a QDQ group as one int8 kernel)."""
        dequantized = {output for node in self._model.graph.node
                       if node.op_type == "DequantizeLinear" for output in node.output}
        return [NodeInfo(node.name, node.op_type,
                         "int8" if len(node.input) > 1 and node.input[1] in dequantized
                         else "fp32")
                for node in self._model.graph.node if node.op_type in _WEIGHTED]

    def _counts(self) -> dict[str, int]:
        dtypes = [node.dtype for node in self.nodes()]
        return {"quantizable_nodes": len(dtypes), "int8_nodes": dtypes.count("int8"),
                "fp32_nodes": dtypes.count("fp32")}

    def memory_bytes(self) -> int:
        """The model's constants (int8 weights, float32 biases and scales)."""
        from onnx import numpy_helper

        return sum(numpy_helper.to_array(tensor).nbytes
                   for tensor in self._model.graph.initializer)


def check_model(content: bytes, path: Path) -> None:
    """Refuse a model that could do more than compute the generator from its own weights:
    tensors stored in other files, functions, ops of a non-standard domain (custom kernels) or
    outside :data:`ENGINE_OPS`."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(content)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise CaloError(f"{path}: not a valid ONNX model ({one_line(error)}): save the engine "
                        "again") from error
    if not model.graph.node:
        raise CaloError(f"{path}: not a valid ONNX model (no nodes): save the engine again")
    tensors = [*model.graph.initializer,
               *(part for sparse in model.graph.sparse_initializer
                 for part in (sparse.values, sparse.indices))]
    external = [tensor.name or "a sparse tensor" for tensor in tensors
                if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data]
    if external:
        raise CaloError(f"{path} stores {op_names(external)} in other files, which no calo "
                        f"engine does: {_REFUSED}")
    if model.functions:
        raise CaloError(f"{path} defines functions, which no calo engine does: {_REFUSED}")
    domains = {node.domain for node in model.graph.node} - set(_STANDARD_DOMAINS)
    if domains:
        raise CaloError(f"{path} holds ops of the domains {op_names(domains)} (custom kernels), "
                        f"which no calo engine contains: {_REFUSED}")
    unknown = {node.op_type for node in model.graph.node} - ENGINE_OPS
    if unknown:
        raise CaloError(f"{path} holds {op_names(unknown)} ops, which no calo engine contains: "
                        f"{_REFUSED}")
