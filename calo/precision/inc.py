"""Intel Neural Compressor backends: static post-training int8 quantization, and bf16.

Neural Compressor 3.10 takes the frozen inference graph (the fp32 engine's graph), reports the
nodes it can quantize, calibrates the activation ranges on the shared calibration set and
returns a frozen graph of oneDNN int8 (or bf16) kernels. ``precision.keep_fp32`` keeps chosen
nodes in fp32: each entry is a node name, an op type or a regular expression, matched in full
against the node names (``xy4_conv/Conv2D``), their layer part (``xy4_conv``) or op types.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from calo.config import PrecisionConfig
from calo.errors import CaloError
from calo.hw import detect_machine
from calo.model.io import NetworkIO
from calo.precision.calibration import CalibrationLoader, require_calibration
from calo.precision.frozen import GraphEngine, freeze_graph
from calo.precision.graph import Graph

__all__ = ["BF16Engine", "INT8Engine", "build_inc_engine", "neural_compressor_session",
           "has_int8_kernels", "layer_name", "quantizable_nodes", "quantization_config",
           "require_int8", "select_nodes"]

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 64
INT8_FLAGS = ("avx512f",)
# Quantized op types of a Neural Compressor graph -> the fp32 op they replace.
_QUANTIZED_OP = re.compile(r"Quantized(Conv2D|MatMul|DepthwiseConv2D|ConcatV2|MaxPool|AvgPool)")

Dtype = Literal["int8", "bf16"]


class INT8Engine(GraphEngine):
    """Neural Compressor's int8 graph."""

    backend = "int8_inc"


class BF16Engine(GraphEngine):
    """Neural Compressor's bf16 graph."""

    backend = "bf16_inc"


def has_int8_kernels() -> bool:
    """Whether TensorFlow's oneDNN int8 kernels run here. They need AVX-512: on an AVX2-only
    CPU the quantized convolutions and matmuls of a Neural Compressor graph return no output
    ("Missing 0-th output from ..._eightbit_requantize", neural-compressor issue #17)."""
    return any(detect_machine().has(flag) for flag in INT8_FLAGS)


def require_int8() -> None:
    """A one-line error where Neural Compressor's int8 graph cannot run."""
    if not has_int8_kernels():
        machine = detect_machine()
        raise CaloError(f"precision=int8_inc needs a CPU with AVX-512 (TensorFlow's oneDNN int8 "
                        f"kernels); this CPU ({machine.cpu_model}, "
                        f"{', '.join(machine.isa) or 'no AVX'}) has none: use "
                        "precision=int8_tflite or fp32")


def layer_name(node_name: str) -> str:
    """``StatefulPartitionedCall/xy4_conv/Conv2D`` -> ``xy4_conv`` (the layer part); a name
    without a slash is its own layer."""
    parts = node_name.split("/")
    return parts[-2] if len(parts) >= 2 else parts[0]


def select_nodes(patterns: list[str], quantizable: list[tuple[str, str]],
                 option: str = "precision.keep_fp32") -> list[str]:
    """The quantizable node names that ``patterns`` (``option``'s: keep_fp32, split_weights)
    select; a pattern matching none of them is a one-line error that lists the valid names."""
    kept: list[str] = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise CaloError(f"{option}: {pattern!r} is not a valid regular "
                            f"expression ({error})") from error
        matches = [name for name, op in quantizable
                   if any(regex.fullmatch(text) for text in (name, layer_name(name), op))]
        if not matches:
            valid = ", ".join(dict.fromkeys(layer_name(name) for name, _ in quantizable))
            raise CaloError(f"{option}: {pattern!r} matches no quantizable node; "
                            f"valid names: {valid} (or their op types, or regular expressions)")
        kept.extend(name for name in matches if name not in kept)
    return kept


class _ProcessStderr:
    """The stream Neural Compressor's calibration must capture: file descriptor 2, where
    TensorFlow's Print kernels write the activation ranges."""

    @staticmethod
    def fileno() -> int:
        return 2


@contextlib.contextmanager
def neural_compressor_session() -> Iterator[None]:
    """Quiet Neural Compressor (it logs every pass at INFO) and point its calibration capture
    at fd 2: it defaults to ``sys.stderr`` as it was when it was imported, which under a
    captured stderr (pytest, a redirecting caller) is another file, and calibration then
    reads nothing."""
    from neural_compressor.tensorflow.utils.utility import CaptureOutputToFile

    logger = logging.getLogger("neural_compressor")
    level, defaults = logger.level, CaptureOutputToFile.__init__.__defaults__
    logger.setLevel(logging.ERROR)
    CaptureOutputToFile.__init__.__defaults__ = (_ProcessStderr(),)
    try:
        yield
    finally:
        logger.setLevel(level)
        CaptureOutputToFile.__init__.__defaults__ = defaults


