"""Precision backends: from the fp32 Keras generator to an inference Engine, and back from disk.

=============  =======================================================================
fp32           the inference graph, frozen, on oneDNN fp32 kernels (the baseline)
int8_inc       Neural Compressor static int8 quantization of that graph
bf16_inc       Neural Compressor bf16 conversion (CPUs with AVX512_BF16 or AMX-BF16)
fp16_tflite    TFLite with float16 weights, fixed batch size, LiteRT interpreter
int8_tflite    TFLite full integer, fixed batch size, LiteRT interpreter
fp32_ov        OpenVINO IR of that graph, run by OpenVINO's CPU plugin in float32
bf16_ov        the same with OpenVINO's bf16 inference precision hint (AVX512_BF16 or AMX-BF16)
int8_ov        NNCF post-training int8 quantization of the OpenVINO model, run by OpenVINO
int8_ort       ONNX Runtime static int8 (QDQ) of the graph converted by tf2onnx: a peer
=============  =======================================================================

Every quantized backend starts from the same inference graph (:mod:`calo.precision.rewrite`:
BatchNorm folded, transposed convolutions as sub-pixel convolutions; ``precision.rewrite=false``
keeps the generator's own layers); the fp32 baseline only folds BatchNorm and keeps the
transposed convolutions (:mod:`calo.precision.fp32`). The calibrating backends calibrate on the
same inputs (:mod:`calo.precision.calibration`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from calo.config import Backend, LatentDistribution, PrecisionConfig
from calo.errors import CaloError
from calo.model.bf16 import BF16_ROUNDING_BOUND, relative_difference
from calo.model.io import NetworkIO
from calo.precision.engine import Engine, NodeInfo, folder_size, read_engine_file

__all__ = ["Engine", "NodeInfo", "build_engine", "folder_size", "load_engine",
           "quantizable_nodes", "require_cpu_for"]

OPENVINO_BACKENDS = (Backend.fp32_ov, Backend.bf16_ov, Backend.int8_ov)


def build_engine(generator, io: NetworkIO, cfg: PrecisionConfig, batch_size: int | None = None,
                 latent_distribution: LatentDistribution = LatentDistribution.normal) -> Engine:
    """The generator in the configured precision. ``batch_size`` (default
    ``cfg.fixed_batch_size``) is the one batch size a TFLite engine runs; the other engines run
    any. Calibration latents follow ``latent_distribution`` (the model's)."""
    from calo.precision.calibration import calibration_inputs
    from calo.precision.fp32 import FP32Engine
    from calo.precision.rewrite import inference_graph

    if cfg.backend is Backend.fp32:
        return FP32Engine.from_keras(generator, io, cfg.rewrite)
    require_cpu_for(cfg.backend.value)
    graph = inference_graph(generator, cfg.rewrite)
    # Only the backends that calibrate get inputs (bf16_inc too: Neural Compressor's static
    # quantization runs its calibration dataloader for bf16 as well); fp16_tflite gets None.
    calibrates = cfg.backend in (Backend.int8_inc, Backend.bf16_inc, Backend.int8_tflite,
                                 Backend.int8_ov, Backend.int8_ort)
    calibration = calibration_inputs(io, cfg, latent_distribution) if calibrates else None
    if cfg.backend in OPENVINO_BACKENDS:
        from calo.precision.openvino import build_openvino_engine

        kind = cfg.backend.value.removesuffix("_ov")
        engine = build_openvino_engine(graph, io, cfg, kind, calibration)
    elif cfg.backend is Backend.int8_ort:
        from calo.precision.onnxruntime import build_ort_engine

        engine = build_ort_engine(graph, io, cfg, calibration)
    elif cfg.backend in (Backend.int8_inc, Backend.bf16_inc):
        from calo.precision.inc import build_inc_engine

        dtype = "int8" if cfg.backend is Backend.int8_inc else "bf16"
        engine = build_inc_engine(graph, io, cfg, dtype, calibration)
    else:
        from calo.precision.tflite import build_tflite_engine

        kind = "int8" if cfg.backend is Backend.int8_tflite else "fp16"
        engine = build_tflite_engine(graph, io, kind, batch_size or cfg.fixed_batch_size,
                                     calibration)
    if cfg.backend.value in BF16_INSTEAD:  # a bf16 engine: checked to differ by rounding only
        if calibration is None:  # bf16_ov does not calibrate
            calibration = calibration_inputs(io, cfg, latent_distribution)
        _require_rounding_only(engine, generator, calibration, cfg.backend)
    return engine


def quantizable_nodes(backend: Backend, graph) -> list[tuple[str, str]]:
    """(node name, op type) of the nodes ``precision.keep_fp32`` selects from for ``backend``
    (int8_inc or int8_ov), in the graph's order: those Neural Compressor can quantize, or the
    convolutions and matmuls of the OpenVINO model NNCF quantizes."""
    if backend is Backend.int8_ov:
        from calo.precision.openvino import convert

        return convert(graph)[1]
    from calo.precision.frozen import freeze_graph
    from calo.precision.inc import quantizable_nodes as inc_quantizable_nodes

    return inc_quantizable_nodes(freeze_graph(graph)[0])


FAITHFULNESS_INPUTS = 8


def _require_rounding_only(engine: Engine, generator, inputs, backend: Backend) -> None:
    """A one-line error when the engine's showers differ from the Keras generator's by more
    than bf16 rounding can (:mod:`calo.model.bf16`, on a few calibration inputs)."""
    inputs = inputs[:FAITHFULNESS_INPUTS]
    error = relative_difference(generator(inputs, training=False), engine.predict(inputs))
    if error > BF16_ROUNDING_BOUND:
        raise CaloError(
            f"precision={backend.value}: this machine's kernels compute the generator "
            f"{error:.0%} away from fp32, far beyond bf16 rounding (under 1 %), so its showers "
            f"would be wrong, not just rounded: use {BF16_INSTEAD[backend.value]}")


# What to use where a bf16 backend cannot run.
BF16_INSTEAD = {"bf16_inc": "precision=int8_inc or fp32", "bf16_ov": "precision=int8_ov or fp32_ov"}


def require_cpu_for(backend: str) -> None:
    """A one-line error when this CPU (or this installation: OpenVINO) cannot run
    ``backend``'s kernels."""
    if backend == "int8_inc":
        from calo.precision.inc import require_int8

        require_int8()
    if backend in BF16_INSTEAD:
        from calo.hw import require_bf16

        require_bf16(f"precision={backend}", BF16_INSTEAD[backend])
    if backend in OPENVINO_BACKENDS:
        from calo.precision.openvino import require_openvino

        require_openvino(backend)
    if backend == Backend.int8_ort:
        from calo.precision.onnxruntime import require_onnxruntime

        require_onnxruntime()


def _engine_class(backend: str, folder: Path) -> type[Engine]:
    if backend == "fp32":
        from calo.precision.fp32 import FP32Engine

        return FP32Engine
    if backend in ("int8_inc", "bf16_inc"):
        from calo.precision.inc import BF16Engine, INT8Engine

        return INT8Engine if backend == "int8_inc" else BF16Engine
    if backend in ("fp16_tflite", "int8_tflite"):
        from calo.precision.tflite import FP16TFLiteEngine, INT8TFLiteEngine

        return INT8TFLiteEngine if backend == "int8_tflite" else FP16TFLiteEngine
    if backend in OPENVINO_BACKENDS:
        from calo.precision.openvino import BF16OVEngine, FP32OVEngine, INT8OVEngine

        return {"fp32_ov": FP32OVEngine, "bf16_ov": BF16OVEngine, "int8_ov": INT8OVEngine}[backend]
    if backend == Backend.int8_ort:
        from calo.precision.onnxruntime import INT8ORTEngine

        return INT8ORTEngine
    raise CaloError(f"{folder}: unknown engine backend {backend!r} in engine.json")


def load_engine(folder: str | Path) -> Engine:
    """A saved engine (a folder, or ``models:/<name>/<version>`` of an engine the search
    registered); only its model graph is loaded, no code from the folder or registry runs."""
    from calo.tracking.registry import is_registry_uri, registered_engine_folder

    if is_registry_uri(str(folder)):
        with tempfile.TemporaryDirectory(prefix="calo-engine-") as workdir:
            return load_engine(registered_engine_folder(str(folder), Path(workdir)))
    folder = Path(folder)
    meta = read_engine_file(folder)
    engine_class = _engine_class(meta["backend"], folder)
    require_cpu_for(meta["backend"])
    return engine_class.load(folder, meta)
