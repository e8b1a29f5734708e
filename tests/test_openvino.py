"""The OpenVINO backends on the tiny generator, beyond what test_precision checks for every
backend (close to fp32, saved and loaded back): the converted model's nodes carry their
TensorFlow names, precision.keep_fp32 keeps the named nodes in float32 through NNCF's
IgnoredScope, the runtime precisions are reported, the engine runs in the benchmark's stream
workers, and bad input is a one-line error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from calo.bench.worker import RoundRequest, StreamPool
from calo.config import ActivationScheme, Backend, FloatDtype, HardwareConfig
from calo.errors import CaloError
from calo.hw import Machine, resolve_topology
from calo.model.generator import build_generator
from calo.precision import build_engine, load_engine, require_cpu_for
from calo.precision.openvino import (
    FP32OVEngine,
    build_openvino_engine,
    convert,
    require_openvino,
    split_weights,
)
from calo.precision.rewrite import inference_graph

from .conftest import TINY_MODEL
from .test_precision import (  # noqa: F401  (fixtures)
    BATCH,
    HAS_BF16,
    engine_for,
    engines,
    generator,
    io,
    needs_openvino,
    network_input,
    precision,
    relative_error,
)

pytestmark = needs_openvino

WEIGHTED = 29  # 28 convolutions (the transposed ones rewritten) and the seed dense layer


def test_weighted_nodes_carry_their_tensorflow_names(engines, generator, io) -> None:
    engine = engine_for(engines, generator, io, Backend.fp32_ov)
    quantizable = dict(map(tuple, engine.details["quantizable_nodes"]))
    assert len(quantizable) == WEIGHTED
    assert quantizable["seed_dense/MatMul"] == "MatMul"
    assert quantizable["xy4_conv/Conv2D"] == quantizable["combine_conv/Conv2D"] == "Conv2D"
    assert set(engine.details["node_precision"].values()) == {"fp32"}
    assert engine.counts()["fp32_nodes"] == WEIGHTED


def test_names_survive_openvino_folding_a_scale_into_the_weights(io) -> None:
    """A fresh generator's BatchNorm is a bare scale (1/sqrt(1 + eps), zero shift) before the
    next convolution, which OpenVINO folds into that convolution's weights: the nodes are named
    before, so all of them still carry their names."""
    keras.utils.set_random_seed(7)
    fresh = build_generator(TINY_MODEL)  # BatchNorm as initialised
    engine = build_engine(fresh, io, precision(Backend.fp32_ov, rewrite=False))
    assert len(engine.details["quantizable_nodes"]) == WEIGHTED
    assert engine.counts()["fp32_nodes"] == WEIGHTED


def test_int8_runs_int8_kernels_and_is_smaller(engines, generator, io) -> None:
    fp32 = engine_for(engines, generator, io, Backend.fp32_ov)
    int8 = engine_for(engines, generator, io, Backend.int8_ov)
    counts = int8.counts()
    assert counts["quantizable_nodes"] == WEIGHTED and counts["int8_nodes"] >= 25
    assert counts["kernels_convolution_int8"] >= 24
    assert any(node.dtype == "int8" and node.op == "Convolution" for node in int8.nodes())
    assert all(node.name and node.op for node in int8.nodes())
    assert int8.memory_bytes() < 0.5 * fp32.memory_bytes()


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic")
def test_bf16_runs_bf16_kernels(engines, generator, io) -> None:
    bf16 = engine_for(engines, generator, io, Backend.bf16_ov)
    assert bf16.counts()["bf16_nodes"] == WEIGHTED
    assert bf16.details["inference_precision"] == "bf16"
    assert {node.dtype for node in bf16.nodes() if node.op == "Convolution"} == {"bf16"}


def test_keep_fp32_keeps_the_named_nodes_in_float32(generator, io, network_input,
                                                    tmp_path: Path) -> None:
    engine = build_engine(generator, io, precision(Backend.int8_ov,
                                                   keep_fp32=["combine_conv", "xy[0-9]_conv"]))
    assert engine.details["kept_fp32"][0] == "combine_conv/Conv2D"
    assert len(engine.details["kept_fp32"]) == 1 + 9
    precisions = engine.details["node_precision"]
    assert precisions["combine_conv/Conv2D"] == precisions["xy4_conv/Conv2D"] == "fp32"
    assert precisions["zx4_conv/Conv2D"] == "int8"
    assert engine.counts()["fp32_nodes"] >= 10
    loaded = load_engine(engine.save(tmp_path / "engine"))  # the kept nodes survive the IR
    assert loaded.details["node_precision"]["xy4_conv/Conv2D"] == "fp32"
    assert loaded.precision_details()["node_precision"] == precisions
    expected = generator(network_input, training=False).numpy()
    assert relative_error(loaded.predict(network_input), expected) <= 0.08


def test_without_the_rewrite_every_weighted_node_runs_in_int8(generator, io) -> None:
    """conf/precision/int8_ov.yaml's setting: OpenVINO's own int8 transposed convolutions
    (the rewrite's zero-insertion convolutions stay float32 in OpenVINO's CPU plugin)."""
    engine = build_engine(generator, io, precision(Backend.int8_ov, rewrite=False,
                                                   keep_fp32=["xy1_conv"]))
    assert engine.details["kept_fp32"] == ["xy1_conv/conv2d_transpose"]
    precisions = engine.details["node_precision"]
    assert precisions.pop("xy1_conv/conv2d_transpose") == "fp32"
    assert len(precisions) == WEIGHTED - 1 and set(precisions.values()) == {"int8"}
    assert engine.counts()["kernels_deconvolution_int8"] == 5


@pytest.mark.parametrize("rewrite", [True, False])
def test_split_weights_add_up_to_the_node_they_replace(generator, io, network_input,
                                                       rewrite: bool) -> None:
    """Every weighted node split (convolutions, transposed ones without the rewrite, the
    matmul): each high half is bf16 (its low 16 bits zero), and in float32 the two halves
    compute what the node did."""
    model, quantizable = convert(inference_graph(generator, rewrite))
    expected = FP32OVEngine(model.clone(), io).predict(network_input)
    names = [name for name, _ in quantizable]
    split_weights(model, names)
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    for name in names:
        high, low = (ops[n].input_value(1).get_node().get_data()
                     for n in (name, f"{name}/low_bf16"))
        assert not np.any(high.view(np.uint32) & 0xFFFF) and np.any(low)
    assert relative_error(FP32OVEngine(model, io).predict(network_input), expected) < 1e-5


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic")
def test_split_weights_bring_bf16_closer_to_float32(engines, generator, io, network_input,
                                                    tmp_path: Path) -> None:
    """Split, the weights keep twice bf16's bits: what is left of the difference is the
    activations' rounding; the split survives saving (one more kernel per split node)."""
    plain = engine_for(engines, generator, io, Backend.bf16_ov)
    split = build_engine(generator, io, precision(Backend.bf16_ov,
                                                  split_weights=["combine_conv", ".*[78]_conv"]))
    assert split.details["split_weights"][0] == "combine_conv/Conv2D"
    assert len(split.details["split_weights"]) == 7
    loaded = load_engine(split.save(tmp_path / "engine"))
    assert loaded.counts()["kernels_convolution_bf16"] == \
        plain.counts()["kernels_convolution_bf16"] + 7
    expected = generator(network_input, training=False).numpy()
    assert relative_error(loaded.predict(network_input), expected) < \
        0.9 * relative_error(plain.predict(network_input), expected)


