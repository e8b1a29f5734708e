"""OpenVINO backends: the inference graph converted to OpenVINO, run by its CPU plugin in float32
(fp32_ov), with bf16 as the inference precision hint (bf16_ov), or quantized to int8 by NNCF's
post-training quantization on the shared calibration set (int8_ov).

The converted model is saved as OpenVINO IR (``model.xml``, the graph; ``model.bin``, the
weights, kept in float32). Loading reads both files here and hands their bytes to OpenVINO, so
nothing else on disk is read: before OpenVINO sees the XML, :func:`check_ir` refuses a document
type (entities can name other files), a layer type outside :data:`ENGINE_OPS` or outside the
standard opsets (a custom extension), and weights outside the ``.bin``.

``precision.keep_fp32`` works as for int8_inc: the weighted nodes of the converted model carry
the names of the TensorFlow nodes they come from (``xy4_conv/Conv2D``, ``seed_dense/MatMul``:
OpenVINO's converter loses them, :func:`name_weighted_ops` puts them back by matching weights
before OpenVINO's transformations change any), and the selected ones become NNCF's
``IgnoredScope``.

OpenVINO and NNCF report usage to Google Analytics unless a consent file declines it; calo
imports them with their telemetry package blocked, so neither sends anything (unless the
process imported openvino_telemetry before calo did).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

from calo.config import ActivationScheme, FloatDtype, PrecisionConfig
from calo.errors import CaloError, one_line
from calo.hw import int8_sums_in_32_bits, require_bf16
from calo.model.io import NetworkIO
from calo.precision.calibration import CalibrationLoader, require_calibration
from calo.precision.engine import Engine, NodeInfo
from calo.precision.frozen import freeze_graph, op_names
from calo.precision.graph import Graph
from calo.precision.inc import select_nodes

__all__ = ["ENGINE_OPS", "MODEL_BIN", "MODEL_XML", "BF16OVEngine", "FP32OVEngine",
           "INT8OVEngine", "OpenVINOEngine", "build_openvino_engine", "check_ir",
           "import_openvino", "name_weighted_ops", "require_openvino", "split_weights",
           "weighted_nodes"]

log = logging.getLogger(__name__)

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
OPENVINO_PINS = "openvino==2026.4.1 nncf==3.4.0"
CALIBRATION_BATCH = 64
BF16_FLOATS = "an int8_ov engine with precision.float_dtype=bf16"

# Every layer type in the IR calo saves, collected from their XML: fp32 (also what bf16_ov
# saves: bf16 is a compile-time hint) and NNCF's int8, with and without precision.keep_fp32,
# precision.rewrite on and off, the tiny and the full generator, with a ReLU or a linear
# output (all from opset1, but Gather from opset8 and ShapeOf from opset3). Any other type is
# refused: OpenVINO's opsets hold loops and conditions with bodies of their own, and a custom
# extension runs whatever kernel a plugin library registers under its name. A change that
# makes calo's models use a new op adds it here.
ENGINE_OPS = frozenset({
    "Add", "Concat", "Const", "Convert", "Convolution", "ConvolutionBackpropData",
    "DepthToSpace", "FakeQuantize", "Gather", "MatMul", "Multiply", "PReLU", "Pad", "Parameter",
    "ReLU", "Reshape", "Result", "ShapeOf", "StridedSlice", "Transpose",
})
_STANDARD_OPSET = re.compile(r"opset[0-9]{1,2}")
_REFUSED = "refusing to load it (re-create the engine with calo)"
# TensorFlow ops whose weights make them the quantizable nodes, and the index of that input.
_WEIGHTED_TF_OPS = {"Conv2D": 1, "MatMul": 1, "Conv2DBackpropInput": 1}
_WEIGHTED_OV_OPS = ("Convolution", "ConvolutionBackpropData", "MatMul")
# The CPU plugin's kernels for them.
_RUNTIME_WEIGHTED = ("Convolution", "Deconvolution", "FullyConnected", "MatMul")

Hint = Literal["f32", "bf16"]


@contextlib.contextmanager
def _no_telemetry() -> Iterator[None]:
    """Import OpenVINO and NNCF without their telemetry (both fall back to a stub when the
    openvino_telemetry package cannot be imported)."""
    blocked = "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if blocked and sys.modules.get("openvino_telemetry", "") is None:
            del sys.modules["openvino_telemetry"]


def import_openvino():
    """The openvino package, imported without its telemetry."""
    with _no_telemetry():
        import openvino

    return openvino


def require_openvino(backend: str = "fp32_ov") -> None:
    """A one-line error where OpenVINO (or NNCF, for int8_ov) is not installed."""
    try:
        with _no_telemetry():
            import openvino  # noqa: F401

            if backend == "int8_ov":
                import nncf  # noqa: F401
    except ImportError as error:
        raise CaloError(f"precision={backend} needs OpenVINO and NNCF ({one_line(error)}): "
                        f"pip install {OPENVINO_PINS}, or use another precision") from error


def _fingerprint(values: NDArray) -> str:
    """The same for a weight tensor in any layout (TensorFlow's HWIO, OpenVINO's OIHW). Zeros
    are made positive: sorting keeps -0.0 and 0.0 (folding a negative BatchNorm scale into a
    sub-pixel kernel's structural zeros makes both) in their layout's order."""
    data = np.sort(np.asarray(values, np.float32).ravel()) + np.float32(0.0)  # -0.0 -> 0.0
    return hashlib.sha1(f"{data.size}".encode() + data.tobytes()).hexdigest()


def weighted_nodes(graph_def: tf.compat.v1.GraphDef) -> dict[str, tuple[str, str]]:
    """Fingerprint of its weights -> (node name, op type) for each convolution and matmul of
    a frozen graph: the nodes Neural Compressor calls quantizable, named as it names them."""
    nodes = {node.name: node for node in graph_def.node}

    def constant(name: str) -> tf.compat.v1.NodeDef | None:
        node = nodes.get(name.split(":")[0].lstrip("^"))
        while node is not None and node.op == "Identity":
            node = nodes.get(node.input[0].split(":")[0])
        return node if node is not None and node.op == "Const" else None

    found = {}
    for node in graph_def.node:
        index = _WEIGHTED_TF_OPS.get(node.op)
        weights = constant(node.input[index]) if index is not None else None
        if weights is not None:
            found[_fingerprint(tf.make_ndarray(weights.attr["value"].tensor))] = (node.name,
                                                                                   node.op)
    return found


def name_weighted_ops(model, graph_def: tf.compat.v1.GraphDef) -> list[tuple[str, str]]:
    """Give each convolution and matmul of the converted ``model`` the name of the TensorFlow
    node it comes from, found by its weights (OpenVINO's converter names them ``Convolution_312``
    after moving the layout transposes); returns (name, TensorFlow op type) of each one named,
    in the model's order."""
    by_weights = weighted_nodes(graph_def)
    named = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _WEIGHTED_OV_OPS:
            continue
        source = op.input_value(1).get_node()
        if source.get_type_name() != "Constant":
            continue
        match = by_weights.pop(_fingerprint(source.get_data()), None)
        if match is not None:
            op.set_friendly_name(match[0])
            named.append(match)
    if by_weights:
        log.warning("OpenVINO: %d weighted TensorFlow nodes have no counterpart in the converted "
                    "model (%s): precision.keep_fp32 cannot select them", len(by_weights),
                    ", ".join(name for name, _ in by_weights.values()))
    return named


def convert(graph: Graph):
    """The inference graph as an OpenVINO model, its weighted ops named as in TensorFlow; and
    those (name, op type) pairs.

    This is ``ov.convert_model``'s pipeline taken apart: the TensorFlow frontend, then the
    names put back, then the MOC transformations convert_model applies (the same model, op for
    op). Naming after MOC would be too late: it folds a scale that reaches a convolution into
    its weights (a fresh generator's BatchNorm, 1/sqrt(1 + eps) with a zero shift), and the
    weights no longer match."""
    import_openvino()
    from openvino._offline_transformations import (  # what convert_model runs after the frontend
        apply_fused_names_cleanup,
        apply_moc_transformations,
    )
    from openvino.frontend import FrontEndManager

    graph_def, _, _ = freeze_graph(graph)
    frontend = FrontEndManager().load_by_framework("tf")
    with tempfile.TemporaryDirectory(prefix="calo-openvino-") as folder:
        path = Path(folder) / "graph.pb"  # the frontend reads a GraphDef from a file only
        path.write_bytes(graph_def.SerializeToString())
        model = frontend.convert(frontend.load(str(path), False))  # weights read, not mapped
    named = name_weighted_ops(model, graph_def)
    apply_moc_transformations(model, cf=False, smart_reshape=True)
    apply_fused_names_cleanup(model)
    return model, named


def _with_weights(op, weights):
    """A new op like ``op`` (a convolution, transposed convolution or matmul) on the same input
    with ``weights`` instead of its own (OpenVINO's Python API has no clone)."""
    from openvino import opset13

    data, attributes = op.input_value(0), op.get_attributes()
    kind = op.get_type_name()
    if kind == "MatMul":
        return opset13.matmul(data, weights, attributes["transpose_a"], attributes["transpose_b"])
    window = {key: attributes[key] for key in ("pads_begin", "pads_end", "dilations")}
    auto_pad = attributes["auto_pad"].upper()
    if kind == "Convolution":
        return opset13.convolution(data, weights, attributes["strides"], auto_pad=auto_pad,
                                   **window)
    output_shape = op.input_value(2) if op.get_input_size() > 2 else None
    return opset13.convolution_backprop_data(
        data, weights, attributes["strides"], output_shape, auto_pad=auto_pad,
        output_padding=attributes["output_padding"], **window)


def split_weights(model, names: list[str]) -> None:
    """Run each named weighted op of ``model`` as two: one with its float32 weights rounded to
    bf16 (``high``), one with what that rounding lost (``low``, which the CPU plugin rounds to
    bf16 in turn), their outputs added. Under the bf16 inference hint the weights then keep
    about 16 significant bits instead of 8, as two bf16 passes: on AMX the second costs a
    fraction of the float32 kernel's 5x (OpenVINO's way to keep a node float32 under the hint,
    the DisablePrecisionConversion runtime attribute, cannot be set from Python). The inputs
    still arrive in bf16. The full generator's ``combine_conv`` alone carried a fifth of
    bf16_ov's pixel-wise error (0.0036 -> 0.0028)."""
    import_openvino()
    from openvino import opset13

    bf16 = tf.bfloat16.as_numpy_dtype
    targets = [op for op in model.get_ordered_ops() if op.get_friendly_name() in names
               and op.input_value(1).get_node().get_type_name() == "Constant"]
    missing = set(names) - {op.get_friendly_name() for op in targets}
    if missing:
        raise CaloError(f"precision.split_weights: {op_names(missing)} have no float32 weights "
                        "in the converted model to split: leave them out")
    for op in targets:
        weights = op.input_value(1).get_node().get_data().astype(np.float32)
        high = weights.astype(bf16).astype(np.float32)
        low = _with_weights(op, opset13.constant(weights - high))
        low.set_friendly_name(f"{op.get_friendly_name()}/low_bf16")
        consumers = list(op.output(0).get_target_inputs())
        total = opset13.add(op, low, name=f"{op.get_friendly_name()}/split")
        op.input(1).replace_source_output(opset13.constant(high).output(0))
        for consumer in consumers:
            consumer.replace_source_output(total.output(0))
    model.validate_nodes_and_infer_types()


def _quantize(model, calibration: NDArray[np.float32], ignored: list[str],
              activations: ActivationScheme, seven_bit_weights: bool):
    """NNCF's post-training quantization (int8, symmetric per-channel weights, fast bias
    correction; activations symmetric, NNCF's default ``performance`` preset, or asymmetric,
    its ``mixed`` one) with each activation's range the min and max over every calibration
    input, as Neural Compressor and TFLite take it: NNCF's default averages per-input maxima,
    which clips the high-energy showers (pixel-wise error 0.043 against 0.013 on the 2026-11
    generator) and depends on how the inputs are batched. ``ignored`` nodes stay in float.

    ``seven_bit_weights``, on a CPU without VNNI (or oneDNN capped below it): every layer's
    weights get NNCF's overflow fix (7 bits; NNCF's default does this for the first layer
    only). There the int8 kernels sum pairs of products in 16 bits, which saturate, and the
    full generator's showers came out 0.097 of their energy away from fp32 pixel by pixel
    instead of 0.081 (0.236 instead of 0.08 on the tiny one)."""
    with _no_telemetry():
        import nncf
    from nncf.common.logging.logger import nncf_logger
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    loader = CalibrationLoader(calibration, CALIBRATION_BATCH)  # with its batch_size
    batches = -(-len(calibration) // CALIBRATION_BATCH)
    ranges = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        overflow_fix=OverflowFix.ENABLE if seven_bit_weights else None)
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)  # NNCF logs advice at INFO and WARNING
    try:
        preset = (nncf.QuantizationPreset.MIXED if activations is ActivationScheme.asymmetric
                  else nncf.QuantizationPreset.PERFORMANCE)
        return nncf.quantize(model, nncf.Dataset(loader, lambda item: item[0]),
                             preset=preset, subset_size=batches, advanced_parameters=ranges,
                             ignored_scope=nncf.IgnoredScope(names=ignored, validate=True))
    finally:
        nncf_logger.setLevel(level)


