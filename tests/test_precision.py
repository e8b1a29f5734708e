"""Every precision backend on the tiny generator: close to fp32, saved and loaded back, sized,
described node by node, and refusing bad input with one-line errors.

Tolerances (mean |engine - Keras| / mean |Keras| over a batch of generator outputs):
fp32 and fp32_ov 1e-5 (float rounding), fp16_tflite 1 %, bf16_inc and bf16_ov 3 %, int8_inc,
int8_tflite and int8_ov 8 %. The OpenVINO backends are skipped where OpenVINO is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from calo.config import Backend, LatentDistribution, ModelConfig, PrecisionConfig
from calo.errors import CaloError
from calo.hw import Machine, detect_machine, require_bf16
from calo.model.generator import build_generator
from calo.model.io import NetworkIO, sample_latent
from calo.precision import build_engine, folder_size, load_engine
from calo.precision.calibration import calibration_batches, calibration_inputs
from calo.precision.inc import build_inc_engine
from calo.precision.profile import op_breakdown
from calo.precision.rewrite import inference_graph

from .conftest import TINY_MODEL, needs_int8_kernels
from .test_precision_rewrite import randomize_batchnorm

TOLERANCE = {"fp32": 1e-5, "fp16_tflite": 0.01, "bf16_inc": 0.03, "int8_inc": 0.08,
             "int8_tflite": 0.08, "fp32_ov": 1e-5, "bf16_ov": 0.03, "int8_ov": 0.08,
             "int8_ort": 0.12}  # a peer: ONNX Runtime quantizes LeakyReLU too
BATCH = 16
HAS_BF16 = detect_machine().has_bf16
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None \
    and importlib.util.find_spec("nncf") is not None
OPENVINO = (Backend.fp32_ov, Backend.bf16_ov, Backend.int8_ov)
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO and NNCF are not "
                                    "installed (pip install openvino nncf, pinned in pyproject)")
BACKENDS = [pytest.param(b, marks=[
    pytest.mark.skipif(b in (Backend.bf16_inc, Backend.bf16_ov) and not HAS_BF16,
                       reason="this CPU has no bf16 arithmetic"),
    *([needs_int8_kernels] if b is Backend.int8_inc else []),
    *([needs_openvino] if b in OPENVINO else [])]) for b in Backend]


def precision(backend: Backend, **changes) -> PrecisionConfig:
    return PrecisionConfig(name=backend.value, backend=backend, calibration_size=64,
                           fixed_batch_size=BATCH, **changes)


@pytest.fixture(scope="module")
def generator() -> keras.Model:
    keras.utils.set_random_seed(5)
    model = build_generator(TINY_MODEL)
    randomize_batchnorm(model, seed=1)
    return model


@pytest.fixture(scope="module")
def io() -> NetworkIO:
    return NetworkIO()


@pytest.fixture(scope="module")
def network_input(io: NetworkIO) -> np.ndarray:
    rng = np.random.default_rng(2)
    latent = sample_latent(BATCH, io.latent_dim, LatentDistribution.normal, rng)
    return io.network_input(latent, rng.uniform(100.0, 500.0, BATCH))


@pytest.fixture(scope="module")
def engines(generator, io) -> dict:
    """Each backend built once for the module (quantizing takes seconds)."""
    return {}


def engine_for(engines: dict, generator, io, backend: Backend):
    if backend not in engines:
        engines[backend] = build_engine(generator, io, precision(backend))
    return engines[backend]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).mean() / np.abs(expected).mean())


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_is_close_to_fp32(engines, generator, io, network_input, backend) -> None:
    engine = engine_for(engines, generator, io, backend)
    expected = generator(network_input, training=False).numpy()
    assert relative_error(engine.predict(network_input), expected) <= TOLERANCE[backend.value]


@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_engine_loads_back_the_same(engines, generator, io, network_input, backend,
                                          tmp_path: Path) -> None:
    engine = engine_for(engines, generator, io, backend)
    folder = engine.save(tmp_path / "engine")
    files = {p.name for p in folder.iterdir()}
    # the metadata and one model file (OpenVINO IR: the graph and its weights)
    assert "engine.json" in files and len(files) == (3 if backend in OPENVINO else 2)
    loaded = load_engine(folder)
    assert loaded.backend == backend.value and loaded.fixed_batch_size == engine.fixed_batch_size
    np.testing.assert_array_equal(loaded.predict(network_input), engine.predict(network_input))
    assert loaded.counts() == engine.counts()
    assert folder_size(folder) > 0 and loaded.memory_bytes() > 0


@pytest.mark.parametrize(("backend", "dtype"), [(Backend.fp32, "float32"),
                                                pytest.param(Backend.int8_inc, "qint8",
                                                             marks=needs_int8_kernels),
                                                (Backend.int8_tflite, "int8"),
                                                (Backend.fp16_tflite, "float16")])
def test_nodes_name_their_dtypes(engines, generator, io, backend, dtype) -> None:
    nodes = engine_for(engines, generator, io, backend).nodes()
    assert any(node.dtype == dtype for node in nodes)
    assert all(node.name and node.op for node in nodes)


@needs_int8_kernels
def test_int8_engine_is_smaller_and_reports_quantized_nodes(engines, generator, io,
                                                            tmp_path: Path) -> None:
    fp32 = engine_for(engines, generator, io, Backend.fp32)
    int8 = engine_for(engines, generator, io, Backend.int8_inc)
    counts = int8.counts()
    assert counts["quantizable_nodes"] == 30  # 28 Conv2D (none transposed left), MatMul, concat
    assert counts["int8_Conv2D"] == 28 and counts["int8_MatMul"] == 1
    assert len(int8.details["quantizable_nodes"]) == 30
    assert int8.memory_bytes() < 0.5 * fp32.memory_bytes()


@needs_int8_kernels
def test_keep_fp32_keeps_the_named_nodes(generator, io, network_input) -> None:
    engine = build_engine(generator, io, precision(Backend.int8_inc,
                                                   keep_fp32=["combine_conv", "xy[0-9]_conv"]))
    precisions = engine.details["node_precision"]
    kept = [name for name, dtype in precisions.items() if dtype == "fp32"]
    assert "combine_conv/Conv2D" in kept and "xy4_conv/Conv2D" in kept
    assert precisions["zx4_conv/Conv2D"] == "int8"
    assert engine.counts()["fp32_nodes"] == 1 + 1 + 9  # concat, combine_conv, the xy path


@needs_int8_kernels
def test_unknown_keep_fp32_name_lists_the_valid_ones(generator, io) -> None:
    with pytest.raises(CaloError, match=r"'no_such_layer' matches no quantizable node; valid "
                                        r"names: seed_dense, xy0_conv") as error:
        build_engine(generator, io, precision(Backend.int8_inc, keep_fp32=["no_such_layer"]))
    assert "\n" not in str(error.value)


def test_empty_calibration_set_is_refused(generator, io, compose_run) -> None:
    from calo.config import to_settings

    with pytest.raises(CaloError, match="calibration_size must be positive"):
        to_settings(compose_run("model=tiny", "precision=int8_inc",
                                  "precision.calibration_size=0"))
    with pytest.raises(CaloError, match="calibration set is empty"):
        build_inc_engine(inference_graph(generator), io, precision(Backend.int8_inc), "int8",
                         np.empty((0, io.latent_dim), np.float32))
    with pytest.raises(CaloError, match="calibration set is empty"):
        next(calibration_batches(np.empty((0, io.latent_dim), np.float32), 8))


def test_calibration_set_is_seeded_and_spans_the_energy_range(io) -> None:
    cfg = replace(precision(Backend.int8_inc), calibration_size=500)
    first, second = calibration_inputs(io, cfg), calibration_inputs(io, cfg)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (500, io.latent_dim)
    batches = list(calibration_batches(first[:20], 8))  # fixed size, wrapping around
    assert [len(b) for b in batches] == [8, 8, 8]
    np.testing.assert_array_equal(batches[-1][4:], first[:4])


def test_fixed_batch_engine_refuses_another_batch_size(engines, generator, io,
                                                       network_input) -> None:
    engine = engine_for(engines, generator, io, Backend.int8_tflite)
    with pytest.raises(CaloError, match=f"built for batch size {BATCH}, got a batch of 5"):
        engine.predict(network_input[:5])
    # generate() pads the last short batch instead
    latent = np.random.default_rng(0).standard_normal((BATCH + 3, io.latent_dim))
    assert engine.generate(latent, np.full(BATCH + 3, 200.0)).shape == (BATCH + 3, 25, 25, 25)


def test_build_engine_batch_size_overrides_the_config(generator, io) -> None:
    engine = build_engine(generator, io, precision(Backend.fp16_tflite), batch_size=1)
    assert engine.fixed_batch_size == 1


def test_bf16_on_a_cpu_without_it_is_a_clear_error(monkeypatch) -> None:
    bare = Machine("Old Xeon", (0, 1), ("avx2", "avx512f", "avx512_vnni"))
    monkeypatch.setattr("calo.hw.topology.detect_machine", lambda: bare)
    with pytest.raises(CaloError, match=r"precision=bf16_inc needs a CPU with AVX512_BF16 or "
                                        r"AMX-BF16; this CPU \(Old Xeon\) has neither"):
        require_bf16("precision=bf16_inc", "fp32")


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic")
def test_a_bf16_engine_that_computes_another_network_is_refused(monkeypatch, generator,
                                                                io) -> None:
    """bf16 rounding passes; kernels that are wrong (on AMX, oneDNN's bf16 8x8 convolution of
    8 or 12 input channels was off by its whole scale) are refused at build time."""
    from calo.precision.inc import BF16Engine

    rounded = BF16Engine.predict
    monkeypatch.setattr(BF16Engine, "predict", lambda self, x: rounded(self, x) * 1.01)
    build_engine(generator, io, precision(Backend.bf16_inc))
    monkeypatch.setattr(BF16Engine, "predict", lambda self, x: rounded(self, x) * 1.13)
    with pytest.raises(CaloError, match=r"precision=bf16_inc: this machine's kernels compute "
                                        r"the generator 1\d% away from fp32"):
        build_engine(generator, io, precision(Backend.bf16_inc))


def test_bf16_under_the_cascade_lake_isa_cap_is_refused(monkeypatch) -> None:
    amx = Machine("Xeon with AMX", (0, 1), ("avx512f", "avx512_bf16", "amx_bf16"))
    monkeypatch.setattr("calo.hw.topology.detect_machine", lambda: amx)
    require_bf16("precision=bf16_inc", "fp32")  # this CPU has bf16...
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    with pytest.raises(CaloError, match=r"oneDNN is capped at AVX512_CORE_VNNI .* no bf16"):
        require_bf16("precision=bf16_inc", "fp32")  # ...but not under hw=cascadelake's cap


def test_int8_on_a_cpu_without_avx512_is_a_clear_error(monkeypatch, generator, io) -> None:
    bare = Machine("AMD EPYC", (0, 1), ("avx2",))
    monkeypatch.setattr("calo.precision.inc.detect_machine", lambda: bare)
    with pytest.raises(CaloError, match=r"precision=int8_inc needs a CPU with AVX-512 .*; this "
                                        r"CPU \(AMD EPYC, avx2\) has none: use "
                                        r"precision=int8_tflite or fp32"):
        build_engine(generator, io, precision(Backend.int8_inc))


def corrupt(folder: Path, name: str, content: bytes) -> None:
    (folder / name).write_bytes(content)


@pytest.mark.parametrize(("backend", "model_file"), [pytest.param(Backend.int8_inc, "model.pb",
                                                                  marks=needs_int8_kernels),
                                                     (Backend.int8_tflite, "model.tflite")])
def test_missing_or_corrupt_engine_folder_is_a_clear_error(engines, generator, io, backend,
                                                           model_file, tmp_path: Path) -> None:
    with pytest.raises(CaloError, match="does not exist"):
        load_engine(tmp_path / "absent")
    with pytest.raises(CaloError, match="engine.json is missing"):
        load_engine(tmp_path)
    folder = engine_for(engines, generator, io, backend).save(tmp_path / "engine")
    corrupt(folder, model_file, b"not a model")
    with pytest.raises(CaloError, match="save the engine again") as error:
        load_engine(folder)
    assert "\n" not in str(error.value)
    (folder / model_file).unlink()
    with pytest.raises(CaloError, match=f"{model_file} is missing"):
        load_engine(folder)
    corrupt(folder, "engine.json", b"{not json")
    with pytest.raises(CaloError, match="engine.json is corrupt"):
        load_engine(folder)
    corrupt(folder, "engine.json", json.dumps({"backend": "int4", "io": {}}).encode())
    with pytest.raises(CaloError, match="unknown engine backend 'int4'"):
        load_engine(folder)


@needs_int8_kernels
def test_op_breakdown_shows_where_int8_time_goes(engines, generator, io) -> None:
    breakdown = op_breakdown(engine_for(engines, generator, io, Backend.int8_inc), batch_size=4,
                             repeats=1)
    assert {"conv int8", "(de)quantize", "LeakyReLU"} <= set(breakdown.milliseconds)
    assert breakdown.kernels["conv int8"] == 28
    assert breakdown.wall_ms > 0 and "| conv int8 |" in breakdown.markdown()
    fp32 = op_breakdown(engine_for(engines, generator, io, Backend.fp32), batch_size=4,
                        repeats=1)
    assert "conv transpose fp32" in fp32.milliseconds and "conv int8" not in fp32.milliseconds
    with pytest.raises(CaloError, match="only TensorFlow graph engines"):
        op_breakdown(engine_for(engines, generator, io, Backend.int8_tflite))


@pytest.mark.slow
@needs_int8_kernels
def test_full_size_int8_engine_quantizes_every_convolution(tmp_path: Path) -> None:
    keras.utils.set_random_seed(6)
    generator = build_generator(ModelConfig(name="full"))
    randomize_batchnorm(generator, seed=2)
    io = NetworkIO()
    fp32 = build_engine(generator, io, precision(Backend.fp32))
    int8 = build_engine(generator, io, replace(precision(Backend.int8_inc),
                                               calibration_size=256))
    assert int8.counts()["int8_Conv2D"] == 28 and int8.counts()["fp32_nodes"] == 1
    ratio = folder_size(int8.save(tmp_path / "int8")) / folder_size(fp32.save(tmp_path / "fp32"))
    assert ratio <= 0.30
    rng = np.random.default_rng(3)
    network_input = io.network_input(rng.standard_normal((8, 200)), rng.uniform(100, 500, 8))
    expected = generator(network_input, training=False).numpy()
    assert relative_error(int8.predict(network_input), expected) <= TOLERANCE["int8_inc"]


@needs_int8_kernels
def test_run_logs_the_int8_engine_its_quantization_and_profile(compose_run, store: Path) -> None:
    import mlflow

    from calo.run import run

    from .conftest import TINY

    run_id = run(compose_run(*TINY, "precision=int8_inc", "precision.calibration_size=64",
                             "precision.profile=true"))
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    record = client.get_run(run_id)
    assert record.info.status == "FINISHED"
    params, metrics = record.data.params, record.data.metrics
    assert params["engine/quantizable_nodes"] == "30" and params["engine/int8_Conv2D"] == "28"
    assert metrics["profile/conv_int8_ms"] > 0 and metrics["profile/de_quantize_ms"] > 0
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"engine", "engine_dtypes.json", "engine_details.json",
            "engine_profile.md"} <= artifacts
    details = json.loads(Path(client.download_artifacts(run_id, "engine_details.json",
                                                        str(store))).read_text())
    assert ["combine_conv/Conv2D", "Conv2D"] in details["quantizable_nodes"]


def test_a_graph_that_would_run_python_is_refused(engines, generator, io, tmp_path: Path) -> None:
    import tensorflow as tf

    folder = engine_for(engines, generator, io, Backend.fp32).save(tmp_path / "engine")
    graph_def = tf.compat.v1.GraphDef.FromString((folder / "model.pb").read_bytes())
    graph_def.node.add(name="evil", op="PyFunc")
    (folder / "model.pb").write_bytes(graph_def.SerializeToString())
    with pytest.raises(CaloError, match="holds PyFunc ops"):
        load_engine(folder)