def test_unknown_split_weights_name_lists_the_valid_ones(generator, io) -> None:
    with pytest.raises(CaloError, match=r"precision.split_weights: 'nope_conv' matches no "
                                        r"quantizable node; valid names: seed_dense, xy0_conv"):
        build_openvino_engine(inference_graph(generator, True), io,
                              precision(Backend.bf16_ov, split_weights=["nope_conv"]), "bf16")
    model, _ = convert(inference_graph(generator, True))
    with pytest.raises(CaloError, match=r"precision.split_weights: gone_conv/Conv2D have no "
                                        r"float32 weights in the converted model"):
        split_weights(model, ["combine_conv/Conv2D", "gone_conv/Conv2D"])


def activation_ranges(engine) -> list[tuple[float, float]]:
    """(low, high) of each FakeQuantize on an activation (not on a constant) of an int8 model."""
    ranges = []
    for op in engine.model.get_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        if op.input_value(0).get_node().get_type_name() in ("Constant", "Convert"):
            continue
        low, high = (op.input_value(i).get_node().get_data() for i in (1, 2))
        ranges.append((float(np.min(low)), float(np.max(high))))
    return ranges


def test_asymmetric_activations_put_a_zero_point_inside_the_range(
        engines, generator, io, network_input, tmp_path: Path) -> None:
    """NNCF's mixed preset: a tensor with a small negative side (LeakyReLU's) gets a range
    from its minimum to its maximum, where the symmetric one spends half its levels on
    [-max, 0] or starts at 0 for a tensor that is never negative."""
    symmetric = activation_ranges(engine_for(engines, generator, io, Backend.int8_ov))
    assert symmetric and all(low == 0 or -low >= 0.99 * high for low, high in symmetric)
    engine = build_engine(generator, io, precision(Backend.int8_ov,
                                                   activations=ActivationScheme.asymmetric))
    asymmetric = activation_ranges(engine)
    assert len(asymmetric) == len(symmetric)
    assert any(low < 0 and -low < 0.9 * high for low, high in asymmetric)
    loaded = load_engine(engine.save(tmp_path / "engine"))
    assert loaded.details["activations"] == "asymmetric"
    assert loaded.counts()["int8_nodes"] == engine.counts()["int8_nodes"] >= 25
    expected = generator(network_input, training=False).numpy()
    assert relative_error(loaded.predict(network_input), expected) <= 0.08


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic")
def test_float_nodes_of_int8_run_in_bf16_when_asked(generator, io, tmp_path: Path) -> None:
    engine = build_engine(generator, io, precision(Backend.int8_ov, keep_fp32=["xy4_conv"],
                                                   float_dtype=FloatDtype.bf16))
    loaded = load_engine(engine.save(tmp_path / "engine"))
    assert loaded.details["inference_precision"] == "bf16"
    precisions = loaded.precision_details()["node_precision"]
    assert precisions["xy4_conv/Conv2D"] == "bf16"
    assert precisions["zx4_conv/Conv2D"] == "int8"