def build_openvino_engine(graph: Graph, io: NetworkIO, cfg: PrecisionConfig, kind: str,
                          calibration: NDArray[np.float32] | None = None) -> OpenVINOEngine:
    """Convert the inference graph; ``kind`` int8 quantizes it with NNCF (keeping
    ``cfg.keep_fp32`` in float32), bf16 compiles it with the bf16 inference precision hint
    (``cfg.split_weights`` as two bf16 terms: :func:`split_weights`)."""
    require_openvino(f"{kind}_ov")
    if kind == "int8" and cfg.float_dtype is FloatDtype.bf16:  # before calibrating, not after
        require_bf16(BF16_FLOATS, "precision.float_dtype=fp32")
    model, quantizable = convert(graph)
    kept: list[str] = []
    split = select_nodes(cfg.split_weights, quantizable, "precision.split_weights")
    split_weights(model, split)
    if kind == "int8":
        require_calibration(calibration)
        kept = select_nodes(cfg.keep_fp32, quantizable)
        seven_bit_weights = not int8_sums_in_32_bits()
        log.info("quantizing to int8 with NNCF (%d calibration inputs, %s activations, %d of "
                 "%d weighted nodes kept in fp32)", len(calibration), cfg.activations.value,
                 len(kept), len(quantizable))
        model = _quantize(model, calibration, kept, cfg.activations, seven_bit_weights)
    engine_class = {"fp32": FP32OVEngine, "bf16": BF16OVEngine, "int8": INT8OVEngine}[kind]
    details = {"rewrite": cfg.rewrite, "quantizable_nodes": [list(p) for p in quantizable],
               "kept_fp32": kept, "split_weights": split}
    if kind == "int8":
        details["activations"] = cfg.activations.value
        details["float_dtype"] = cfg.float_dtype.value
        details["weights_7bit"] = "every layer" if seven_bit_weights else "first layer"
    engine = engine_class(model, io, details)
    engine.details.update(engine.precision_details())
    if kind == "int8" and engine.details["counts"]["int8_nodes"] == 0:
        raise CaloError(f"precision={cfg.name}: NNCF left every node in float (no int8 "
                        "kernels for this graph on this CPU)")
    return engine


