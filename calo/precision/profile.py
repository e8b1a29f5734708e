"""Where an engine's time goes: per-op-type time of one batch (the paper's Table 2).

The frozen graph of a TensorFlow engine (fp32, int8_inc, bf16_inc) runs in a session with full
tracing; each executed kernel (after Grappler and the oneDNN rewrites, so ``_MklNativeConv2D``,
``_MklQuantizedConv2DWithBiasAndRequantize``...) is timed and put in a category. TFLite engines
run inside LiteRT, which exposes no per-op timing to Python: they are refused.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from calo.errors import CaloError
from calo.precision.engine import Engine
from calo.precision.frozen import GraphEngine

__all__ = ["CATEGORIES", "OpBreakdown", "WALL_METRIC", "category_metric", "op_breakdown",
           "op_category"]

CATEGORIES = (
    "conv int8", "conv bf16", "conv fp32", "conv transpose fp32", "matmul", "(de)quantize",
    "cast fp32/bf16", "BatchNorm (mul, add)", "bias add", "LeakyReLU", "depth_to_space",
    "transpose, concat, reshape", "other",
)
_QUANTIZE = ("QuantizeV2", "Dequantize", "Requantize")
# Bookkeeping kernels the runtime also traces (constants, function arguments and results).
_BOOKKEEPING = {"Const", "HostConst", "NoOp", "Identity", "_Arg", "_Retval", "_SOURCE"}
_DATA_MOVEMENT = ("Transpose", "ConcatV2", "Concat", "Reshape")


def op_category(op: str, node_name: str, dtype: str = "float32") -> str:
    """The category of one executed kernel (``op`` as the runtime names it)."""
    bare = op.removeprefix("_").removeprefix("Mkl").removeprefix("Native")
    if "Quantized" in op:
        return "matmul" if "MatMul" in op else "conv int8"
    if any(bare.startswith(name) for name in _QUANTIZE):
        return "(de)quantize"
    if "Conv2DBackpropInput" in op:
        return "conv transpose fp32"
    if "Conv2D" in op:
        return "conv bf16" if dtype == "bfloat16" else "conv fp32"
    if "MatMul" in op:
        return "matmul"
    if bare == "Cast":
        return "cast fp32/bf16"
    if "BatchNorm" in op or "_bn/" in node_name:
        return "BatchNorm (mul, add)"
    if bare in ("BiasAdd", "Add", "AddV2"):
        return "bias add"
    if bare == "LeakyRelu":
        return "LeakyReLU"
    if bare == "DepthToSpace":
        return "depth_to_space"
    if bare in _DATA_MOVEMENT:
        return "transpose, concat, reshape"
    return "other"


WALL_METRIC = "profile/wall_ms"


def category_metric(category: str) -> str:
    """The MLflow metric of a category's milliseconds: ``profile/conv_int8_ms``."""
    return f"profile/{re.sub(r'[^a-z0-9]+', '_', category.lower()).strip('_')}_ms"


@dataclass(frozen=True)
class OpBreakdown:
    """Milliseconds per category for one batch; ``wall_ms`` is the untraced time of a batch."""

    backend: str
    batch_size: int
    threads: int
    wall_ms: float
    milliseconds: dict[str, float]
    kernels: dict[str, int]

    @property
    def traced_ms(self) -> float:
        return sum(self.milliseconds.values())

    def rows(self) -> list[dict[str, float | int | str]]:
        traced = self.traced_ms or 1.0
        return [{"category": name, "ms": round(ms, 2), "share": round(ms / traced, 3),
                 "kernels": self.kernels[name]}
                for name, ms in self.milliseconds.items()]

    def metrics(self) -> dict[str, float]:
        """``profile/<category>_ms`` and ``profile/wall_ms``, names MLflow accepts."""
        metrics = {category_metric(name): ms for name, ms in self.milliseconds.items()}
        return {**metrics, WALL_METRIC: self.wall_ms}

    def markdown(self) -> str:
        lines = [f"{self.backend}, batch {self.batch_size}, {self.threads} threads: "
                 f"{self.wall_ms:.1f} ms per batch ({self.traced_ms:.1f} ms in traced kernels)",
                 "", "| op type | ms | share | kernels |", "|---|---:|---:|---:|"]
        lines += [f"| {r['category']} | {r['ms']:.2f} | {100 * r['share']:.1f} % | "
                  f"{r['kernels']} |" for r in self.rows()]
        return "\n".join(lines)


def op_breakdown(engine: Engine, batch_size: int = 64, repeats: int = 3,
                 seed: int = 0) -> OpBreakdown:
    """Trace ``repeats`` batches of ``batch_size`` through the engine's graph (after warm-up)
    with this process's intra-op thread count; time per category, averaged over the batches."""
    if not isinstance(engine, GraphEngine):
        raise CaloError(f"no op breakdown for {engine.backend}: only TensorFlow graph engines "
                        "(fp32, int8_inc, bf16_inc) can be profiled op by op")
    threads = tf.config.threading.get_intra_op_parallelism_threads() or len(
        os.sched_getaffinity(0))
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(engine.graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                      inter_op_parallelism_threads=1)
    dtypes = {node.name: tf.dtypes.as_dtype(node.attr["T"].type).name
              for node in engine.graph_def.node if "T" in node.attr}
    network_input = np.random.default_rng(seed).standard_normal(
        (batch_size, engine.io.latent_dim)).astype(np.float32)
    feed = {engine.details["inputs"]: network_input}
    fetch = engine.details["output"]
    milliseconds: dict[str, float] = defaultdict(float)
    kernels: dict[str, int] = defaultdict(int)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        for _ in range(2):
            session.run(fetch, feed)
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(fetch, feed)
            walls.append(time.perf_counter() - start)
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for _ in range(repeats):
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetch, feed, options=options, run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for stats in device.node_stats:
                    op = _kernel_op(stats)
                    if op in _BOOKKEEPING:
                        continue
                    category = op_category(op, stats.node_name,
                                           dtypes.get(stats.node_name, "float32"))
                    elapsed = stats.op_end_rel_micros - stats.op_start_rel_micros
                    milliseconds[category] += elapsed / 1000.0 / repeats
                    kernels[category] += 1
    ordered = {name: milliseconds[name] for name in CATEGORIES if kernels[name]}
    counts = {name: kernels[name] // repeats for name in ordered}
    return OpBreakdown(engine.backend, batch_size, threads, 1000.0 * float(np.median(walls)),
                       ordered, counts)


def _kernel_op(stats) -> str:
    """``name = _MklNativeConv2D(...)`` -> ``_MklNativeConv2D``."""
    label = stats.timeline_label
    if " = " in label:
        return label.split(" = ", 1)[1].split("(", 1)[0]
    return label.split("(", 1)[0] or stats.node_name
