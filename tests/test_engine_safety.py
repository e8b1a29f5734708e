"""A saved engine cannot read or write files when it is loaded and run: ``load_engine`` (the path
``calo.run`` and the benchmark workers take) refuses a TensorFlow graph holding an op no calo
engine contains, a TFLite model holding a custom or Flex op or weights in other files, and an
OpenVINO IR holding an op no calo engine contains, a custom extension or entities naming other
files; the engines calo builds still save and load back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from calo.config import Backend, PrecisionConfig
from calo.errors import CaloError
from calo.hw import detect_machine
from calo.precision import Engine, build_engine, load_engine
from calo.precision.fp32 import FP32Engine
from calo.precision.openvino import import_openvino

from .test_precision import (  # noqa: F401  (fixtures)
    BATCH,
    generator,
    io,
    needs_openvino,
    network_input,
)

HAS_BF16 = detect_machine().has_bf16
REFUSED = r"which no calo engine contains: refusing to load it \(re-create the engine with calo\)"


@pytest.fixture(scope="module")
def engines() -> dict:
    """Each (backend, rewrite) built once for the module."""
    return {}


def engine_for(engines: dict, generator, io, backend: Backend, rewrite: bool = True) -> Engine:
    if (backend, rewrite) not in engines:
        cfg = PrecisionConfig(name=backend.value, backend=backend, calibration_size=64,
                              fixed_batch_size=BATCH, rewrite=rewrite)
        engines[backend, rewrite] = build_engine(generator, io, cfg)
    return engines[backend, rewrite]


# --- TensorFlow graphs: ops that touch files, wired into the output -------------------------

def print_to_file(target: Path) -> tf.Operation:
    """Appends a line to ``target`` each time it runs."""
    return tf.raw_ops.PrintV2(input=tf.constant("leaked"), output_stream=f"file://{target}")


def summary_file_writer(target: Path) -> tf.Operation:
    """Creates the directory ``target`` and an events file in it."""
    writer = tf.raw_ops.SummaryWriter(shared_name="calo_test_writer", container="")
    return tf.raw_ops.CreateSummaryFileWriter(writer=writer, logdir=str(target), max_queue=1,
                                              flush_millis=1, filename_suffix=".calo")


def immutable_const(target: Path) -> tf.Operation:
    """Maps the file ``target`` into a tensor."""
    target.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return tf.raw_ops.ImmutableConst(dtype=tf.float32, shape=[4],
                                     memory_region_name=str(target)).op


def tampered(folder: Path, add_ops: Callable[[], tf.Operation]) -> tf.compat.v1.GraphDef:
    """The saved graph with the ops ``add_ops`` builds, run before its output (a control
    input of the output node), written back to ``model.pb``; the graph is returned."""
    details = json.loads((folder / "engine.json").read_text())["details"]
    output_node = details["output"].split(":")[0]
    graph_def = tf.compat.v1.GraphDef.FromString((folder / "model.pb").read_bytes())
    extra = tf.Graph()
    with extra.as_default(), tf.name_scope("tamper"):
        trigger = add_ops()
    graph_def.node.extend(extra.as_graph_def().node)
    (output,) = [node for node in graph_def.node if node.name == output_node]
    output.input.append(f"^{trigger.name}")
    (folder / "model.pb").write_bytes(graph_def.SerializeToString())
    return graph_def


@pytest.mark.parametrize(("add_ops", "named"), [
    (print_to_file, "PrintV2"),
    (summary_file_writer, "CreateSummaryFileWriter, SummaryWriter"),
    (immutable_const, "ImmutableConst"),
])
def test_a_graph_that_touches_files_is_refused(engines, generator, io, network_input, add_ops,
                                               named, tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.fp32).save(tmp_path / "engine")
    target = tmp_path / "target"
    graph_def = tampered(folder, lambda: add_ops(target))
    written = target.exists()  # ImmutableConst's file is there to be read; the others are not
    with pytest.raises(CaloError, match=rf"model\.pb holds {named} ops, {REFUSED}") as error:
        load_engine(folder).predict(network_input)
    assert "\n" not in str(error.value)
    assert target.exists() == written
    if not written:  # the same graph run as built does write: the refusal is what stops it
        details = json.loads((folder / "engine.json").read_text())["details"]
        FP32Engine(graph_def, io, details["inputs"], details["output"]).predict(network_input)
        assert target.exists()


def test_a_graph_with_a_function_library_is_refused(engines, generator, io,
                                                    tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.fp32).save(tmp_path / "engine")
    graph_def = tf.compat.v1.GraphDef.FromString((folder / "model.pb").read_bytes())

    @tf.function
    def leak() -> None:
        tf.print("leaked", output_stream=f"file://{tmp_path / 'printed.txt'}")

    graph_def.library.function.add().CopyFrom(leak.get_concrete_function().function_def)
    (folder / "model.pb").write_bytes(graph_def.SerializeToString())
    with pytest.raises(CaloError, match=r"model\.pb holds a function library, which no calo "
                                        r"engine has: refusing to load it"):
        load_engine(folder)


def test_odd_op_names_stay_on_one_line(engines, generator, io, tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.fp32).save(tmp_path / "engine")
    graph_def = tf.compat.v1.GraphDef.FromString((folder / "model.pb").read_bytes())
    for index in range(7):
        graph_def.node.add(name=f"odd{index}", op=f"Odd{index}\nop")
    (folder / "model.pb").write_bytes(graph_def.SerializeToString())
    with pytest.raises(CaloError, match=r"holds 'Odd0\\nop', .* and 2 more ops") as error:
        load_engine(folder)
    assert "\n" not in str(error.value)


# --- TFLite models: custom and Flex ops, external weights --------------------------------

def custom_op_model() -> bytes:
    """A model with a custom op (BesselI0: TFLite has no builtin for it)."""

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def bessel(x):
        return tf.math.bessel_i0(x)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [bessel.get_concrete_function()], bessel)
    converter.allow_custom_ops = True
    return converter.convert()


def flex_print_model(target: Path) -> bytes:
    """A model that prints to ``target`` with Select TensorFlow ops (FlexPrintV2) wherever a
    Flex delegate is linked in."""

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def printing(x):
        tf.print(x, output_stream=f"file://{target}")
        return x * 2.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [printing.get_concrete_function()], printing)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    return converter.convert()


def with_external_weights(content: bytes, target: Path) -> bytes:
    """The model with an external buffer group naming ``target``, a file LiteRT may read
    weights from."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    group = schema.ExternalBufferGroupT()
    group.name = str(target)
    model.externalBufferGroups = [group]
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_tflite_model_with_a_custom_op_is_refused(engines, generator, io,
                                                    tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.fp16_tflite).save(tmp_path / "engine")
    (folder / "model.tflite").write_bytes(custom_op_model())
    with pytest.raises(CaloError, match=rf"model\.tflite holds BesselI0 \(custom\) ops, {REFUSED}"):
        load_engine(folder)