# --- the engine -----------------------------------------------------------------------------

def _runtime_precision(value: str) -> str:
    return {"i8": "int8", "u8": "int8", "f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(
        value, value)


class OpenVINOEngine(Engine):
    """An OpenVINO model compiled for the CPU with ``hint`` as its inference precision, one
    stream of as many threads as CPUs are pinned (a benchmark stream worker's share)."""

    hint: ClassVar[Hint] = "f32"

    def __init__(self, model, io: NetworkIO, details: dict[str, Any] | None = None) -> None:
        super().__init__(io, details=details)
        self.model = model
        self.inference_precision = self.inference_hint()
        ov = import_openvino()
        config = {"INFERENCE_PRECISION_HINT": self.inference_precision, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": len(os.sched_getaffinity(0))}
        try:
            self._compiled = ov.Core().compile_model(model, "CPU", config)
        except RuntimeError as error:
            raise CaloError(f"OpenVINO cannot compile this {self.backend} model "
                            f"({one_line(error, 200)}): save the engine again") from error
        self._request = self._compiled.create_infer_request()
        (parameter,) = model.inputs
        shape = parameter.get_partial_shape()
        if shape.rank.get_length() != 2 or shape[1].get_length() != io.latent_dim:
            raise CaloError(f"the {self.backend} model takes input {shape}, not "
                            f"(batch, {io.latent_dim}): save the engine again")

    def inference_hint(self) -> Hint:
        """The inference precision the CPU plugin is given (the class's)."""
        return self.hint

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> OpenVINOEngine:
        """The saved IR, checked by :func:`check_ir` and read from memory: OpenVINO is given
        the bytes of model.xml and model.bin, never a path."""
        xml_path, bin_path = folder / MODEL_XML, folder / MODEL_BIN
        for path in (xml_path, bin_path):
            if not path.is_file():
                raise CaloError(f"{folder}: {path.name} is missing: save the engine again")
        xml, weights = xml_path.read_bytes(), bin_path.read_bytes()
        check_ir(xml, len(weights), xml_path)
        ov = import_openvino()
        try:
            model = ov.Core().read_model(xml, weights)
        except RuntimeError as error:
            raise CaloError(f"{xml_path} is not a valid {cls.backend} model "
                            f"({one_line(error, 200)}): save the engine again") from error
        try:
            return cls(model, meta["io"], meta["details"])
        except CaloError as error:
            raise CaloError(f"{xml_path}: {error}") from error

    def predict(self, network_input: NDArray[np.float32]) -> NDArray[np.float32]:
        self._request.infer({0: np.ascontiguousarray(network_input, np.float32)})
        return self._request.get_output_tensor(0).data.copy()

    def _save_model(self, folder: Path) -> None:
        ov = import_openvino()
        # float32 weights: save_model would store them as float16 by default
        ov.save_model(self.model, str(folder / MODEL_XML), compress_to_fp16=False)

    def _runtime_ops(self) -> list:
        """The compiled model's nodes (OpenVINO's fused kernels), with what they run in."""
        return [op for op in self._compiled.get_runtime_model().get_ordered_ops()
                if op.get_rt_info()["layerType"].astype(str) not in
                ("Input", "Output", "Const", "Reorder")]

    def nodes(self) -> list[NodeInfo]:
        """The compiled model's kernels and the precision each runs in (``runtimePrecision``:
        what the CPU plugin chose, which is where bf16 shows)."""
        table = []
        for op in self._runtime_ops():
            info = op.get_rt_info()
            table.append(NodeInfo(op.get_friendly_name(), info["layerType"].astype(str),
                                  _runtime_precision(info["runtimePrecision"].astype(str))))
        return table

    def precision_details(self) -> dict[str, Any]:
        """Each weighted node's runtime precision, and counts worth a run parameter. A node is
        found by its layer (``xy4_conv`` of ``xy4_conv/Conv2D``) among the names each compute
        kernel lists as fused into it: the plugin renames what it fuses (the dense layer's
        kernel is ``seed_dense/BiasAdd`` in float32, ``seed_dense/MatMul/DequantizationMultiply``
        in int8)."""
        layers = {name.split("/")[0]: name for name, _ in self.details.get("quantizable_nodes", [])}
        precision = {}
        for op in self._runtime_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) not in _RUNTIME_WEIGHTED:
                continue
            fused = [op.get_friendly_name(), *info["originalLayersNames"].astype(str).split(",")]
            name = next((layers[t.split("/")[0]] for t in fused if t.split("/")[0] in layers), None)
            if name is not None:
                precision[name] = _runtime_precision(info["runtimePrecision"].astype(str))
        runtime = Counter((node.op, node.dtype) for node in self.nodes())
        counts = {"quantizable_nodes": len(layers),
                  **{f"{dtype}_nodes": sum(v == dtype for v in precision.values())
                     for dtype in sorted(set(precision.values()) | {"fp32"})},
                  **{f"kernels_{op.lower()}_{dtype}": count
                     for (op, dtype), count in sorted(runtime.items())}}
        return {"node_precision": precision, "inference_precision": self.inference_precision,
                "counts": counts}

    def memory_bytes(self) -> int:
        """The model's constants (its weights, int8 where NNCF compressed them)."""
        return sum(op.get_byte_size() for op in self.model.get_ops()
                   if op.get_type_name() == "Constant")