def test_bf16_float_nodes_on_a_cpu_without_bf16_are_refused(engines, generator, io, monkeypatch,
                                                           tmp_path: Path) -> None:
    """Before calibrating, and when an engine built with them elsewhere is loaded here."""
    folder = engine_for(engines, generator, io, Backend.int8_ov).save(tmp_path / "engine")
    meta = json.loads((folder / "engine.json").read_text())
    meta["details"]["float_dtype"] = "bf16"
    (folder / "engine.json").write_text(json.dumps(meta))
    monkeypatch.setattr("calo.hw.topology.detect_machine",
                        lambda: Machine("test CPU", (0,), ("avx2", "avx512f", "avx512_vnni")))
    with pytest.raises(CaloError, match="float_dtype=bf16 needs a CPU with AVX512_BF16") as error:
        build_engine(generator, io, precision(Backend.int8_ov, float_dtype=FloatDtype.bf16))
    assert "use precision.float_dtype=fp32" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(CaloError, match="float_dtype=bf16 needs a CPU with AVX512_BF16"):
        load_engine(folder)


def int8_weight_peaks(engine) -> list[int]:
    """The largest |value| of each int8 weight constant of an NNCF model."""
    return [int(np.abs(op.get_data().astype(np.int32)).max()) for op in engine.model.get_ops()
            if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i8"]


@pytest.mark.parametrize(("vnni", "cap", "every_layer"), [
    (True, None, False), (True, "AVX512_CORE_VNNI", False), (True, "AVX2", True),
    (False, None, True)])
def test_without_vnni_every_layer_gets_7_bit_weights(generator, io, monkeypatch, vnni: bool,
                                                     cap: str | None, every_layer: bool) -> None:
    """AVX2's int8 kernels sum pairs of u8 x s8 products in 16 bits, which saturate: on a CPU
    without VNNI, or with oneDNN capped below it, NNCF's overflow fix halves every layer's
    weight range, not only the first's."""
    isa = ("avx2", "avx512f", "avx512_vnni") if vnni else ("avx2",)
    monkeypatch.setattr("calo.hw.topology.detect_machine", lambda: Machine("test CPU", (0,), isa))
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    engine = build_engine(generator, io, precision(Backend.int8_ov))
    assert engine.details["weights_7bit"] == ("every layer" if every_layer else "first layer")
    peaks = int8_weight_peaks(engine)
    assert len(peaks) >= 25
    assert (max(peaks) <= 64) is every_layer


def test_unknown_keep_fp32_name_lists_the_valid_ones(generator, io) -> None:
    with pytest.raises(CaloError, match=r"'no_such_layer' matches no quantizable node; valid "
                                        r"names: seed_dense, xy0_conv") as error:
        build_engine(generator, io, precision(Backend.int8_ov, keep_fp32=["no_such_layer"]))
    assert "\n" not in str(error.value)


def test_openvino_not_installed_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(CaloError, match=r"precision=int8_ov needs OpenVINO and NNCF .*: pip "
                                        r"install openvino==.* nncf==") as error:
        require_openvino("int8_ov")
    assert "\n" not in str(error.value)


def test_bf16_on_a_cpu_without_it_or_under_the_isa_cap_is_refused(monkeypatch) -> None:
    bare = Machine("Old Xeon", (0, 1), ("avx2", "avx512f", "avx512_vnni"))
    monkeypatch.setattr("calo.hw.topology.detect_machine", lambda: bare)
    with pytest.raises(CaloError, match=r"precision=bf16_ov needs a CPU with AVX512_BF16 or "
                                        r"AMX-BF16; this CPU \(Old Xeon\) has neither"):
        require_cpu_for("bf16_ov")
    amx = Machine("Xeon with AMX", (0, 1), ("avx512f", "avx512_bf16", "amx_bf16"))
    monkeypatch.setattr("calo.hw.topology.detect_machine", lambda: amx)
    require_cpu_for("bf16_ov")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")  # hw=cascadelake
    with pytest.raises(CaloError, match=r"precision=bf16_ov: oneDNN is capped at "
                                        r"AVX512_CORE_VNNI .* no bf16"):
        require_cpu_for("bf16_ov")


def test_a_stream_worker_runs_the_saved_engine(engines, generator, io, tmp_path: Path) -> None:
    """One worker (test_bench covers several, pinned apart): it loads the IR and times it."""
    folder = engine_for(engines, generator, io, Backend.int8_ov).save(tmp_path / "engine")
    topology = resolve_topology(HardwareConfig(name="test", threads=1, streams=1))
    with StreamPool("int8_ov", {BATCH: folder}, topology) as pool:
        (stream,) = pool.measure(RoundRequest(BATCH, warmup_batches=1, seconds=0.0,
                                              min_batches=2)).streams
    assert stream.cpus == tuple(topology.stream_cpus()[0]) and stream.batch_size == BATCH
    assert len(stream.batch_seconds) >= 2 and min(stream.batch_seconds) > 0


def test_generate_gives_showers_in_gev(engines, generator, io) -> None:
    engine = engine_for(engines, generator, io, Backend.fp32_ov)
    latent = np.random.default_rng(0).standard_normal((BATCH + 3, io.latent_dim))
    showers = engine.generate(latent, np.full(BATCH + 3, 200.0), batch_size=BATCH)
    assert showers.shape == (BATCH + 3, 25, 25, 25) and showers.dtype == np.float32
