"""The ONNX Runtime peer (int8_ort) on the tiny generator, beyond what test_precision checks for
every backend: its convolutions run in int8, keep_fp32 leaves the named ones in float32, and a
model that could read files or run custom kernels is refused with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper

from calo.config import Backend
from calo.errors import CaloError
from calo.precision import build_engine, load_engine, require_cpu_for
from calo.precision.onnxruntime import MODEL_FILE

from .test_precision import (  # noqa: F401  (fixtures)
    engine_for,
    engines,
    generator,
    io,
    precision,
)

WEIGHTED = 29  # 28 convolutions and the seed dense layer


def test_int8_runs_every_weighted_node_in_int8_and_is_smaller(engines, generator, io) -> None:
    engine = engine_for(engines, generator, io, Backend.int8_ort)
    assert engine.counts() == {"quantizable_nodes": WEIGHTED, "int8_nodes": WEIGHTED,
                               "fp32_nodes": 0}
    float_weights = sum(w.numpy().nbytes for w in generator.weights)
    assert engine.memory_bytes() < 0.5 * float_weights


def test_keep_fp32_leaves_the_named_nodes_in_float32(generator, io, tmp_path: Path) -> None:
    engine = build_engine(generator, io, precision(Backend.int8_ort, keep_fp32=["combine_conv"]))
    (kept,) = engine.details["kept_fp32"]
    assert kept.startswith("combine_conv/")
    loaded = load_engine(engine.save(tmp_path / "engine"))
    dtypes = {node.name: node.dtype for node in loaded.nodes()}
    assert dtypes[kept] == "fp32"
    assert sorted(dtypes.values()).count("int8") == WEIGHTED - 1


def saved(engines, generator, io, folder: Path) -> onnx.ModelProto:
    engine_for(engines, generator, io, Backend.int8_ort).save(folder)
    return onnx.load(str(folder / MODEL_FILE))


def external_weights(model: onnx.ModelProto) -> None:
    tensor = model.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/passwd")


def external_sparse_weights(model: onnx.ModelProto) -> None:
    values = helper.make_tensor("w", onnx.TensorProto.FLOAT, [1], [0.0])
    values.data_location = onnx.TensorProto.EXTERNAL
    values.external_data.add(key="location", value="../../secret.bin")
    indices = helper.make_tensor("i", onnx.TensorProto.INT64, [1], [0])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))


def custom_op(model: onnx.ModelProto) -> None:
    model.graph.node[0].domain = "com.example.custom"


def unknown_op(model: onnx.ModelProto) -> None:
    first = model.graph.node[0]
    model.graph.node.insert(0, helper.make_node("Loop", [first.input[0]], ["x"], name="loop"))


def function(model: onnx.ModelProto) -> None:
    model.functions.append(helper.make_function("com.example", "f", ["a"], ["b"],
                                                [helper.make_node("Identity", ["a"], ["b"])],
                                                [helper.make_opsetid("", 17)]))


@pytest.mark.parametrize(("tamper", "message"), [
    (external_weights, "in other files"),
    (external_sparse_weights, "in other files"),
    (custom_op, "com.example.custom"),
    (unknown_op, "Loop ops"),
    (function, "defines functions"),
])
def test_a_tampered_model_is_refused_in_one_line(engines, generator, io, tmp_path: Path,
                                                 tamper, message: str) -> None:
    model = saved(engines, generator, io, tmp_path)
    tamper(model)
    (tmp_path / MODEL_FILE).write_bytes(model.SerializeToString())
    with pytest.raises(CaloError, match=message) as error:
        load_engine(tmp_path)
    assert "\n" not in str(error.value) and "refusing to load it" in str(error.value)


def test_a_missing_or_corrupt_model_file_is_one_line(engines, generator, io,
                                                     tmp_path: Path) -> None:
    saved(engines, generator, io, tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"\x00not a protobuf\xff" * 8)
    with pytest.raises(CaloError, match="not a valid ONNX model"):
        load_engine(tmp_path)
    (tmp_path / MODEL_FILE).unlink()
    with pytest.raises(CaloError, match=f"{MODEL_FILE} is missing"):
        load_engine(tmp_path)


def test_a_model_for_other_inputs_is_one_line(engines, generator, io, tmp_path: Path) -> None:
    model = saved(engines, generator, io, tmp_path)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 7
    (tmp_path / MODEL_FILE).write_bytes(model.SerializeToString())
    with pytest.raises(CaloError, match="save the engine again") as error:
        load_engine(tmp_path)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_onnxruntime_not_installed_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(CaloError, match="needs ONNX Runtime and tf2onnx") as error:
        require_cpu_for("int8_ort")
    assert "\n" not in str(error.value)