class FP32OVEngine(OpenVINOEngine):
    backend = "fp32_ov"
    hint = "f32"  # explicit: on a CPU with bf16 OpenVINO's default is bf16


class BF16OVEngine(OpenVINOEngine):
    backend = "bf16_ov"
    hint = "bf16"


class INT8OVEngine(OpenVINOEngine):
    backend = "int8_ov"
    hint = "f32"  # what NNCF left in float (precision.keep_fp32) stays float32 ...

    def inference_hint(self) -> Hint:
        """... unless built with ``precision.float_dtype=bf16``: then the float nodes run in
        bf16, where the CPU has it (a one-line error where it has not)."""
        if self.details.get("float_dtype") != "bf16":
            return "f32"
        require_bf16(BF16_FLOATS, "precision.float_dtype=fp32")
        return "bf16"


# --- loading safely ---------------------------------------------------------------------

def check_ir(xml: bytes, bin_size: int, path: Path) -> None:
    """Refuse an IR that could do more than compute the generator from its own weights: a
    document type (entities may name other files), a layer whose type is outside
    :data:`ENGINE_OPS` or whose version is not a standard opset (a custom extension), or a
    constant outside the ``.bin``."""
    if re.search(rb"<!(DOCTYPE|ENTITY)", xml, re.IGNORECASE):
        raise CaloError(f"{path} declares a document type or entities, which may name other "
                        f"files; no calo engine does: {_REFUSED}")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        raise CaloError(f"{path}: not a valid OpenVINO IR ({one_line(error)}): "
                        "save the engine again") from error
    layers = list(root.iter("layer"))
    if root.tag != "net" or not layers:
        raise CaloError(f"{path}: not a valid OpenVINO IR (no <net> of layers): "
                        "save the engine again")
    unknown = {layer.get("type", "?") for layer in layers} - ENGINE_OPS
    if unknown:
        raise CaloError(f"{path} holds {op_names(unknown)} ops, which no calo engine contains: "
                        f"{_REFUSED}")
    custom = {f"{layer.get('type')} ({layer.get('version')})" for layer in layers
              if not _STANDARD_OPSET.fullmatch(layer.get("version") or "")}
    if custom:
        raise CaloError(f"{path} holds {op_names(custom)} ops outside OpenVINO's standard "
                        f"opsets (custom extensions), which no calo engine contains: {_REFUSED}")
    for layer in layers:
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None:
            continue
        try:
            end = int(data.get("offset", "")) + int(data.get("size", ""))
        except ValueError as error:
            raise CaloError(f"{path}: constant {layer.get('name')!r} has no valid offset and "
                            "size: save the engine again") from error
        if end > bin_size:
            raise CaloError(f"{path}: constant {layer.get('name')!r} lies beyond the end of "
                            f"{MODEL_BIN} ({end} > {bin_size} bytes): save the engine again")