def test_a_tflite_model_with_flex_ops_is_refused(engines, generator, io, tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.int8_tflite).save(tmp_path / "engine")
    target = tmp_path / "printed.txt"
    (folder / "model.tflite").write_bytes(flex_print_model(target))
    with pytest.raises(CaloError, match=rf"model\.tflite holds FlexPrintV2 \(Flex\), "
                                        rf"FlexStringFormat \(Flex\) ops, {REFUSED}"):
        load_engine(folder)
    assert not target.exists()


def test_a_tflite_model_with_external_weights_is_refused(engines, generator, io,
                                                         tmp_path: Path) -> None:
    engine = engine_for(engines, generator, io, Backend.fp16_tflite)
    folder = engine.save(tmp_path / "engine")
    content = with_external_weights((folder / "model.tflite").read_bytes(), tmp_path / "secret")
    (folder / "model.tflite").write_bytes(content)
    with pytest.raises(CaloError, match=r"model\.tflite reads weights from other files \(external"
                                        r" buffers\), which no calo engine does: refusing"):
        load_engine(folder)


# --- OpenVINO IR: ops outside the allow list, custom extensions, entities, broken weights ------

def replace_ir(folder: Path, model) -> None:
    """Write ``model`` (an OpenVINO model) over the engine's IR."""
    ov = import_openvino()
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)


def edit_xml(folder: Path, edit: Callable[[str], str]) -> None:
    path = folder / "model.xml"
    path.write_text(edit(path.read_text()))