def quantizable_nodes(graph_def: tf.compat.v1.GraphDef) -> list[tuple[str, str]]:
    """(node name, op type) of every node of a frozen graph that Neural Compressor can
    quantize: the names ``precision.keep_fp32`` selects from."""
    from neural_compressor.tensorflow import Model, StaticQuantConfig

    with neural_compressor_session():
        return [(name, op) for name, op in StaticQuantConfig().get_model_info(Model(graph_def))]


def quantization_config(dtype: Dtype, kept: list[str] | tuple[str, ...] = ()):
    """Neural Compressor's static quantization config to ``dtype`` that keeps the quantizable
    nodes named in ``kept`` (exact names, as :func:`select_nodes` returns them) in fp32."""
    from neural_compressor.tensorflow import StaticQuantConfig

    config = StaticQuantConfig(weight_dtype=dtype, act_dtype=dtype,
                               weight_granularity="per_channel")
    for name in kept:
        config.set_local(re.escape(name) + "$",
                         StaticQuantConfig(weight_dtype="fp32", act_dtype="fp32"))
    return config


def build_inc_engine(graph: Graph, io: NetworkIO, cfg: PrecisionConfig, dtype: Dtype,
                     calibration: NDArray[np.float32]) -> GraphEngine:
    """Quantize the inference graph with Neural Compressor; int8 keeps ``cfg.keep_fp32``."""
    from neural_compressor.tensorflow import quantize_model

    require_calibration(calibration)
    graph_def, _, _ = freeze_graph(graph)
    with neural_compressor_session():
        quantizable = quantizable_nodes(graph_def)
        log.info("Neural Compressor can quantize %d nodes: %s", len(quantizable),
                 ", ".join(f"{name} ({op})" for name, op in quantizable))
        kept = select_nodes(cfg.keep_fp32, quantizable) if dtype == "int8" else []
        config = quantization_config(dtype, kept)
        log.info("quantizing to %s with Neural Compressor (%d calibration inputs, %d nodes kept "
                 "in fp32)", dtype, len(calibration), len(kept))
        quantized = quantize_model(graph_def, config,
                                   CalibrationLoader(calibration, CALIBRATION_BATCH))
    result = quantized.graph_def
    details = _quantization_details(result, quantizable, kept, dtype)
    if details["counts"][f"{dtype}_nodes"] == 0:
        raise CaloError(f"precision={cfg.name}: Neural Compressor left every node in fp32 "
                        f"(no {dtype} kernels for this graph on this CPU)")
    engine_class = INT8Engine if dtype == "int8" else BF16Engine
    (inputs,), (output,) = quantized.input_tensor_names, quantized.output_tensor_names
    return engine_class(result, io, f"{inputs}:0", f"{output}:0", details)


def _quantization_details(graph_def: tf.compat.v1.GraphDef, quantizable: list[tuple[str, str]],
                          kept: list[str], dtype: Dtype) -> dict[str, Any]:
    """Which quantizable nodes ended up in which precision, and how many of each kind."""
    remaining = {node.name: node for node in graph_def.node}
    precision = {}
    for name, op in quantizable:
        node = remaining.get(name)
        if node is None or node.op != op:
            precision[name] = dtype  # Neural Compressor replaced it with a quantized kernel
        elif "T" in node.attr and node.attr["T"].type == tf.bfloat16.as_datatype_enum:
            precision[name] = "bf16"
        else:
            precision[name] = "fp32"
    ops = Counter(node.op for node in graph_def.node)
    quantized_ops = Counter()
    for op, count in ops.items():
        match = _QUANTIZED_OP.search(op)
        if match:
            quantized_ops[match.group(1)] += count
    counts = {
        "quantizable_nodes": len(quantizable),
        f"{dtype}_nodes": sum(value == dtype for value in precision.values()),
        "fp32_nodes": sum(value == "fp32" for value in precision.values()),
        "quantize_ops": ops["QuantizeV2"],
        "dequantize_ops": ops["Dequantize"],
        "cast_ops": ops["Cast"],
        **{f"{dtype}_{op}": count for op, count in sorted(quantized_ops.items())},
    }
    return {"quantizable_nodes": [list(pair) for pair in quantizable],
            "node_precision": precision, "kept_fp32": kept, "counts": counts}