@needs_openvino
def test_an_ir_with_an_op_no_calo_engine_contains_is_refused(engines, generator, io,
                                                             network_input,
                                                             tmp_path: Path) -> None:
    ov = import_openvino()
    import openvino.opset13 as ops

    folder = engine_for(engines, generator, io, Backend.fp32_ov).save(tmp_path / "engine")
    latent = ops.parameter([-1, 200], np.float32, name="scaled_latent")
    noise = ops.random_uniform(ops.shape_of(latent), ops.constant(np.float32(0)),
                               ops.constant(np.float32(1)),
                               "f32", global_seed=1)
    replace_ir(folder, ov.Model([ops.sin(ops.add(latent, noise))], [latent], "not_a_generator"))
    assert ov.Core().read_model(str(folder / "model.xml"))  # OpenVINO itself would take it
    with pytest.raises(CaloError, match=rf"model\.xml holds RandomUniform, Sin ops, "
                                        rf"{REFUSED}") as error:
        load_engine(folder).predict(network_input)
    assert "\n" not in str(error.value)


@needs_openvino
def test_an_ir_with_a_custom_extension_is_refused(engines, generator, io,
                                                  tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.int8_ov).save(tmp_path / "engine")
    edit_xml(folder, lambda xml: xml.replace('type="PReLU" version="opset1"',
                                             'type="PReLU" version="calo_leak"', 1))
    with pytest.raises(CaloError, match=r"model\.xml holds PReLU \(calo_leak\) ops outside "
                                        r"OpenVINO's standard opsets \(custom extensions\)"):
        load_engine(folder)


@needs_openvino
def test_an_ir_whose_entities_name_other_files_is_refused(engines, generator, io,
                                                          tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.fp32_ov).save(tmp_path / "engine")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for an engine")
    edit_xml(folder, lambda xml: xml.replace(
        "<net ", f'<!DOCTYPE net [<!ENTITY leak SYSTEM "file://{secret}">]>\n<net ', 1
    ).replace('name="scaled_latent:0"', 'name="&leak;"', 1))
    with pytest.raises(CaloError, match=r"model\.xml declares a document type or entities, "
                                        r"which may name other files; no calo engine does"):
        load_engine(folder)


@needs_openvino
def test_an_ir_with_missing_or_short_weights_is_a_one_line_error(engines, generator, io,
                                                                tmp_path: Path) -> None:
    folder = engine_for(engines, generator, io, Backend.int8_ov).save(tmp_path / "engine")
    weights = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CaloError, match=r"model\.xml: constant .* lies beyond the end of "
                                        r"model\.bin .*: save the engine again") as error:
        load_engine(folder)
    assert "\n" not in str(error.value)
    (folder / "model.bin").unlink()
    with pytest.raises(CaloError, match=r"model\.bin is missing: save the engine again"):
        load_engine(folder)
    (folder / "model.bin").write_bytes(weights)
    edit_xml(folder, lambda xml: xml[: len(xml) // 2])
    with pytest.raises(CaloError, match=r"model\.xml: not a valid OpenVINO IR \(.*\): save the "
                                        r"engine again") as error:
        load_engine(folder)
    assert "\n" not in str(error.value)


# --- What calo builds still loads --------------------------------------------------------

@pytest.mark.parametrize("rewrite", [True, False])
@pytest.mark.parametrize("backend", [
    Backend.fp32, Backend.int8_inc, Backend.fp16_tflite, Backend.int8_tflite,
    pytest.param(Backend.bf16_inc, marks=pytest.mark.skipif(
        not HAS_BF16, reason="this CPU has no bf16 arithmetic (its ops are in the allow list, "
                             "collected with FORCE_BF16=1)")),
    pytest.param(Backend.fp32_ov, marks=needs_openvino),
    pytest.param(Backend.int8_ov, marks=needs_openvino),
])
def test_the_engines_calo_builds_load_and_run(engines, generator, io, network_input, backend,
                                              rewrite, tmp_path: Path) -> None:
    try:
        engine = engine_for(engines, generator, io, backend, rewrite)
    except CaloError as error:  # a backend this CPU cannot run (Neural Compressor's kernels)
        pytest.skip(f"not built on this CPU: {error}")
    loaded = load_engine(engine.save(tmp_path / "engine"))  # the allow lists let it through
    assert loaded.nodes() == engine.nodes()
    try:
        expected = engine.predict(network_input)
    except tf.errors.InternalError as error:  # Neural Compressor's kernels on an AVX2-only CPU
        pytest.skip(f"it loads, but the {backend.value} engine does not run on this CPU "
                    f"({str(error).strip().splitlines()[-1][:120]})")
    np.testing.assert_array_equal(loaded.predict(network_input), expected)
